"""A step's stdout and stderr reach the UI's logs view while the step runs, bounded per read."""

from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

from dagster_slurm_launcher.dagster_internals import ComputeIOType
from dagster_slurm_launcher.executor.step_logs import MAX_LOG_BYTES, READ_BUDGET, TAIL_BYTES
from tests import lab
from tests.jobs.site import TEXT
from tests.test_site_faults import job_state, run_in_a_worker, step_job_id

pytestmark = pytest.mark.lab


def shown(instance: DagsterInstance, step_key: str, io_type: ComputeIOType = ComputeIOType.STDOUT) -> str:
    """What the UI's logs view of ``step_key`` shows now (the instance's compute log manager)."""
    for run in instance.get_runs():
        for record in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.LOGS_CAPTURED).records:
            data = record.event_log_entry.dagster_event.logs_captured_data
            if step_key in data.step_keys:
                manager = instance.compute_log_manager
                log = manager.get_log_data(manager.build_log_key_for_run(run.run_id, data.file_key))
                out = log.stdout if io_type == ComputeIOType.STDOUT else log.stderr
                return (out or b"").decode()
    return ""


def test_a_running_steps_output_shows_in_its_logs_while_it_runs(code_dir: Path, instance: DagsterInstance) -> None:
    def watch_the_logs_view() -> None:
        lab.wait_until(lambda: f"working on it: {TEXT}" in shown(instance, "talks_while_it_works"), 120, what="line")
        # Seen while the job still runs: it waits for the release below.
        assert job_state(step_job_id(instance, "talks_while_it_works")) == "RUNNING"
        assert "finished working" not in shown(instance, "talks_while_it_works")
        run = instance.get_runs()[0]
        release = lab.shared_dir() / "markers" / f"release-{run.run_id}"
        release.write_text("")
        release.chmod(0o644)

    run = run_in_a_worker(instance, code_dir, "live_logs_job", watch_the_logs_view)
    assert run.is_success
    talk = shown(instance, "talks_while_it_works")
    assert talk.count(f"working on it: {TEXT}") == 1 and talk.count("finished working") == 1

    # 100 MB of output: the view shows a bounded part of it, says what it left out, and its end.
    flood = shown(instance, "floods")
    assert len(flood) <= MAX_LOG_BYTES + READ_BUDGET + TAIL_BYTES  # at most one read past the limit, and the end
    assert "bytes not shown; all of it is in" in flood
    assert flood.rstrip().endswith("flood done")
