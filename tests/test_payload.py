"""step.json round-trips, and a worker refuses a format newer than its own, saying what to do."""

import json

import pytest
from dagster import DagsterRun, job, reconstructable

from dagster_slurm_launcher.asset_history import AssetHistory
from dagster_slurm_launcher.dagster_internals import ExecuteStepArgs
from dagster_slurm_launcher.payload import FORMAT, PayloadFormatError, StepPayload


@job
def noop_job() -> None:
    pass


def payload() -> StepPayload:
    run = DagsterRun(job_name="job", run_id="a-run")
    origin = reconstructable(noop_job).get_python_origin()
    args = ExecuteStepArgs(job_origin=origin, run_id="a-run", step_keys_to_execute=["step"], instance_ref=None)
    return StepPayload(args, run, "/shared/base", {"regions": ["north"]}, AssetHistory({}, {}, {}, {}), None)


def test_what_the_executor_writes_the_worker_reads_back() -> None:
    back = StepPayload.from_json(payload().to_json())
    assert back.run.run_id == "a-run" and back.args.step_keys_to_execute == ["step"]
    assert back.dynamic_partitions == {"regions": ["north"]} and back.remote_base_dir == "/shared/base"


def test_a_payload_from_a_newer_executor_is_refused_naming_the_fix() -> None:
    newer = json.loads(payload().to_json()) | {"format": FORMAT + 1}
    with pytest.raises(PayloadFormatError, match="Install the same release"):
        StepPayload.from_json(json.dumps(newer))


def test_a_payload_written_before_formats_were_numbered_is_read() -> None:
    old = json.loads(payload().to_json())
    del old["format"]
    old["artifacts_dir"] = old.pop("remote_base_dir")
    assert StepPayload.from_json(json.dumps(old)).run.run_id == "a-run"
