"""A retried or re-executed run (a new run id, the same root) adopts its steps' jobs that no run
recorded an outcome for, and submits again only steps whose job failed or never existed: one
step outcome is never computed by two Slurm jobs, even when workers race or die mid-submit."""

import signal
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.events import DagsterEventType

from tests import lab

pytestmark = pytest.mark.lab


def slow_step_jobs(root_run_id: str, at_least: int) -> list[str]:
    """States of slow_step's Slurm jobs across the lineage, oldest first, once all ended."""
    return [j["state"].split()[0] for j in lab.jobs_of_step(root_run_id, "slow_step", at_least)]


def failed_parent(instance: DagsterInstance, code: Path, slow_step_job: str, job: str = "resumable_job") -> str:
    """A run of ``job`` whose worker got SIGTERM while slow_step ran (no run monitoring, so
    the run fails), with slow_step's job then left ``running`` or ``cancelled``."""
    run_id = lab.signal_worker_while_step_runs(instance, code, job, signal.SIGTERM)
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
    if slow_step_job == "completed":
        lab.wait_until(lambda: lab.job_of_step(run_id, "slow_step", {"COMPLETED"}), timeout=120, what="completed")
    if slow_step_job == "cancelled":
        running = lab.job_of_step(run_id, "slow_step", {"RUNNING", "PENDING"})
        assert running is not None
        lab.run_as_cluster_user(["scancel", running["job_id"]])
        lab.wait_until(lambda: lab.job_of_step(run_id, "slow_step", {"CANCELLED"}), timeout=60, what="cancelled")
    return run_id


def retries_of(instance: DagsterInstance, parent_run_id: str) -> list:
    return [r for r in instance.get_runs() if r.parent_run_id == parent_run_id]


@pytest.mark.parametrize("slow_step_job", ["running", "completed"])
def test_a_retry_adopts_the_unrecorded_step_of_its_parent_and_loads_its_output(
    code_dir: Path, instance: DagsterInstance, slow_step_job: str
) -> None:
    parent = failed_parent(instance, code_dir / "ops.py", slow_step_job)
    retry = lab.start_run_worker(instance, code_dir / "ops.py", "resumable_job", reexecute_from_failure_of=parent)
    assert retry.wait(timeout=300) == 0

    [run] = retries_of(instance, parent)
    assert run.status == DagsterRunStatus.SUCCESS and lab.adoptions(instance, run.run_id)
    assert slow_step_jobs(parent, 2) == ["COMPLETED"]
    # after_slow ran only in the retry; slow_step's output was stored under the parent's run id.
    assert "after_slow got 42" in [e.user_message for e in instance.all_logs(run.run_id)]
    assert len(instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_SUCCESS).records) == 2


def test_a_step_adopted_by_one_retry_feeds_the_next_retry(code_dir: Path, instance: DagsterInstance) -> None:
    code = code_dir / "ops.py"
    parent = failed_parent(instance, code, "running", job="adopt_then_fail_job")
    first = lab.start_run_worker(instance, code, "adopt_then_fail_job", reexecute_from_failure_of=parent)
    assert first.wait(timeout=300) == 0
    [failed] = retries_of(instance, parent)
    assert failed.status == DagsterRunStatus.FAILURE and lab.adoptions(instance, failed.run_id)

    second = lab.start_run_worker(instance, code, "adopt_then_fail_job", reexecute_from_failure_of=failed.run_id)
    assert second.wait(timeout=300) == 0
    [run] = retries_of(instance, failed.run_id)
    # slow_step's output is under the first run's id, although the second recorded it.
    assert run.status == DagsterRunStatus.SUCCESS
    assert "fails_once_per_lineage got 42" in [e.user_message for e in instance.all_logs(run.run_id)]
    assert slow_step_jobs(parent, 3) == ["COMPLETED"]


def test_a_step_whose_job_failed_in_slurm_is_submitted_again_once_by_the_retry(
    code_dir: Path, instance: DagsterInstance
) -> None:
    parent = failed_parent(instance, code_dir / "ops.py", "cancelled")
    retry = lab.start_run_worker(instance, code_dir / "ops.py", "resumable_job", reexecute_from_failure_of=parent)
    assert retry.wait(timeout=300) == 0

    [run] = retries_of(instance, parent)
    assert run.status == DagsterRunStatus.SUCCESS and not lab.adoptions(instance, run.run_id)
    assert slow_step_jobs(parent, 3) == ["CANCELLED", "COMPLETED"]


def test_two_retries_racing_for_a_step_submit_one_job(
    code_dir: Path, instance: DagsterInstance, tmp_path: Path
) -> None:
    parent = failed_parent(instance, code_dir / "ops.py", "cancelled")
    # Both retries look the step up (its only job was cancelled) before either submits.
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    retries = [
        lab.start_run_worker(
            instance,
            code_dir / "ops.py",
            "resumable_job",
            reexecute_from_failure_of=parent,
            submit_hook=f"barrier:{barrier}:2",
        )
        for _ in range(2)
    ]
    assert [r.wait(timeout=300) for r in retries] == [0, 0]

    runs = retries_of(instance, parent)
    assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * 2
    assert sum(bool(lab.adoptions(instance, r.run_id)) for r in runs) >= 1
    assert slow_step_jobs(parent, 3) == ["CANCELLED", "COMPLETED"]
    # after_slow too ran once: whichever retry got there second adopted the other's job.
    assert len(lab.settled_jobs_of_run(parent, 3)) == 3


def test_a_worker_killed_between_sbatch_and_recording_the_job_leaves_nothing_orphaned(
    code_dir: Path, instance: DagsterInstance
) -> None:
    worker = lab.start_run_worker(instance, code_dir / "ops.py", "resumable_job", submit_hook="kill")
    assert worker.wait(timeout=120) == -signal.SIGKILL
    [run] = instance.get_runs()
    assert not instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_WORKER_STARTING).records

    resume = lab.start_run_worker(instance, code_dir / "ops.py", "resumable_job", resume_run_id=run.run_id)
    assert resume.wait(timeout=300) == 0
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
    assert lab.adoptions(instance, run.run_id)
    assert slow_step_jobs(run.run_id, 2) == ["COMPLETED"]


def test_an_explicit_reexecution_of_a_recorded_step_submits_a_new_job(
    code_dir: Path, instance: DagsterInstance
) -> None:
    # slow_step succeeds and is recorded; the run fails after it, so its step folders (and
    # slow_step's journal) stay on the cluster.
    first = lab.start_run_worker(instance, code_dir / "ops.py", "adopt_then_fail_job")
    assert first.wait(timeout=300) == 0
    [run] = instance.get_runs()
    assert run.status == DagsterRunStatus.FAILURE
    again = lab.start_run_worker(instance, code_dir / "ops.py", "adopt_then_fail_job", reexecute_all_of=run.run_id)
    assert again.wait(timeout=300) == 0

    [rerun] = retries_of(instance, run.run_id)
    assert rerun.status == DagsterRunStatus.SUCCESS and not lab.adoptions(instance, rerun.run_id)
    assert slow_step_jobs(run.run_id, 4) == ["COMPLETED", "COMPLETED"]
