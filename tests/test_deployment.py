"""A persistent deployment: a real dagster-daemon with the SlurmRunLauncher, queued runs, run
monitoring and run retries, configured from dagster.yaml.example. Whatever happens to a run
worker, each step's outcome is computed by exactly one Slurm job."""

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.dagster_run import RunsFilter

from dagster_slurm_launcher.launcher.process import HOST_TAG, LOG_TAG, PID_TAG, WorkerProcess
from dagster_slurm_launcher.naming import job_name
from dagster_slurm_launcher.slurm import SlurmError
from tests import lab
from tests.deployment import Deployment

pytestmark = pytest.mark.lab


def kill_worker_while_slow_step_runs(d: Deployment, run_id: str, sig: int) -> None:
    lab.wait_until(lambda: lab.job_of_step(run_id, "slow_step", {"RUNNING"}), timeout=180, what="slow_step running")
    os.kill(d.worker_pid(run_id), sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_run_monitoring_resumes_a_run_whose_worker_died_and_the_step_runs_once(deploy, sig: int) -> None:
    d = deploy(monitoring=True)
    run_id = d.launch("resumable")
    first_worker = lab.wait_until(lambda: PID_TAG in d.run(run_id).tags and d.worker_pid(run_id), 120, what="worker")
    kill_worker_while_slow_step_runs(d, run_id, sig)
    slow_job = lab.job_of_step(run_id, "slow_step", {"RUNNING", "COMPLETED"})

    assert d.wait_for_status(run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}) == DagsterRunStatus.SUCCESS
    assert d.worker_pid(run_id) != first_worker
    # What the daemon showed when the worker died: where it ran, and the run's jobs in Slurm.
    resumed = next(
        r.event_log_entry.dagster_event.message
        for r in d.instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
        if "Detected run worker status" in (r.event_log_entry.dagster_event.message or "")
    )
    assert f"run worker pid {first_worker}" in resumed and "is gone" in resumed
    assert slow_job is not None
    slow = lab.jobs_of_step(run_id, "slow_step", at_least=2)
    assert [j["state"] for j in slow] == ["COMPLETED"]
    assert "after_slow got 42" in [e.user_message for e in d.instance.all_logs(run_id)]


def test_run_monitoring_resumes_a_run_of_packed_steps_whose_worker_got_sigterm_and_each_step_runs_once(deploy) -> None:
    d = deploy(monitoring=True)
    run_id = d.launch("packed_resumable_job")
    lab.wait_until(lambda: PID_TAG in d.run(run_id).tags and d.worker_pid(run_id), 120, what="worker")
    # slow_packed and quick_packed are ready together: the run's first job is their pack.
    lab.wait_until(lambda: any(j["state"] == "RUNNING" for j in lab.slurm_jobs_of_run(run_id)), 180, what="pack")
    os.kill(d.worker_pid(run_id), signal.SIGTERM)

    assert d.wait_for_status(run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}) == DagsterRunStatus.SUCCESS
    for step in ["slow_packed", "quick_packed"]:
        assert lab.packed_journals(run_id, step).count(b"STEP_START") == 1
    assert len(lab.settled_jobs_of_run(run_id, 2)) == 2  # the pack, and after_packed's own job
    assert "after_packed got 43" in [e.user_message for e in d.instance.all_logs(run_id)]


def test_a_run_whose_worker_host_vanished_is_resumed_here_once_its_heartbeat_stops(deploy) -> None:
    # A webserver on another machine launched the run, or the daemon's container was replaced:
    # the worker's host is not this one, and it died with its host.
    d = deploy(monitoring=True, heartbeat_timeout=10)
    run_id = d.launch("resumable")
    lab.wait_until(lambda: PID_TAG in d.run(run_id).tags, 120, what="worker")
    lab.wait_until(lambda: lab.job_of_step(run_id, "slow_step", {"RUNNING"}), timeout=180, what="slow_step running")
    first_worker = d.worker_pid(run_id)
    d.instance.add_run_tags(run_id, {HOST_TAG: "vanished.example"})
    with contextlib.suppress(ProcessLookupError):  # it may have seen the tag and stopped first
        os.kill(first_worker, signal.SIGKILL)

    assert d.wait_for_status(run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}) == DagsterRunStatus.SUCCESS
    resumed = [
        r.event_log_entry.dagster_event.message
        for r in d.instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
        if "Detected run worker status" in (r.event_log_entry.dagster_event.message or "")
    ]
    assert len(resumed) == 1 and f"pid {first_worker} on vanished.example has not reported" in resumed[0]
    assert [j["state"] for j in lab.jobs_of_step(run_id, "slow_step")] == ["COMPLETED"]


def test_a_run_worker_whose_run_was_resumed_by_another_stops_and_leaves_the_steps_running(deploy) -> None:
    # A worker taken for dead (its host cut off from the daemon, say) that comes back must not
    # run the run alongside the worker that resumed it.
    d = deploy(monitoring=False, heartbeat_timeout=10)
    run_id = d.launch("resumable")
    lab.wait_until(lambda: PID_TAG in d.run(run_id).tags, 120, what="worker")
    job = lab.wait_until(
        lambda: lab.job_of_step(run_id, "slow_step", {"RUNNING"}), timeout=180, what="slow_step running"
    )
    worker = WorkerProcess.from_tags(d.run(run_id).tags)
    d.instance.add_run_tags(run_id, {HOST_TAG: "resumer.example", PID_TAG: "4242"})

    lab.wait_until(lambda: worker.state() == "gone", 30, what="the replaced worker to stop")
    assert "run resumed by another run worker; stopping" in Path(d.run(run_id).tags[LOG_TAG]).read_text()
    assert lab.job_of_step(run_id, "slow_step", {"RUNNING", "COMPLETED"})["job_id"] == job["job_id"]
    assert d.run(run_id).status == DagsterRunStatus.STARTED


def test_with_run_retries_the_retry_run_adopts_the_running_step_and_reads_its_output(deploy) -> None:
    d = deploy(monitoring=False, retries=True)
    run_id = d.launch("resumable")
    lab.wait_until(lambda: PID_TAG in d.run(run_id).tags, 120, what="worker")
    kill_worker_while_slow_step_runs(d, run_id, signal.SIGTERM)

    assert d.wait_for_status(run_id, {DagsterRunStatus.FAILURE, DagsterRunStatus.SUCCESS}) == DagsterRunStatus.FAILURE
    retry = lab.wait_until(
        lambda: d.instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run_id})), 120, what="retry run"
    )[0]  # type: ignore[index]
    assert (
        d.wait_for_status(retry.run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE})
        == DagsterRunStatus.SUCCESS
    )
    # One job for slow_step across both runs; after_slow (only in the retry) loaded its output
    # from the run-scoped storage of the run that submitted it.
    slow = lab.jobs_of_step(run_id, "slow_step", at_least=2)
    assert [j["state"] for j in slow] == ["COMPLETED"]
    assert "after_slow got 42" in [e.user_message for e in d.instance.all_logs(retry.run_id)]
    engine = d.instance.get_records_for_run(retry.run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    assert any("Adopted Slurm job" in (r.event_log_entry.dagster_event.message or "") for r in engine)


def test_terminating_while_slurm_is_down_stops_the_worker_and_the_worker_cancels_the_jobs_once_it_is_back(
    deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = deploy(monitoring=True)
    run_id = d.launch("long_running")
    lab.wait_until(lambda: lab.job_of_step(run_id, "long_step", {"RUNNING"}), timeout=180, what="long_step running")
    monkeypatch.setenv("DAGSTER_SLURM_RECONNECT_TIMEOUT", "3")  # the Terminate button's process gives up soon
    controller = lab.restart_in_background("slurmctld", down_for=45)
    try:
        with pytest.raises(SlurmError):
            d.instance.run_launcher.terminate(run_id)
        assert d.run(run_id).status == DagsterRunStatus.CANCELING and controller.is_alive()
    finally:
        controller.join()

    assert d.wait_for_status(run_id, {DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE}) == DagsterRunStatus.CANCELED
    assert [j["state"].split()[0] for j in lab.jobs_of_step(run_id, "long_step")] == ["CANCELLED"]


def test_terminating_a_run_whose_worker_is_on_another_host_stops_that_worker_through_its_heartbeat(
    deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = deploy(monitoring=True, heartbeat_timeout=10)
    run_id = d.launch("long_running")
    lab.wait_until(lambda: lab.job_of_step(run_id, "long_step", {"RUNNING"}), timeout=180, what="long_step running")
    worker = WorkerProcess.from_tags(d.run(run_id).tags)
    with monkeypatch.context() as elsewhere:  # the Terminate button of a webserver on another machine
        elsewhere.setattr(socket, "gethostname", lambda: "webserver.example")
        assert d.instance.run_launcher.terminate(run_id)

    assert d.wait_for_status(run_id, {DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE}) == DagsterRunStatus.CANCELED
    lab.wait_until(lambda: worker.state() == "gone", 60, what="the worker to stop")
    canceled = d.instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_CANCELED).records
    assert [r.event_log_entry.dagster_event.message for r in canceled] == [
        'Execution of run for "long_running" canceled.'
    ]
    assert [j["state"].split()[0] for j in lab.jobs_of_step(run_id, "long_step")] == ["CANCELLED"]


def test_a_job_that_names_its_executor_keeps_it(deploy) -> None:
    d = deploy()
    run_id = d.launch("opted_out")
    assert d.wait_for_status(run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}) == DagsterRunStatus.SUCCESS
    assert lab.slurm_jobs_of_run(run_id) == []


def request_asset_backfill(instance: DagsterInstance, code_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """What the UI's "Materialize all" on a partitioned asset does: a backfill for the daemon."""
    import importlib

    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    monkeypatch.syspath_prepend(str(code_dir))
    defs = importlib.import_module("deployment").defs
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        partition_names=None,
        asset_selection=[AssetKey("daily")],
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=True,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def test_a_daemon_restart_mid_backfill_loses_and_doubles_nothing(
    deploy, code_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = deploy(monitoring=True, max_concurrent_runs=4)
    backfill_id = request_asset_backfill(d.instance, code_dir, monkeypatch)
    lab.wait_until(
        lambda: sum(r.status == DagsterRunStatus.SUCCESS for r in d.instance.get_runs()) >= 3, 300, what="3 done"
    )
    # Runs in flight keep their (detached) workers; queued ones wait for the new daemon.
    d.stop_daemon()
    in_flight = [
        r.run_id for r in d.instance.get_runs() if r.status in (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED)
    ]
    assert in_flight
    d.start_daemon()

    lab.wait_until(
        lambda: (
            d.instance.get_backfill(backfill_id).status
            in (BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED)
        ),
        900,
        interval=3,
        what="backfill completed",
    )
    assert d.instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    runs = d.instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert len(runs) == 12 and {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
    for run in runs:
        assert [j["state"] for j in lab.jobs_of_step(run.run_id, "daily")] == ["COMPLETED"]
    # No run needed a new worker: the restart did not touch the ones in flight.
    assert [d.instance.count_resume_run_attempts(run_id) for run_id in in_flight] == [0] * len(in_flight)
    materialized = {r.partition_key for r in d.instance.fetch_materializations(AssetKey("daily"), limit=100).records}
    assert len(materialized) == 12


def test_a_run_launched_through_a_code_server_runs_each_step_as_one_slurm_job(deploy) -> None:
    # The run's origin is the code server's (its Python, its working directory), which the
    # launcher starts the run worker from.
    d = deploy(code_server=True)
    run_id = d.launch("resumable")
    assert d.wait_for_status(run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}) == DagsterRunStatus.SUCCESS
    jobs = lab.settled_jobs_of_run(run_id, 2)
    assert [j["state"] for j in jobs] == ["COMPLETED", "COMPLETED"]
    assert {j["name"] for j in jobs} == {job_name(run_id, "slow_step"), job_name(run_id, "after_slow")}
    assert "after_slow got 42" in [e.user_message for e in d.instance.all_logs(run_id)]
