"""``dagster-slurm``: the site doctor, a lineage's jobs, and cleanup of finished lineages' folders."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, ReexecutionOptions, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob

from dagster_slurm_launcher.naming import lineage_folder
from tests import lab

pytestmark = pytest.mark.lab


def dagster_slurm(*args: str, instance: DagsterInstance | None = None, **env: str) -> subprocess.CompletedProcess:
    """The installed command, as a user runs it."""
    home = {"DAGSTER_HOME": instance.root_directory} if instance else {}
    return subprocess.run(
        [str(Path(sys.executable).parent / "dagster-slurm"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **home, **env},
        check=False,
    )


def findings(result: subprocess.CompletedProcess) -> dict[str, dict[str, str]]:
    return {f["check"]: f for f in json.loads(result.stdout)}


def test_check_passes_on_the_lab_and_names_the_noisy_shell_and_its_fix() -> None:
    result = dagster_slurm("check", "--json")
    assert result.returncode == 0, result.stderr
    found = findings(result)
    assert found["shell"]["status"] == "warning" and "Welcome to the lab cluster" in found["shell"]["detail"]
    assert "[[ $- == *i* ]] || return" in found["shell"]["fix"]
    assert {name: f["status"] for name, f in found.items() if name != "shell"} == {
        "slurm": "ok",
        "sessions": "ok",
        "clock": "ok",
        "accounting": "ok",
        "filesystem": "ok",
        "claim lock": "ok",
        "probe job": "ok",
        "controller clock": "ok",
        "python": "ok",
        "shared files": "ok",
    }
    assert found["python"]["detail"].endswith(
        f"dagster_slurm_launcher {__import__('dagster_slurm_launcher').__version__}"
    )


def test_check_names_a_python_the_compute_nodes_lack_and_fails() -> None:
    result = dagster_slurm("check", "--json", DAGSTER_SLURM_PYTHON="/nonexistent/python3")
    assert result.returncode == 1
    python = findings(result)["python"]
    assert python["status"] == "problem" and "/nonexistent/python3" in python["detail"]
    assert "DAGSTER_SLURM_PYTHON" in python["fix"]


def test_check_with_ship_takes_a_plain_python_as_the_base_of_shipped_environments() -> None:
    # The lab cluster's Debian Python: standard library (and venv) only, no dagster-slurm-launcher.
    result = dagster_slurm("check", "--ship", "--json", DAGSTER_SLURM_PYTHON="/usr/bin/python3")
    assert result.returncode == 0, result.stdout
    python = findings(result)["python"]
    assert python["status"] == "ok" and "can be the base of shipped environments" in python["detail"]


def test_jobs_lists_a_lineages_jobs_with_their_step_and_submitting_run(
    code_dir: Path, instance: DagsterInstance
) -> None:
    job = ReconstructableJob.for_file(str(code_dir / "ops.py"), "hello_job")
    first = execute_job(job, instance)
    again = execute_job(job, instance, reexecution_options=ReexecutionOptions(parent_run_id=first.run_id))
    assert first.success and again.success
    result = dagster_slurm("jobs", again.run_id, instance=instance)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["JOB", "ID", "STATE", "EXIT"]
    expected = [j["job_id"] for j in lab.settled_jobs_of_run(first.run_id, 2)]
    assert [row.split()[0] for row in rows] == expected
    assert [row.split()[-1] for row in rows] == [first.run_id, again.run_id]
    assert all(" COMPLETED " in row and " 0:0 " in row and " hello " in row for row in rows)


def test_jobs_lists_the_mapped_steps_of_a_dynamic_output(code_dir: Path, instance: DagsterInstance) -> None:
    result = execute_job(ReconstructableJob.for_file(str(code_dir / "ops.py"), "dynamic_job"), instance)
    assert result.success
    listed = dagster_slurm("jobs", result.run_id, instance=instance)
    assert listed.returncode == 0, listed.stderr
    steps = sorted(row.split()[-2] for row in listed.stdout.splitlines()[1:])
    assert steps == sorted(["fan_out", "square[chunk_0]", "square[chunk_1]", "square[chunk_2]", "total", "check_total"])


def test_jobs_lists_a_pack_once_for_each_step_it_ran(code_dir: Path, instance: DagsterInstance) -> None:
    result = execute_job(ReconstructableJob.for_file(str(code_dir / "packed.py"), "packed_resumable_job"), instance)
    assert result.success
    listed = dagster_slurm("jobs", result.run_id, instance=instance)
    assert listed.returncode == 0, listed.stderr
    rows = [row.split() for row in listed.stdout.splitlines()[1:]]
    assert sorted(row[-2] for row in rows) == ["after_packed", "quick_packed", "slow_packed"]
    by_step = {row[-2]: row[0] for row in rows}
    assert by_step["quick_packed"] == by_step["slow_packed"] != by_step["after_packed"]


def test_jobs_of_an_unknown_run_is_an_error_that_names_it(instance: DagsterInstance) -> None:
    result = dagster_slurm("jobs", "no-such-run", instance=instance)
    assert result.returncode == 2 and "no run no-such-run" in result.stderr


def test_cleanup_removes_only_lineages_that_are_over_and_old_enough(code_dir: Path, instance: DagsterInstance) -> None:
    base = lab.settings().remote_base_dir
    failed = execute_job(ReconstructableJob.for_file(str(code_dir / "ops.py"), "failing_job"), instance)
    assert not failed.success
    running = lab.start_run_worker(instance, code_dir / "ops.py", "sleeping_job")
    run = None
    try:
        [run] = lab.wait_until(
            lambda: [
                r
                for r in instance.get_runs()
                if r.job_name == "sleeping_job" and lab.job_of_step(r.run_id, "sleeper", {"RUNNING"})
            ],
            timeout=120,
            what="sleeper to run",
        )
        folders = {failed.run_id: lineage_folder(base, failed.run_id), run.run_id: lineage_folder(base, run.run_id)}

        recent = dagster_slurm("cleanup", "--older-than", "1h", instance=instance)
        assert recent.returncode == 0, recent.stderr
        assert f"kept         {folders[failed.run_id]}: its last run ended" in recent.stdout

        dry = dagster_slurm("cleanup", "--older-than", "0m", "--dry-run", instance=instance)
        assert dry.returncode == 0, dry.stderr
        assert f"would remove {folders[failed.run_id]}: 1 run(s), all finished" in dry.stdout
        assert f"kept         {folders[run.run_id]}: run {run.run_id} has not finished" in dry.stdout
        assert lab.cluster_user_can_read(Path(folders[failed.run_id]))

        done = dagster_slurm("cleanup", "--older-than", "0m", instance=instance)
        assert done.returncode == 0, done.stderr
        assert f"removed      {folders[failed.run_id]}" in done.stdout
        assert not Path(folders[failed.run_id]).exists() and Path(folders[run.run_id]).exists()
    finally:
        running.kill()
        running.wait()
        if run and (job := lab.job_of_step(run.run_id, "sleeper", {"RUNNING", "PENDING"})):
            lab.run_as_cluster_user(["scancel", job["job_id"]])


def test_jobs_without_dagster_home_says_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = dagster_slurm("jobs", "some-run")
    assert result.returncode == 2 and "DAGSTER_HOME is not set" in result.stderr


def test_cleanup_needs_an_age_with_a_unit() -> None:
    result = dagster_slurm("cleanup", "--older-than", "7")
    assert result.returncode == 2 and "write a number and a unit, as 7d" in result.stderr
