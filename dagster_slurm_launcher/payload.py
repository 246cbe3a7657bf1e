"""``step.json``: what the executor gives a step worker, in the step's folder.

The executor writes it, the worker on the compute node reads it; they may be different releases
of this package for a moment (an upgrade while jobs wait in the queue), so the file says which
format it is in, and a worker refuses a format newer than its own with a message that says so.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dagster import DagsterRun, deserialize_value, serialize_value

from dagster_slurm_launcher.asset_history import AssetHistory
from dagster_slurm_launcher.dagster_internals import ExecuteStepArgs, ExecutionPlanSnapshot

PAYLOAD_FILE = "step.json"
# 1: the first format with a version; files without one (0.1) have the same fields.
FORMAT = 1


class PayloadFormatError(Exception):
    """A step.json this worker cannot read."""


@dataclass(frozen=True)
class StepPayload:
    """What the step worker needs, including what it could not read from the instance itself."""

    args: ExecuteStepArgs
    """The step's execution arguments, without the instance ref (it can hold database credentials)."""
    run: DagsterRun
    remote_base_dir: str
    """The executor's folder on the shared filesystem; the default IO manager writes under its
    ``storage`` folder, as it would under ``$DAGSTER_HOME/storage``."""
    dynamic_partitions: Mapping[str, Sequence[str]]
    """The dynamic partitions of the job's assets, as the instance held them at submission."""
    asset_history: AssetHistory
    execution_plan_snapshot: ExecutionPlanSnapshot | None
    """The run's plan snapshot, when it has repository load data (cacheable assets read it)."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "args": serialize_value(self.args),
                "run": serialize_value(self.run),
                "remote_base_dir": self.remote_base_dir,
                "artifacts_dir": self.remote_base_dir,  # what a worker of 0.1 reads, during an upgrade
                "dynamic_partitions": {name: list(keys) for name, keys in self.dynamic_partitions.items()},
                "asset_history": self.asset_history.to_json(),
                "execution_plan_snapshot": serialize_value(self.execution_plan_snapshot)
                if self.execution_plan_snapshot
                else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "StepPayload":
        value = json.loads(text)
        if value.get("format", FORMAT) > FORMAT:
            raise PayloadFormatError(
                f"{PAYLOAD_FILE} is in format {value['format']}, newer than this step worker reads ({FORMAT}): the "
                "executor runs a newer dagster-slurm-launcher than the compute nodes' Python environment "
                "(DAGSTER_SLURM_PYTHON). Install the same release there."
            )
        snapshot = value.get("execution_plan_snapshot")
        return cls(
            args=deserialize_value(value["args"], ExecuteStepArgs),
            run=deserialize_value(value["run"], DagsterRun),
            remote_base_dir=value["remote_base_dir"]
            if "remote_base_dir" in value
            else value["artifacts_dir"],  # 0.1's name
            dynamic_partitions=value["dynamic_partitions"],
            asset_history=AssetHistory.from_json(value["asset_history"]),
            execution_plan_snapshot=deserialize_value(snapshot, ExecutionPlanSnapshot) if snapshot else None,
        )
