"""A run worker's death loses no Slurm job's work: a resumed run (same run id) adopts each
in-flight step's job by its name, and Slurm jobs outlive a run worker that was stopped
without the run being terminated."""

import signal
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.events import DagsterEventType

from tests import lab

pytestmark = pytest.mark.lab


def count(instance: DagsterInstance, run_id: str, event_type: DagsterEventType, step_key: str) -> int:
    records = instance.get_records_for_run(run_id, of_type=event_type).records
    return sum(1 for r in records if r.event_log_entry.step_key == step_key)


def start_and_kill_when(instance: DagsterInstance, code: Path, states: set[str], sig: int = signal.SIGKILL) -> str:
    """Start resumable_job, kill the run worker while slow_step runs, wait until slow_step's
    job is in ``states``."""
    run_id = lab.signal_worker_while_step_runs(instance, code, "resumable_job", sig)
    lab.wait_until(lambda: lab.job_of_step(run_id, "slow_step", states), timeout=120, what=f"slow_step job {states}")
    return run_id


def resume(instance: DagsterInstance, code: Path, run_id: str, job: str = "resumable_job") -> None:
    worker = lab.start_run_worker(instance, code, job, resume_run_id=run_id)
    assert worker.wait(timeout=300) == 0


def assert_ran_once(instance: DagsterInstance, run_id: str) -> None:
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
    assert len(lab.adoptions(instance, run_id)) == 1
    assert count(instance, run_id, DagsterEventType.STEP_WORKER_STARTING, "slow_step") == 1
    jobs = lab.jobs_of_step(run_id, "slow_step", 2)
    assert len(jobs) == 1 and jobs[0]["state"] == "COMPLETED"
    # Relayed exactly once, although two run workers read its journal.
    assert count(instance, run_id, DagsterEventType.STEP_START, "slow_step") == 1
    assert count(instance, run_id, DagsterEventType.STEP_SUCCESS, "slow_step") == 1
    assert "after_slow got 42" in [e.user_message for e in instance.all_logs(run_id)]


def test_a_resumed_run_adopts_its_running_step_which_runs_once(code_dir: Path, instance: DagsterInstance) -> None:
    run_id = start_and_kill_when(instance, code_dir / "ops.py", {"RUNNING"})
    resume(instance, code_dir / "ops.py", run_id)
    assert_ran_once(instance, run_id)


def test_a_step_that_finished_while_no_worker_was_alive_is_collected(code_dir: Path, instance: DagsterInstance) -> None:
    run_id = start_and_kill_when(instance, code_dir / "ops.py", {"COMPLETED"})
    resume(instance, code_dir / "ops.py", run_id)
    assert_ran_once(instance, run_id)


def test_a_resumed_fan_out_collects_finished_adopts_running_and_submits_unsubmitted_steps_each_once(
    code_dir: Path, instance: DagsterInstance
) -> None:
    code = code_dir / "ops.py"
    quick = [f"quick_{i}" for i in range(4)]
    slow = [f"slow_{i}" for i in range(4)]
    worker = lab.start_run_worker(instance, code, "resumable_fanout_job")
    try:
        run = lab.wait_until(lambda: next(iter(instance.get_runs()), None), timeout=60, what="run created")
        lab.wait_until(
            lambda: all(lab.job_of_step(run.run_id, key, {"RUNNING"}) for key in quick + slow),
            timeout=120,
            what="running",
        )
        worker.kill()
        worker.wait(timeout=60)
    finally:
        worker.kill()
    (lab.shared_dir() / "markers" / f"release-{run.run_id}").write_text("")
    lab.wait_until(
        lambda: all(lab.job_of_step(run.run_id, key, {"COMPLETED"}) for key in quick), timeout=60, what="quick done"
    )
    resume(instance, code, run.run_id, "resumable_fanout_job")
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
    # Every leaf adopted once (the quick ones collected, the slow ones followed), all looked up
    # together at the first health check; the last step submitted by the resumed worker.
    assert len(lab.adoptions(instance, run.run_id)) == 8
    for key in ["fan_root", *quick, *slow, "gather"]:
        assert count(instance, run.run_id, DagsterEventType.STEP_START, key) == 1, key
        assert count(instance, run.run_id, DagsterEventType.STEP_SUCCESS, key) == 1, key
    jobs = lab.settled_jobs_of_run(run.run_id, 10)
    assert len(jobs) == 10 and {j["state"] for j in jobs} == {"COMPLETED"}, jobs
    assert "gather got 8" in [e.user_message for e in instance.all_logs(run.run_id)]


def test_a_step_whose_job_died_while_no_worker_was_alive_is_submitted_again_once(
    code_dir: Path, instance: DagsterInstance
) -> None:
    worker = lab.start_run_worker(instance, code_dir / "ops.py", "resumable_job")
    try:
        run = lab.wait_until(lambda: next(iter(instance.get_runs()), None), timeout=60, what="run created")
        first = lab.wait_until(
            lambda: lab.job_of_step(run.run_id, "slow_step", {"RUNNING"}), timeout=90, what="running"
        )
        worker.kill()
        worker.wait(timeout=60)
    finally:
        worker.kill()
    lab.run_as_cluster_user(["scancel", first["job_id"]])
    lab.wait_until(lambda: lab.job_of_step(run.run_id, "slow_step", {"CANCELLED"}), timeout=60, what="cancelled")
    resume(instance, code_dir / "ops.py", run.run_id)
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
    jobs = [j for j in lab.settled_jobs_of_run(run.run_id, 3) if j["name"].endswith(lab.step_hash("slow_step"))]
    assert sorted(j["state"].split()[0] for j in jobs) == ["CANCELLED", "COMPLETED"]
    # A job that died without an outcome is not adopted: the step is submitted again.
    assert not lab.adoptions(instance, run.run_id)
    assert count(instance, run.run_id, DagsterEventType.STEP_WORKER_STARTING, "slow_step") == 2


def test_sigterm_to_the_run_worker_is_not_a_cancellation(code_dir: Path, instance: DagsterInstance) -> None:
    run_id = start_and_kill_when(instance, code_dir / "ops.py", {"RUNNING", "COMPLETED"}, sig=signal.SIGTERM)
    assert instance.get_run_by_id(run_id).status != DagsterRunStatus.CANCELED
    # The job was neither cancelled nor killed: it runs to its end.
    job = lab.wait_until(
        lambda: lab.job_of_step(run_id, "slow_step", {"COMPLETED", "CANCELLED", "FAILED"}), timeout=120, what="ended"
    )
    assert job["state"] == "COMPLETED"
