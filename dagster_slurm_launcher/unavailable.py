"""The error a step gets on a compute node for what its instance cannot answer there."""

from dagster import DagsterError

HISTORY_TAG = "dagster-slurm/asset-history"
"""Op/asset tag: further asset keys (``a/b``, comma-separated) whose latest materialization
and observation the step may read on the compute node."""

_WHAT_A_STEP_READS = (
    "A step there can read the latest materialization and observation (instance.get_asset_records, "
    "get_latest_materialization_event(s), fetch_materializations/fetch_observations with limit=1, no cursor, "
    "at most the run's partition) of the assets it materializes or depends on and of the assets its "
    f"'{HISTORY_TAG}' tag lists, and the data versions of the upstream partitions it reads."
)
_ELSEWHERE = "Read what else the step needs in a sensor or schedule and pass it in run config."


class UnavailableOnComputeNode(DagsterError):
    """A step on a compute node used a part of the Dagster instance that it cannot reach from
    there: asset history that was not shipped with it, other runs, a write that would be lost."""


def unshipped_asset(what: str) -> UnavailableOnComputeNode:
    """A read of an asset whose history was not shipped with the step: the tag ships it."""
    return UnavailableOnComputeNode(
        f"{what} is not available on compute nodes, which cannot reach the Dagster instance. {_WHAT_A_STEP_READS} "
        f"To ship this asset's history, name it in the tag: @asset(op_tags={{'{HISTORY_TAG}': 'other_asset,a/b'}}), "
        "or tags= on an op."
    )


def beyond_the_latest(what: str) -> UnavailableOnComputeNode:
    """A read of more than is shipped of an asset (older records, other partitions, cursors)."""
    return UnavailableOnComputeNode(
        f"{what} is not available on compute nodes, which cannot reach the Dagster instance. {_WHAT_A_STEP_READS} "
        f"No tag ships older records or other partitions. {_ELSEWHERE}"
    )


def refusal(what: str, write: bool = False) -> UnavailableOnComputeNode:
    """Any other use of the instance: a read it would answer from the step's private copy, or a
    write that would change only that copy."""
    if write:
        return UnavailableOnComputeNode(
            f"{what} is not available on compute nodes, which cannot reach the Dagster instance: it would "
            "change only the step's private copy of the instance, and be lost. Make the change from a sensor "
            "or schedule (for dynamic partitions: SensorResult(dynamic_partitions_requests=...))."
        )
    return UnavailableOnComputeNode(
        f"{what} is not available on compute nodes, which cannot reach the Dagster instance: a step there "
        "sees its own run, the events it recorded itself, and the asset history and dynamic partitions "
        f"sent with it (README: 'Asset history on compute nodes'). {_ELSEWHERE}"
    )
