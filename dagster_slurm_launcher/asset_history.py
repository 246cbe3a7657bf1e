"""What a step may read of its assets' history on a compute node, which cannot reach the instance.

Under the multiprocess executor a step reads the instance's event log: Dagster's provenance code
takes the latest materialization (or observation) of each upstream asset for the
``dagster/input_data_version/*`` and ``dagster/input_event_pointer/*`` tags and the
``dagster/data_version`` derived from them, and user code asks for an asset's latest
materialization. When it launches a step, the executor collects that history for every asset
the step materializes or depends on (and for assets the step's ``dagster-slurm/asset-history``
tag names), with storage ids, and the latest data version of each upstream partition the step
reads; the worker's instance answers from it. Any other history read fails with an error that
says what is available and how to ship more, never with a silent ``None``.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    EventLogRecord,
    JobDefinition,
    StepExecutionContext,
    deserialize_value,
    serialize_value,
)

from dagster_slurm_launcher.dagster_internals import (
    DATA_VERSION_TAG,
    SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD,
    AssetEntry,
    AssetRecord,
    ExecutionStep,
    PlanExecutionContext,
)
from dagster_slurm_launcher.unavailable import HISTORY_TAG, beyond_the_latest, unshipped_asset

MATERIALIZATION = "materialization"
OBSERVATION = "observation"


@dataclass(frozen=True)
class AssetHistory:
    """The latest materialization and observation of some assets, and data versions of some of
    their partitions, as the instance held them when the step was launched."""

    records: Mapping[AssetKey, AssetRecord | None]
    """The instance's asset record of each asset collected (``None``: it has none)."""
    observations: Mapping[AssetKey, EventLogRecord | None]
    latest_in_partition: Mapping[tuple[AssetKey, str], Mapping[str, EventLogRecord | None]]
    """The same, in the step's partition (what an asset check of a partitioned asset targets)."""
    partition_data_versions: Mapping[AssetKey, tuple[frozenset[str], Mapping[str, str]]]
    """Per upstream asset: the partitions collected, and the data versions of those of them
    that were materialized."""

    def record(self, key: AssetKey) -> AssetRecord | None:
        if key not in self.records:
            raise unshipped_asset(f"the history of asset {key.to_user_string()}")
        return self.records[key]

    def latest_record(self, key: AssetKey, kind: str) -> EventLogRecord | None:
        if kind == OBSERVATION:
            self.record(key)  # refused alike
            return self.observations[key]
        record = self.record(key)
        return record.asset_entry.last_materialization_record if record else None

    def latest_record_in_partition(self, key: AssetKey, partition: str, kind: str) -> EventLogRecord | None:
        if (key, partition) not in self.latest_in_partition:
            raise beyond_the_latest(f"the history of partition {partition} of asset {key.to_user_string()}")
        return self.latest_in_partition[(key, partition)][kind]

    def data_versions(self, key: AssetKey, partitions: Sequence[str]) -> Mapping[str, str]:
        collected, versions = self.partition_data_versions.get(key, (frozenset(), {}))
        if not collected.issuperset(partitions):
            raise beyond_the_latest(
                f"the data versions of partitions {list(partitions)} of asset {key.to_user_string()}"
            )
        return {p: versions[p] for p in partitions if p in versions}

    def to_json(self) -> dict[str, Any]:
        return {
            "records": [
                {"key": key.path, "record": _record_to_json(record), OBSERVATION: _to_json(self.observations[key])}
                for key, record in self.records.items()
            ],
            "latest_in_partition": [
                {"key": key.path, "partition": partition, **{kind: _to_json(r) for kind, r in kinds.items()}}
                for (key, partition), kinds in self.latest_in_partition.items()
            ],
            "partition_data_versions": [
                {"key": key.path, "partitions": sorted(collected), "versions": versions}
                for key, (collected, versions) in self.partition_data_versions.items()
            ],
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "AssetHistory":
        records = {AssetKey(item["key"]): _record_from_json(item["record"]) for item in value["records"]}
        observations = {AssetKey(item["key"]): _event_record_from_json(item[OBSERVATION]) for item in value["records"]}
        in_partition = {
            (AssetKey(item["key"]), item["partition"]): {
                k: _event_record_from_json(item[k]) for k in (MATERIALIZATION, OBSERVATION)
            }
            for item in value["latest_in_partition"]
        }
        versions = {
            AssetKey(item["key"]): (frozenset(item["partitions"]), item["versions"])
            for item in value["partition_data_versions"]
        }
        return cls(records, observations, in_partition, versions)


class StepView:
    """What a step will read, worked out before it runs, by Dagster's own code.

    The run worker has no StepExecutionContext (that needs the step's resources), only the
    step, its job and its run. These are the StepExecutionContext methods the step's provenance
    code uses to choose what to read (DataVersionCache), bound to just that.
    """

    get_output_asset_keys = StepExecutionContext.get_output_asset_keys
    has_asset_partitions_for_input = StepExecutionContext.has_asset_partitions_for_input
    asset_partitions_subset_for_input = StepExecutionContext.asset_partitions_subset_for_input
    partition_key_range = StepExecutionContext.partition_key_range
    run_partitions_def = StepExecutionContext.run_partitions_def
    assets_def = StepExecutionContext.assets_def
    entity_partitions_def = StepExecutionContext.entity_partitions_def
    has_partitions = PlanExecutionContext.has_partitions
    has_partition_key = PlanExecutionContext.has_partition_key
    partition_key = StepExecutionContext.partition_key

    def __init__(self, job_def: JobDefinition, step: ExecutionStep, run: DagsterRun, instance: DagsterInstance) -> None:
        self.job_def = job_def
        self.step = step
        self.node_handle = step.node_handle
        self.instance = instance
        self._plan_data = SimpleNamespace(dagster_run=run)


def _to_json(value: object) -> str | None:
    return None if value is None else serialize_value(value)


def _event_record_from_json(text: str | None) -> EventLogRecord | None:
    return None if text is None else deserialize_value(text, EventLogRecord)


def _record_to_json(record: AssetRecord | None) -> dict[str, Any] | None:
    # AssetRecord and AssetEntry are not serializable with serdes; each of their fields is.
    if record is None:
        return None
    entry = record.asset_entry
    return {
        "storage_id": record.storage_id,
        "entry": {name: serialize_value(getattr(entry, name)) for name in _ENTRY_FIELDS},
    }


def _record_from_json(value: Mapping[str, Any] | None) -> AssetRecord | None:
    if value is None:
        return None
    entry = AssetEntry(**{name: deserialize_value(text) for name, text in value["entry"].items()})
    return AssetRecord(storage_id=value["storage_id"], asset_entry=entry)


# Not the partition status cache: serialized subsets of every partition (hundreds of KiB for a
# wide asset) that the UI reads; what a step may read never uses it.
_ENTRY_FIELDS = tuple(name for name in AssetEntry.__annotations__ if name != "cached_status")


def history_keys(step_context: StepView) -> list[AssetKey]:
    """The assets whose history a step may read: those it materializes or checks, their
    parents, and those its tag names."""
    asset_layer = step_context.job_def.asset_layer
    keys: list[AssetKey] = []
    for key in step_context.get_output_asset_keys():
        keys.append(key)
        if asset_layer.has(key):
            keys.extend(asset_layer.get(key).parent_keys)
    for output in step_context.step.step_outputs:
        # An asset check reads its asset's latest materialization (AssetCheckResult.to_asset_check_evaluation).
        check_key = asset_layer.get_asset_check_key_for_node_output(step_context.node_handle, output.name)
        if check_key is not None:
            keys.append(check_key.asset_key)
    tag = step_context.step.tags.get(HISTORY_TAG, "")
    keys.extend(AssetKey.from_user_string(k.strip()) for k in tag.split(",") if k.strip())
    return list(dict.fromkeys(keys))


def collect(step_context: StepView, instance: DagsterInstance) -> AssetHistory:
    """What the step may read of its assets' history, read from ``instance`` now.

    Costs one asset-records query, one observation query per asset (two more in a partitioned
    run, for the run's partition), and for each partitioned
    input one data-version query over the partitions the step reads (none past Dagster's own
    threshold, above which the step uses the asset's latest record instead).
    """
    keys = history_keys(step_context)
    if not keys:  # get_asset_records([]) would read every asset's record
        return AssetHistory({}, {}, {}, {})
    found = {r.asset_entry.asset_key: r for r in instance.get_asset_records(keys)}
    records = {key: found.get(key) for key in keys}
    observations = {key: next(iter(instance.fetch_observations(key, limit=1).records), None) for key in keys}
    in_partition = {}
    if step_context.has_partition_key:
        partition = step_context.partition_key
        for key in keys:
            scoped = AssetRecordsFilter(asset_key=key, asset_partitions=[partition])
            in_partition[(key, partition)] = {
                MATERIALIZATION: next(iter(instance.fetch_materializations(scoped, limit=1).records), None),
                OBSERVATION: next(iter(instance.fetch_observations(scoped, limit=1).records), None),
            }
    return AssetHistory(records, observations, in_partition, _partition_data_versions(step_context, instance, keys))


def _partition_data_versions(
    step_context: StepView, instance: DagsterInstance, keys: Iterable[AssetKey]
) -> dict[AssetKey, tuple[frozenset[str], dict[str, str]]]:
    # The partitions DataVersionCache._fetch_input_asset_version_info reads, found the same way
    # (dagster/_core/execution/context/data_version_cache.py).
    asset_layer = step_context.job_def.asset_layer
    versions: dict[AssetKey, tuple[frozenset[str], dict[str, str]]] = {}
    for key in keys:
        input_name = asset_layer.get_node_input_name(step_context.node_handle, key)
        if not input_name or not step_context.has_asset_partitions_for_input(input_name):
            continue
        subset = step_context.asset_partitions_subset_for_input(input_name, require_valid_partitions=False)
        partitions = list(subset.get_partition_keys())
        if len(partitions) >= SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD:
            continue
        tags = instance.event_log_storage.get_latest_tags_by_partition(
            key, DagsterEventType.ASSET_MATERIALIZATION, [DATA_VERSION_TAG], asset_partitions=partitions
        )
        versions[key] = (
            frozenset(partitions),
            {p: t[DATA_VERSION_TAG] for p, t in tags.items() if DATA_VERSION_TAG in t},
        )
    return versions
