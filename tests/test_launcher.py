"""The launcher's parts that need no cluster: its configuration as users write it, and how it
recognizes a run worker (a pid alone is not enough: pids are reused)."""

import signal
import socket
import subprocess
from pathlib import Path

import psutil
import yaml
from dagster._config import process_config
from dagster._config.field import resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config_schema
from dagster._core.run_coordinator import QueuedRunCoordinator

from dagster_slurm_launcher import SlurmRunLauncher
from dagster_slurm_launcher.launcher.process import WorkerProcess

EXAMPLE = Path(__file__).parent.parent / "dagster.yaml.example"

def _valid(schema: object, value: object) -> None:
    result = process_config(resolve_to_config_type(schema), value)
    assert result.success, result.errors


def test_the_example_deployment_file_is_a_valid_instance_config(monkeypatch) -> None:  # noqa: ANN001
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_SLURM_REMOTE_BASE_DIR"):
        monkeypatch.setenv(name, "x")
    config = yaml.safe_load(EXAMPLE.read_text())
    _valid(dagster_instance_config_schema(), config)
    assert config["run_launcher"]["module"] == "dagster_slurm_launcher"
    _valid(SlurmRunLauncher.config_type(), config["run_launcher"]["config"])
    _valid(QueuedRunCoordinator.config_type(), config["run_coordinator"]["config"])
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["max_resume_run_attempts"] > 0
    assert config["run_retries"]["retry_on_asset_or_op_failure"] is False


def test_a_running_worker_is_recognized_by_pid_and_start_time() -> None:
    with subprocess.Popen(["sleep", "60"]) as process:
        worker = WorkerProcess(socket.gethostname(), process.pid, psutil.Process(process.pid).create_time())
        assert worker.state() == "running"
        process.kill()
        process.wait()
        assert worker.state() == "gone"


def test_a_process_that_reused_the_workers_pid_is_not_taken_for_it() -> None:
    with subprocess.Popen(["sleep", "60"]) as process:
        reused = WorkerProcess(socket.gethostname(), process.pid, psutil.Process(process.pid).create_time() - 3600)
        assert reused.state() == "gone"
        assert not reused.signal(signal.SIGTERM)
        assert process.poll() is None
        process.kill()


def test_a_worker_on_another_host_is_not_judged_from_here() -> None:
    assert WorkerProcess("elsewhere.example", 1, 0.0).state() == "elsewhere"


def test_jobs_that_name_no_executor_get_the_slurm_executor_in_the_run_worker(monkeypatch) -> None:  # noqa: ANN001
    from dagster import job, op
    from dagster._core.definitions import job_definition

    from dagster_slurm_launcher.launcher.run_worker import make_slurm_the_default_executor

    monkeypatch.setattr(job_definition, "DEFAULT_EXECUTOR_DEF", job_definition.DEFAULT_EXECUTOR_DEF)

    @op
    def noop() -> None: ...

    @job
    def unnamed():
        noop()

    make_slurm_the_default_executor({"execution": {"config": {"in_process": {}}}}, {"partition": "batch"})
    assert unnamed.executor_def.name == "multi_or_in_process_executor"
    make_slurm_the_default_executor({}, {"partition": "batch"})
    assert unnamed.executor_def.name == "slurm"
