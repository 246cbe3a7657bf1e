"""What a real site does to a run, on the lab: output that is not ASCII, a damaged journal, a
requeued job, a dropped SSH connection, a lost submission answer, a login node whose shared
filesystem caches like NFS, hundreds of steps in flight. The run finishes, nothing is lost and
every step is one Slurm job."""

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.events import DagsterEventType
from dagster._core.execution.job_execution_result import JobExecutionResult

from dagster_slurm_launcher.executor.relay import Relay, Timing, TrackedStep
from dagster_slurm_launcher.run_events import SLURM_JOB_ID
from dagster_slurm_launcher.slurm import SlurmClient
from dagster_slurm_launcher.transport import Transport
from tests import lab

pytestmark = pytest.mark.lab

TEXT = "ünïcødé ✓ 漢字 😀"


def run(code_dir: Path, job: str, instance: DagsterInstance, **kwargs: object) -> JobExecutionResult:
    return execute_job(ReconstructableJob.for_file(str(code_dir / "site.py"), job), instance, **kwargs)


def messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)]


def one_completed_job_per_step(run_id: str, steps: int) -> None:
    jobs = lab.settled_jobs_of_run(run_id, steps, timeout=180)
    assert len(jobs) == steps and len({j["name"] for j in jobs}) == steps
    assert {j["state"] for j in jobs} == {"COMPLETED"}


def captured_logs(instance: DagsterInstance, run_id: str, step_key: str) -> tuple[bytes, bytes]:
    (captured,) = [
        r.event_log_entry.dagster_event.logs_captured_data
        for r in instance.get_records_for_run(run_id, of_type=DagsterEventType.LOGS_CAPTURED).records
        if r.event_log_entry.dagster_event.logs_captured_data.step_keys == [step_key]
    ]
    manager = instance.compute_log_manager
    data = manager.get_log_data(manager.build_log_key_for_run(run_id, captured.file_key))
    return data.stdout or b"", data.stderr or b""


def test_non_ascii_output_progress_bars_and_invalid_utf8_all_arrive(code_dir: Path, instance: DagsterInstance) -> None:
    result = run(code_dir, "noisy_job", instance)
    assert result.success
    one_completed_job_per_step(result.run_id, 4)
    assert messages(instance, result.run_id).count(f"log: {TEXT}") == 4
    stdout, stderr = captured_logs(instance, result.run_id, "noisy_2")
    assert f"stdout: {TEXT}".encode() in stdout
    assert "invalid UTF-8: \ufffd\ufffd end".encode() in stdout
    assert f"stderr: {TEXT}".encode() in stderr and "100%|██████████| 100/100".encode() in stderr


def test_damaged_journal_lines_are_skipped_and_the_events_after_them_arrive(
    code_dir: Path, instance: DagsterInstance
) -> None:
    result = run(code_dir, "damaged_journal_job", instance)
    assert result.success
    assert "logged after the damage" in messages(instance, result.run_id)
    one_completed_job_per_step(result.run_id, 1)


def run_in_a_worker(
    instance: DagsterInstance,
    code_dir: Path,
    job: str,
    meanwhile: Callable[[], None] = lambda: None,
    submit_hook: str | None = None,
) -> DagsterRun:
    """Run ``job`` in a run worker process while ``meanwhile`` does something to the site; the
    finished run."""
    worker = lab.start_run_worker(instance, code_dir / "site.py", job, submit_hook=submit_hook)
    try:
        meanwhile()
        assert worker.wait(timeout=300) == 0
    finally:
        worker.kill()
    (run,) = instance.get_runs()
    return run


def step_job_id(instance: DagsterInstance, step_key: str) -> str | None:
    """The Slurm job id of ``step_key``'s submission, from the run's events (the UI shows it)."""
    for run in instance.get_runs():
        for record in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_WORKER_STARTING).records:
            if record.event_log_entry.step_key == step_key:
                return record.event_log_entry.dagster_event.event_specific_data.metadata[SLURM_JOB_ID].value
    return None


def job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    return next((f.split("=", 1)[1] for f in out.split() if f.startswith("JobState=")), "")


def test_a_step_is_never_requeued_by_default(code_dir: Path, instance: DagsterInstance) -> None:
    def requeue_is_refused() -> None:
        job_id = lab.wait_until(lambda: step_job_id(instance, "slow"), timeout=120, what="slow submitted")
        lab.wait_until(lambda: job_state(job_id) == "RUNNING", timeout=120, interval=0.2, what="slow running")
        refused = subprocess.run(
            ["runuser", "-u", lab.cluster_user(), "--", "scontrol", "requeue", job_id], capture_output=True, text=True
        )
        assert refused.returncode != 0, refused

    run = run_in_a_worker(instance, code_dir, "slow_job", requeue_is_refused)
    assert run.is_success
    one_completed_job_per_step(run.run_id, 2)


def test_a_requeued_job_whose_step_finished_does_not_run_it_again(code_dir: Path, instance: DagsterInstance) -> None:
    # The op allows requeue (a site that requeues preempted jobs); its journal decides.
    def requeue_after_it_finished() -> None:
        job_id = lab.wait_until(lambda: step_job_id(instance, "counted"), timeout=120, what="counted submitted")
        lab.wait_until(lambda: job_state(job_id) == "COMPLETED", timeout=120, interval=0.2, what="counted completed")
        # As after a node failure or an admin's requeue: Slurm runs the batch script again.
        lab.run_as_cluster_user(["scontrol", "requeue", job_id])
        # Slurm holds a requeued job: slurmd refuses to launch a job id whose credential it
        # revoked less than cred_expire ago ("Job credential revoked"; 120 s by default, 30 in the lab).
        lab.wait_until(lambda: _requeued(job_id), timeout=240, interval=2, what="requeued job ran")
        run = instance.get_runs()[0]
        assert not run.is_finished  # the step ran again while its run was relaying
        release = lab.shared_dir() / "markers" / f"release-{run.run_id}"
        release.write_text("")
        release.chmod(0o644)

    run = run_in_a_worker(instance, code_dir, "requeue_job", requeue_after_it_finished)
    assert run.is_success
    assert (lab.shared_dir() / "markers" / f"runs-{run.run_id}-counted").read_text() == "ran\n"
    successes = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_SUCCESS).records
    assert sorted(r.event_log_entry.step_key for r in successes) == ["counted", "waits"]


def _requeued(job_id: str) -> bool:
    """Accounting shows the job's first run REQUEUED and a later one ended."""
    out = lab.run_as_cluster_user(["sacct", "-n", "-X", "-D", "-P", "-j", job_id, "--format=State"]).split()
    return "REQUEUED" in out and out[-1] == "COMPLETED"


def test_a_run_survives_ssh_connections_dropped_while_it_relays(code_dir: Path, instance: DagsterInstance) -> None:
    def restart_the_login_node_twice() -> None:
        lab.wait_until(
            lambda: (j := step_job_id(instance, "slow")) and job_state(j) == "RUNNING", timeout=120, what="slow running"
        )
        for _ in range(2):  # while journals and states are read
            lab.restart("sshd", down_for=2)

    run = run_in_a_worker(instance, code_dir, "slow_job", restart_the_login_node_twice)
    assert run.is_success
    assert "after got 7" in messages(instance, run.run_id)
    one_completed_job_per_step(run.run_id, 2)


def test_journals_that_cannot_be_read_fail_the_run_and_a_retry_adopts_its_jobs(
    code_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_RECONNECT_TIMEOUT", "10")
    with lab.login_node_tmp_full():
        worker = lab.start_run_worker(instance, code_dir / "site.py", "slow_job")
        try:
            assert worker.wait(timeout=300) == 0
        finally:
            worker.kill()
        (failed,) = instance.get_runs()
        assert failed.is_failure
        slow = step_job_id(instance, "slow")
        assert slow is not None and job_state(slow) in ("RUNNING", "COMPLETED")  # not cancelled
    errors = [
        error.message
        for r in instance.get_records_for_run(failed.run_id).records
        if (error := getattr(getattr(r.event_log_entry.dagster_event, "event_specific_data", None), "error", None))
    ]
    assert any("could not read the steps' journals" in e and "on the login node full?" in e for e in errors), errors

    retry = lab.start_run_worker(instance, code_dir / "site.py", "slow_job", reexecute_from_failure_of=failed.run_id)
    assert retry.wait(timeout=300) == 0
    latest = instance.get_runs(limit=1)[0]
    assert latest.is_success and "after got 7" in messages(instance, latest.run_id)
    one_completed_job_per_step(failed.run_id, 2)


def test_a_submission_whose_answer_was_lost_is_found_by_name_not_submitted_twice(
    code_dir: Path, instance: DagsterInstance
) -> None:
    # The connection breaks after sbatch was sent: the client cannot know whether it ran.
    run = run_in_a_worker(instance, code_dir, "slow_job", submit_hook="uncertain")
    assert run.is_success
    one_completed_job_per_step(run.run_id, 2)


def test_a_step_whose_job_no_slurm_query_knows_fails_after_the_grace_period(
    code_dir: Path, instance: DagsterInstance
) -> None:
    run = run_in_a_worker(instance, code_dir, "slow_job", submit_hook="phantom")
    assert run.is_failure
    (failure,) = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_FAILURE).records
    assert failure.event_log_entry.step_key == "slow"
    assert (
        "is neither in squeue nor in sacct after 5s"
        in failure.event_log_entry.dagster_event.step_failure_data.error.message
    )


def test_a_step_given_up_on_is_cancelled_and_relays_nothing_more(
    instance: DagsterInstance, transport: Transport, remote_dir: str
) -> None:
    from dagster._core.utils import make_new_run_id

    client = SlurmClient(transport, retry_timeout=60)
    job = client.submit("#!/bin/bash\nsleep 120\n", "lost-step", {"output": f"{remote_dir}/out", "chdir": remote_dir})
    dagster_run = instance.add_run(DagsterRun(job_name="j", run_id=make_new_run_id()))
    relay = Relay(
        client, client, instance, dagster_run, Timing(poll_interval=1.0, journal_grace=5, read_failure_timeout=60)
    )
    step = TrackedStep(step_key="s", job=job, folder=remote_dir)
    relay.track(step)
    relay.give_up(step)
    state = lab.wait_until(
        lambda: (s := client.poll([job])[job.job_id]).is_terminal and s, timeout=60, what="job ended"
    )
    assert state.state.value == "CANCELLED"
    relay.poll()
    assert step.drained and step.outcome is None


def test_hundreds_of_steps_in_flight_each_complete_once(
    code_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 250 steps: a single journal-reading command for more than about 210 used to pass the
    # kernel's argument limit, and every read failed. The benchmark's job, at this size, its
    # leaves packed (each keeps its own journal, read with the others'); hundreds of jobs of
    # their own are test_slurm_client's.
    job = (lab.REPO / "bench/fanout_job.py").read_text().replace("\nSTEPS = 100\n", "\nSTEPS = 250\n")
    (code_dir / "fanout_job.py").write_text(job)
    (code_dir / "fanout_job.py").chmod(0o644)
    batches: list[int] = []
    submit_all = SlurmClient.submit_all

    def counting(self: SlurmClient, requests: list) -> list:
        batches.append(len(requests))
        return submit_all(self, requests)

    monkeypatch.setattr(SlurmClient, "submit_all", counting)
    result = execute_job(ReconstructableJob.for_file(str(code_dir / "fanout_job.py"), "fanout_packed"), instance)
    assert result.success
    starts = [
        r.event_log_entry.step_key
        for r in instance.get_records_for_run(result.run_id, of_type=DagsterEventType.STEP_START, limit=1000).records
    ]
    assert len(starts) == 250 and len(set(starts)) == 250
    # The root, then its 249 leaves, which became ready together: one submission command each.
    assert batches == [1, 1]
    one_completed_job_per_step(result.run_id, 2)


def test_nfs_default_caching_on_the_login_node_loses_nothing(
    code_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An NFS client's defaults: directory entries (negative ones too) cached for up to 60 s.
    monkeypatch.setenv("LAB_FS_CACHE", "60:3")
    monkeypatch.setenv("DAGSTER_SLURM_JOURNAL_GRACE", "90")  # the default, which exceeds NFS's 60 s
    lab.restart("sshd")
    try:
        result = run(code_dir, "noisy_job", instance)
        assert result.success
        assert messages(instance, result.run_id).count(f"log: {TEXT}") == 4
        one_completed_job_per_step(result.run_id, 4)
    finally:
        monkeypatch.delenv("LAB_FS_CACHE")
        lab.restart("sshd")


class ProcessWatcher:
    """Samples every process's command line (what `ps` shows anyone on the host) meanwhile."""

    def __init__(self) -> None:
        import threading

        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.seen.update(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines())
            self._stop.wait(0.05)

    def __enter__(self) -> "ProcessWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_secrets_job(code_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run secrets_job with secrets in the run worker's environment (one named like a secret, one
    not) and a value the step is given (env_vars); check that none reached a command line, the
    job's script or its environment, and that the step got its value. The run's id."""
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "pg-secret-4711")
    monkeypatch.setenv("WAREHOUSE_DSN", "dsn-secret-2342")
    monkeypatch.setenv("STEP_SETTING", "step-value-0815")
    secrets = ("pg-secret-4711", "dsn-secret-2342", "step-value-0815")
    with ProcessWatcher() as ps:
        result = run(code_dir, "secrets_job", instance)
    assert result.success
    assert "DAGSTER_PG_PASSWORD in environment: False" in messages(instance, result.run_id)
    assert "WAREHOUSE_DSN in environment: False" in messages(instance, result.run_id)
    assert "STEP_SETTING=step-value-0815" in messages(instance, result.run_id)
    assert not [line for line in ps.seen if any(secret in line for secret in secrets)]
    (job,) = lab.settled_jobs_of_run(result.run_id, 1)
    if os.getuid() != 0:
        return result.run_id
    # Slurm keeps each job's script and environment (AccountingStoreFlags=job_script,job_env),
    # for its administrators (root, here) to read.
    script = subprocess.run(["sacct", "-B", "-j", job["job_id"]], capture_output=True, text=True, check=True).stdout
    environment = subprocess.run(
        ["sacct", "--env-vars", "-j", job["job_id"]], capture_output=True, text=True, check=True
    ).stdout
    assert "exec " in script and "SLURM_" in environment  # they were recorded
    for recorded in (script, environment):
        assert not any(secret in recorded for secret in secrets)
    return result.run_id


def test_secrets_reach_no_job_script_or_command_line_over_ssh(
    code_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_secrets_job(code_dir, instance, monkeypatch)


@pytest.mark.local
def test_secrets_reach_no_job_script_or_command_line_with_the_local_transport(
    tmp_path: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the login node sbatch would inherit the run worker's whole environment.
    import shutil

    code = tmp_path / "code"
    shutil.copytree(Path(__file__).parent / "jobs", code)
    code.chmod(0o755)
    monkeypatch.chdir(code)
    monkeypatch.setenv("DAGSTER_SLURM_TRANSPORT", "local")
    run_secrets_job(code, instance, monkeypatch)
