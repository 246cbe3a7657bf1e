"""A researcher's laptop: `dagster dev` on SQLite with the launcher and run monitoring, as the
README's laptop section sets it up. The lid closes mid-run (every Dagster process dies, Slurm
jobs keep running); `dagster dev` starts again and the run finishes by itself, each step one job."""

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus

from dagster_slurm_launcher.launcher.process import PID_TAG
from tests import lab
from tests.conftest import JOBS
from tests.deployment import BIN, EXAMPLE, answers, free_port

pytestmark = pytest.mark.lab


def laptop_config() -> dict:
    """dagster.yaml.example as the README's laptop section edits it (its sed command: no
    storage section, so SQLite under DAGSTER_HOME); the lab's short intervals so the test is quick."""
    edited = subprocess.run(["sed", "/^storage:/,/^$/d", str(EXAMPLE)], capture_output=True, text=True, check=True)
    config = yaml.safe_load(edited.stdout)
    assert "storage" not in config
    # As the README's laptop section edits it: the cluster's plain Python, the code and the
    # environment shipped (uv, which the lab's login node has, to keep the test short).
    config["run_launcher"]["config"]["executor"] = {
        "poll_interval": 1.0,
        "time": "00:10:00",
        "python": "/usr/bin/python3",
        "ship": {"code": {}, "environment": "build", "installer": "uv"},
    }
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    config["run_monitoring"]["poll_interval_seconds"] = 2
    return config


@contextlib.contextmanager
def dagster_dev(home: Path, workspace: Path) -> Iterator[subprocess.Popen]:
    port = free_port()
    log = open(home / "dagster-dev.log", "ab")  # noqa: SIM115  # closed below, after the process
    dev = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)],
        cwd=workspace.parent,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=log,
        stderr=log,
    )
    try:
        lab.wait_until(lambda: answers(f"http://127.0.0.1:{port}/server_info"), 120, what="dagster dev")
        yield dev
    finally:
        close_the_lid(dev, [])
        log.close()


def close_the_lid(dev: subprocess.Popen, others: list[int]) -> None:
    """Every Dagster process of the laptop dies at once, without a chance to clean up."""
    with contextlib.suppress(psutil.NoSuchProcess):
        others = [*others, *(p.pid for p in psutil.Process(dev.pid).children(recursive=True))]
    for pid in [dev.pid, *others]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    dev.wait(timeout=30)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_run_finishes_after_dagster_dev_was_killed_and_started_again(tmp_path: Path) -> None:
    # The project where a laptop has it: the cluster cannot read it.
    code_dir = tmp_path / "project"
    shutil.copytree(JOBS, code_dir)
    assert not lab.cluster_user_can_read(code_dir / "deployment.py")
    home = tmp_path / "dagster_home"
    home.mkdir(mode=0o700)
    (home / "dagster.yaml").write_text(yaml.safe_dump(laptop_config()))
    workspace = code_dir / "workspace.yaml"
    location = {"python_file": {"relative_path": "deployment.py", "working_directory": str(code_dir)}}
    workspace.write_text(yaml.safe_dump({"load_from": [location]}))
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    instance = DagsterInstance.from_config(str(home))

    with dagster_dev(home, workspace) as dev:
        subprocess.run(
            [str(BIN / "dagster"), "job", "launch", "-j", "resumable", "-w", str(workspace)],
            env=env,
            check=True,
            capture_output=True,
        )
        run_id = instance.get_runs(limit=1)[0].run_id
        lab.wait_until(lambda: lab.job_of_step(run_id, "slow_step", {"RUNNING"}), 180, what="slow_step running")
        worker = int(instance.get_run_by_id(run_id).tags[PID_TAG])
        close_the_lid(dev, [worker])
    # SIGKILL takes effect when the kernel next schedules the process (CI once looked first).
    lab.wait_until(lambda: not alive(worker), 30, interval=0.1, what="the run worker dead")
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED

    with dagster_dev(home, workspace):
        final = lab.wait_until(
            lambda: instance.get_run_by_id(run_id).is_finished and instance.get_run_by_id(run_id).status,
            300,
            what="the run to finish",
        )
    assert final == DagsterRunStatus.SUCCESS, (home / "dagster-dev.log").read_text()[-5000:]
    jobs = lab.settled_jobs_of_run(run_id, 2)
    assert sorted(j["state"] for j in jobs) == ["COMPLETED", "COMPLETED"]
    assert [j["state"] for j in lab.jobs_of_step(run_id, "slow_step")] == ["COMPLETED"]
    messages = [e.user_message for e in instance.all_logs(run_id)]
    assert "after_slow got 42" in messages
    # Shipped by the first run worker (or an earlier test run: the copy is named by its content);
    # the worker that resumed the run ran the rest from that copy.
    engine = [e.dagster_event.message or "" for e in instance.all_logs(run_id) if e.is_dagster_event]
    shipping = [m for m in engine if m.startswith(("Shipping the code location", "Code location unchanged"))]
    assert len(shipping) == 1
    assert any(m.startswith("Resuming with the code and environment this run shipped") for m in engine)
    instance.dispose()
