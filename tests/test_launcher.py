"""The launcher's parts that need no cluster: its configuration as users write it, and how it
recognizes a run worker (a pid alone is not enough: pids are reused)."""

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import instance_for_test
from dagster._config import process_config
from dagster._config.field import resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config_schema
from dagster._core.launcher import WorkerStatus
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import DagsterRun

from dagster_slurm_launcher import SlurmRunLauncher
from dagster_slurm_launcher.launcher.heartbeat import beat
from dagster_slurm_launcher.launcher.process import WorkerProcess, open_log, prune_logs

EXAMPLE = Path(__file__).parent.parent / "dagster.yaml.example"


def _valid(schema: object, value: object) -> None:
    result = process_config(resolve_to_config_type(schema), value)
    assert result.success, result.errors


def test_the_example_deployment_file_is_a_valid_instance_config(monkeypatch) -> None:
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
        worker = WorkerProcess.of(process.pid)
        assert worker is not None and worker.state() == "running"
        assert WorkerProcess.from_tags(worker.tags("/log")) == worker
        process.kill()
        process.wait()
        assert worker.state() == "gone"


def test_a_process_that_reused_the_workers_pid_is_not_taken_for_it() -> None:
    with subprocess.Popen(["sleep", "60"]) as process:
        worker = WorkerProcess.of(process.pid)
        assert worker is not None
        reused = dataclasses.replace(worker, start_ticks=worker.start_ticks - 100)
        assert reused.state() == "gone"
        assert not reused.signal(signal.SIGTERM)
        assert process.poll() is None
        process.kill()


def test_a_worker_is_still_itself_after_the_wall_clock_steps() -> None:
    # NTP stepping the clock, or a VM resumed from suspend: a wall-clock start time moves with
    # it. The daemon that checks the worker is another process, started after the step.
    check = (
        "import sys; from dagster_slurm_launcher.launcher.process import WorkerProcess; "
        "print(WorkerProcess.from_tags(eval(sys.argv[1])).state())"
    )
    with subprocess.Popen(["sleep", "60"]) as process:
        worker = WorkerProcess.of(process.pid)
        assert worker is not None
        subprocess.run(["date", "-s", "+5 seconds"], check=True, capture_output=True)
        try:
            state = subprocess.run(
                [sys.executable, "-c", check, repr(worker.tags("/log"))], capture_output=True, text=True
            ).stdout
        finally:
            subprocess.run(["date", "-s", "-5 seconds"], check=True, capture_output=True)
        process.kill()
    assert state.strip() == "running"


def test_a_worker_from_before_a_reboot_is_gone() -> None:
    worker = WorkerProcess.current()
    assert dataclasses.replace(worker, boot="an-earlier-boot").state() == "gone"


def test_a_worker_launched_by_the_previous_version_is_judged_by_its_pid() -> None:
    # 0.1.0 tagged host, pid and a wall-clock start time: after an upgrade, a live worker of a
    # run in flight must not be taken for dead (monitoring would start a twin).
    with subprocess.Popen(["sleep", "60"]) as process:
        tags = {
            "dagster-slurm/run-worker-host": socket.gethostname(),
            "dagster-slurm/run-worker-pid": str(process.pid),
            "dagster-slurm/run-worker-start-time": "1764000000.000",
        }
        worker = WorkerProcess.from_tags(tags)
        assert worker is not None and worker.state() == "running"
        process.kill()
        process.wait()
        assert worker.state() == "gone"


def test_a_worker_on_another_host_is_not_judged_from_here() -> None:
    assert WorkerProcess("elsewhere.example", "boot", 1, 0).state() == "elsewhere"


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[SlurmRunLauncher]:
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        launcher = SlurmRunLauncher(worker_heartbeat_timeout=0.5)
        launcher.register_instance(instance)
        yield launcher


def _run_on_another_host() -> DagsterRun:
    return DagsterRun(
        job_name="job", run_id="run-elsewhere", tags=WorkerProcess("gone.example", "boot", 4242, 7).tags("/log")
    )


def test_a_worker_on_another_host_is_running_while_its_heartbeat_changes(launcher: SlurmRunLauncher) -> None:
    run = _run_on_another_host()
    for _ in range(6):
        beat(launcher._instance, run.run_id)
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        time.sleep(0.2)


def test_a_worker_on_another_host_whose_heartbeat_stopped_is_failed(launcher: SlurmRunLauncher) -> None:
    run = _run_on_another_host()
    beat(launcher._instance, run.run_id)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    time.sleep(0.6)
    result = launcher.check_run_worker_health(run)
    assert result.status == WorkerStatus.FAILED
    assert "pid 4242 on gone.example has not reported" in (result.msg or "")


def test_a_worker_on_another_host_that_never_beat_is_not_doubled(launcher: SlurmRunLauncher) -> None:
    # Started by a release that did not beat.
    run = _run_on_another_host()
    launcher.check_run_worker_health(run)
    time.sleep(0.6)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING


_PID_ONE = """
import os, sys, time
from dagster_slurm_launcher.launcher.process import reap, spawn_detached
code = "import sys; sys.stdin.read(); from dagster_slurm_launcher.launcher.process import detach; detach()"
assert os.getpid() == 1
pids = [spawn_detached([sys.executable, "-c", code], b"orders", sys.argv[1], None, os.environ).pid for _ in range(3)]
time.sleep(2)  # the workers have exited: reparented to us, PID 1, they are zombies until reaped
zombies = lambda: [p for p in pids if open(f"/proc/{p}/stat").read().split(") ")[1][0] == "Z"]
assert len(zombies()) == 3, zombies()
assert reap(pids) == []
assert not any(os.path.exists(f"/proc/{p}") for p in pids)
print("reaped")
"""


def test_a_launcher_that_is_pid_1_reaps_its_finished_workers(tmp_path: Path) -> None:
    # A daemon as a container's init: detached workers are reparented to it.
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", _PID_ONE, str(tmp_path / "w.log")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "reaped", result.stderr


def test_a_run_workers_log_is_private_and_never_written_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "run.log").symlink_to(target)
    with pytest.raises(OSError):
        open_log(str(tmp_path / "run.log"))
    os.close(open_log(str(tmp_path / "new.log")))
    assert (tmp_path / "new.log").stat().st_mode & 0o777 == 0o600


def test_old_run_worker_logs_are_pruned(tmp_path: Path) -> None:
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    old.write_text("")
    new.write_text("")
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    prune_logs(str(tmp_path), retention_days=30)
    assert not old.exists() and new.exists()


def test_jobs_that_name_no_executor_get_the_slurm_executor_in_the_run_worker(monkeypatch) -> None:
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


def test_a_heartbeat_timeout_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="worker_heartbeat_timeout must be a positive number of seconds"):
        SlurmRunLauncher(worker_heartbeat_timeout=0)
