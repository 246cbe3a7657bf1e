"""Packed steps (executor config ``pack``): steps that are ready together and share sbatch
options run in one Slurm allocation, each in a process forked from one that loaded Dagster and
the code once; every step keeps its own outcome, failure cause, logs, resume and retry."""

import re
import signal
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.events import DagsterEventType

from tests import lab

pytestmark = pytest.mark.lab


def events_of(instance: DagsterInstance, run_id: str, event_type: DagsterEventType) -> dict[str, list]:
    """The run's events of ``event_type`` by step key."""
    found: dict[str, list] = {}
    for record in instance.get_records_for_run(run_id, of_type=event_type).records:
        found.setdefault(record.event_log_entry.step_key, []).append(record.event_log_entry.dagster_event)
    return found


def failure_message(instance: DagsterInstance, run_id: str, step_key: str) -> str:
    [failure] = events_of(instance, run_id, DagsterEventType.STEP_FAILURE)[step_key]
    error = failure.step_failure_data.error
    return error.message + (error.cause.message if error.cause else "")


def timestamp(instance: DagsterInstance, run_id: str, event_type: DagsterEventType, step_key: str) -> float:
    [entry] = [
        r.event_log_entry
        for r in instance.get_records_for_run(run_id, of_type=event_type).records
        if r.event_log_entry.step_key == step_key
    ]
    return entry.timestamp


def captured_stdout(instance: DagsterInstance, run_id: str, step_key: str) -> bytes:
    [captured] = [
        e.logs_captured_data
        for events in events_of(instance, run_id, DagsterEventType.LOGS_CAPTURED).values()
        for e in events
        if e.logs_captured_data.step_keys == [step_key]
    ]
    manager = instance.compute_log_manager
    return manager.get_log_data(manager.build_log_key_for_run(run_id, captured.file_key)).stdout or b""


def packs_of_run(root_run_id: str, at_least: int) -> list[dict[str, str]]:
    """The lineage's Slurm jobs, once ``at_least`` have ended."""
    return lab.settled_jobs_of_run(root_run_id, at_least)


def test_a_packed_steps_failure_crash_memory_or_time_fails_that_step_alone_naming_why(
    code_dir: Path, instance: DagsterInstance
) -> None:
    job = ReconstructableJob.for_file(str(code_dir / "packed.py"), "packed_failures_job")
    result = execute_job(job, instance, raise_on_error=False)
    assert not result.success
    run_id = result.run_id
    successes = set(events_of(instance, run_id, DagsterEventType.STEP_SUCCESS))
    assert successes == {"fine_a", "fine_b", "in_time", "alone"}
    assert "a packed step's own error" in failure_message(instance, run_id, "fails")
    assert "crashed with SIGSEGV" in failure_message(instance, run_id, "segfaults")
    hog = failure_message(instance, run_id, "hogs_memory")
    assert "more than its share of the pack's allocation (600M per step)" in hog, hog
    # Stopped after its own 10 s, not the minute Slurm gives its pack, nor the 300 s it would
    # sleep; it ignores SIGTERM, so SIGKILL ended it 10 s later.
    overran = failure_message(instance, run_id, "overruns")
    assert "ran longer than its time limit (0:10)" in overran, overran
    assert 9 <= int(re.search(r"stopped after (\d+) s", overran).group(1)) < 15, overran
    lasted = timestamp(instance, run_id, DagsterEventType.STEP_FAILURE, "overruns") - timestamp(
        instance, run_id, DagsterEventType.STEP_START, "overruns"
    )
    assert 15 < lasted < 40, lasted
    # What they started went with them, though it ignored SIGTERM.
    assert "ran longer than its time limit (0:10)" in failure_message(instance, run_id, "overruns_a_child")
    for step_key in ("overruns", "overruns_a_child"):
        pid = int((lab.shared_dir() / "markers" / f"{step_key}-{run_id}.pid").read_text())
        assert not lab.process_alive(pid), step_key
    # Five steps in one allocation, the two with a time of their own in another, the step
    # tagged out of packs in a job of its own.
    jobs = packs_of_run(run_id, 3)
    assert len(jobs) == 3, jobs
    starting = events_of(instance, run_id, DagsterEventType.STEP_WORKER_STARTING)
    assert all("in a pack of 5 steps" in starting[k][0].message for k in ["fine_a", "fails", "hogs_memory"])
    # Each step's own stdout, in its own captured logs.
    assert b"fine_a printed this to stdout" in captured_stdout(instance, run_id, "fine_a")
    assert b"fine_b" not in captured_stdout(instance, run_id, "fine_a")


def test_a_step_whose_memory_cannot_size_a_pack_fails_the_run_before_anything_is_submitted(
    code_dir: Path, instance: DagsterInstance
) -> None:
    job = ReconstructableJob.for_file(str(code_dir / "packed.py"), "vague_memory_job")
    result = execute_job(job, instance, raise_on_error=False)
    assert not result.success
    [failure] = events_of(instance, result.run_id, DagsterEventType.RUN_FAILURE)[None]
    error = str(failure.event_specific_data.error)
    assert "step 'vague_memory' cannot be packed: sbatch option mem is 'lots'" in error, error
    assert "dagster-slurm/pack: 'false'" in error
    assert lab.slurm_jobs_of_run(result.run_id) == []


def test_steps_whose_time_is_unlimited_are_packed_under_pack_time(code_dir: Path, instance: DagsterInstance) -> None:
    job = ReconstructableJob.for_file(str(code_dir / "packed.py"), "unlimited_time_job")
    result = execute_job(job, instance, raise_on_error=False)
    assert result.success
    assert set(events_of(instance, result.run_id, DagsterEventType.STEP_SUCCESS)) == {"fine_c", "fine_d"}
    assert len(packs_of_run(result.run_id, 1)) == 1


def run_started(instance: DagsterInstance):
    return lab.wait_until(lambda: next(iter(instance.get_runs()), None), timeout=60, what="run created")


def wait_for_running_pack(run_id: str) -> dict[str, str]:
    return lab.wait_until(
        lambda: next((j for j in lab.slurm_jobs_of_run(run_id) if j["state"] == "RUNNING"), None),
        timeout=120,
        what="pack running",
    )


def step_count(instance: DagsterInstance, run_id: str, event_type: DagsterEventType, step_key: str) -> int:
    return len(events_of(instance, run_id, event_type).get(step_key, []))


def test_a_run_resumed_after_its_worker_died_adopts_the_pack_and_each_step_runs_once(
    code_dir: Path, instance: DagsterInstance
) -> None:
    code = code_dir / "packed.py"
    worker = lab.start_run_worker(instance, code, "packed_resumable_job")
    try:
        run = run_started(instance)
        wait_for_running_pack(run.run_id)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
    finally:
        worker.kill()
    resume = lab.start_run_worker(instance, code, "packed_resumable_job", resume_run_id=run.run_id)
    assert resume.wait(timeout=300) == 0

    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
    assert "after_packed got 43" in [e.user_message for e in instance.all_logs(run.run_id)]
    for step in ["slow_packed", "quick_packed"]:
        assert lab.packed_journals(run.run_id, step).count(b"STEP_START") == 1  # computed once, on the cluster
        assert step_count(instance, run.run_id, DagsterEventType.STEP_START, step) == 1
        assert step_count(instance, run.run_id, DagsterEventType.STEP_SUCCESS, step) == 1
    # The pack and after_packed's own job: nothing submitted twice.
    assert len(packs_of_run(run.run_id, 2)) == 2


def test_a_retry_adopts_a_packs_finished_and_running_steps(code_dir: Path, instance: DagsterInstance) -> None:
    code = code_dir / "packed.py"
    # Killed as soon as sbatch answered: no run recorded anything of the pack's steps.
    worker = lab.start_run_worker(instance, code, "packed_resumable_job", submit_hook="kill")
    assert worker.wait(timeout=120) == -signal.SIGKILL
    [parent] = instance.get_runs()
    pack = wait_for_running_pack(parent.run_id)
    # quick_packed has finished (its journal holds its success); slow_packed still runs.
    quick_done = lambda: b"STEP_SUCCESS" in lab.packed_journals(parent.run_id, "quick_packed")  # noqa: E731
    lab.wait_until(quick_done, timeout=60, what="quick_packed finished")
    instance.report_run_failed(parent)
    retry = lab.start_run_worker(instance, code, "packed_resumable_job", reexecute_from_failure_of=parent.run_id)
    assert retry.wait(timeout=300) == 0

    [run] = [r for r in instance.get_runs() if r.parent_run_id == parent.run_id]
    assert run.status == DagsterRunStatus.SUCCESS
    adopted = lab.adoptions(instance, run.run_id)
    assert len(adopted) == 2 and all(f"Adopted Slurm job {pack['job_id']} " in m for m in adopted), adopted
    assert len(packs_of_run(parent.run_id, 2)) == 2
    assert "after_packed got 43" in [e.user_message for e in instance.all_logs(run.run_id)]


def test_terminating_a_run_cancels_its_pack_and_submits_nothing_more(code_dir: Path, instance: DagsterInstance) -> None:
    worker = lab.start_run_worker(instance, code_dir / "packed.py", "packed_in_turn_job")
    try:
        run = run_started(instance)
        wait_for_running_pack(run.run_id)
        instance.report_run_canceling(run)
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=120)
    finally:
        worker.kill()
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED
    [pack] = packs_of_run(run.run_id, 1)
    assert pack["state"].startswith("CANCELLED")


def signal_the_pack_of_packed_in_turn_job(
    code_dir: Path, instance: DagsterInstance, signal_name: str, once_started: str | None = None
) -> tuple[DagsterRun, dict[str, str]]:
    """Run packed_in_turn_job, send its running pack's worker ``signal_name`` (once
    ``once_started`` has journaled its start), wait for the run worker to end; the run and pack."""
    worker = lab.start_run_worker(instance, code_dir / "packed.py", "packed_in_turn_job")
    try:
        run = run_started(instance)
        pack = wait_for_running_pack(run.run_id)
        if once_started:
            started = lambda: b"STEP_START" in lab.packed_journals(run.run_id, once_started)  # noqa: E731
            lab.wait_until(started, timeout=60, what=f"{once_started} started")
        lab.run_as_cluster_user(["scancel", "--batch", f"--signal={signal_name}", pack["job_id"]])
        assert worker.wait(timeout=300) == 0
    finally:
        worker.kill()
    return run, pack


def test_steps_a_pack_stopped_before_starting_are_submitted_again_and_each_runs_once(
    code_dir: Path, instance: DagsterInstance
) -> None:
    # What --signal=B:USR1@<seconds> does before the allocation's time limit.
    run, pack = signal_the_pack_of_packed_in_turn_job(code_dir, instance, "USR1")
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
    engine = [
        e.message for events in events_of(instance, run.run_id, DagsterEventType.ENGINE_EVENT).values() for e in events
    ]
    assert any(f"Slurm job {pack['job_id']} stopped starting steps" in (m or "") for m in engine)
    for i in range(3):
        assert lab.packed_journals(run.run_id, f"sleeper_{i}").count(b"STEP_START") == 1
        assert step_count(instance, run.run_id, DagsterEventType.STEP_SUCCESS, f"sleeper_{i}") == 1
    assert len(packs_of_run(run.run_id, 2)) >= 2


def test_a_pack_whose_worker_is_killed_outright_has_its_unstarted_steps_submitted_again(
    code_dir: Path, instance: DagsterInstance
) -> None:
    # The pack's worker dies without a word (an out-of-memory kill of the worker, say), once
    # it has started sleeper_0.
    run, _ = signal_the_pack_of_packed_in_turn_job(code_dir, instance, "KILL", once_started="sleeper_0")
    engine = [m for events in events_of(instance, run.run_id, DagsterEventType.ENGINE_EVENT).values() for m in events]
    resubmitted = {e.step_key for e in engine if "nothing of the step ran" in (e.message or "")}
    assert resubmitted == {"sleeper_1", "sleeper_2"}
    for step in ["sleeper_0", "sleeper_1", "sleeper_2"]:
        assert lab.packed_journals(run.run_id, step).count(b"STEP_START") == 1
    for step in ["sleeper_1", "sleeper_2"]:
        assert step_count(instance, run.run_id, DagsterEventType.STEP_SUCCESS, step) == 1
