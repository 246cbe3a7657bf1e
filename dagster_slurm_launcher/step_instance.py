"""The Dagster instance a step sees on a compute node, which cannot reach the real one.

Its event log is the step's journal (the run worker relays it into the instance). It answers a
read only where its answer is the one the real instance would give: the step's own run, the
events the step recorded, the asset history and the dynamic partitions the executor shipped with
the step (see :mod:`.asset_history`). Every other public method of Dagster's event log and run
storages refuses with :class:`UnavailableOnComputeNode`, naming the method: a read would see
only the step's private copy, and a write (a dynamic partition added, a run tag set) would be
lost with it. Refusing by default means a method a new Dagster release adds is refused too,
until it is known to be answered correctly.
"""

import inspect
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    EventLogEntry,
    EventRecordsResult,
    RunsFilter,
)

from dagster_slurm_launcher.asset_history import MATERIALIZATION, OBSERVATION, AssetHistory
from dagster_slurm_launcher.dagster_internals import (
    DATA_VERSION_TAG,
    AssetRecord,
    DefaultRunCoordinator,
    EventLogCursor,
    EventLogStorage,
    ExecutionPlanSnapshot,
    InMemoryEventLogStorage,
    InMemoryRunStorage,
    InstanceType,
    LocalArtifactStorage,
    NoOpComputeLogManager,
    RunStorage,
    SyncInMemoryRunLauncher,
    changed,
    unstamped_in_memory_storages,
)
from dagster_slurm_launcher.journal import JournalWriter, step_storage_id
from dagster_slurm_launcher.unavailable import UnavailableOnComputeNode, beyond_the_latest, refusal

# Public methods of EventLogStorage that the in-memory storage answers as the instance would, or
# that Dagster's storage code calls on itself; the asset-history reads are overridden below.
_EVENT_LOG_ANSWERED = frozenset(
    {
        "store_event",
        "store_event_batch",
        "register_instance",
        "dispose",
        "alembic_version",
        "upgrade",
        "get_asset_tags_to_index",
        "can_read_asset_status_cache",
        "can_write_asset_status_cache",
        "default_run_scoped_event_tailer_offset",
        "watch",
        "end_watch",
    }
)
# Public methods of RunStorage that the in-memory storage answers as the instance would.
_RUN_ANSWERED = frozenset(
    {
        "register_instance",
        "dispose",
        "alembic_version",
        # The run's execution plan snapshot, shipped when the run has repository load data.
        "get_execution_plan_snapshot",
        "has_execution_plan_snapshot",
        "has_snapshot",
    }
)
_WRITES = (
    "add_",
    "delete_",
    "wipe",
    "set_",
    "update_",
    "reindex",
    "handle_",
    "claim_",
    "free_",
    "initialize_",
    "migrate",
    "optimize",
    "replace_",
)


def _refuse(name: str) -> Callable[..., Any]:
    def refused(self: object, *args: object, **kwargs: object) -> Any:
        raise refusal(f"instance.{name}", write=name.startswith(_WRITES))

    refused.__name__ = name
    return refused


def _refuse_the_rest(cls: type, base: type, answered: frozenset[str]) -> None:
    """Make every public method of ``base`` that ``cls`` does not define and ``answered`` does
    not list refuse."""
    for name, member in inspect.getmembers(base):
        if name.startswith("_") or isinstance(member, property) or not callable(member):
            continue
        if name not in answered and name not in cls.__dict__:
            setattr(cls, name, _refuse(name))


class JournalingEventLogStorage(InMemoryEventLogStorage):
    """Stores events in memory (the step reads some back) and appends each to the journal first.

    Asset history comes from what the executor shipped (see :mod:`..asset_history`), overlaid
    with what this step itself recorded, which is newer; a read that neither can answer fails.
    """

    def __init__(
        self,
        journal: JournalWriter,
        history: AssetHistory,
        dynamic_partitions: Mapping[str, Sequence[str]],
        run_id: str,
    ) -> None:
        super().__init__()
        self._run_id = run_id
        self._journal = journal
        self._history = history
        self._dynamic_partitions = frozenset(dynamic_partitions)
        for partitions_def_name, keys in dynamic_partitions.items():
            super().add_dynamic_partitions(partitions_def_name, keys)
        # User code may record events from threads of its own: a journal record and the id its
        # event gets must stay one pair, and records reach the journal in sequence order.
        self._lock = threading.Lock()
        self._inserting: int | None = None

    def store_event(self, event: EventLogEntry) -> None:
        if event.run_id != self._run_id:
            raise UnavailableOnComputeNode(
                "instance.report_runless_asset_event is not available on compute nodes: the event travels with "
                "the step's journal and would be recorded as the run's. Report it from a sensor, or yield the "
                "AssetMaterialization or AssetObservation from the step."
            )
        with self._lock:
            self._inserting = self._journal.append(event)
            try:
                super().store_event(event)
                if self._inserting is not None:
                    # SqlEventLogStorage.store_event no longer builds its insert with
                    # prepare_insert_event: events would get ids the relay cannot tell apart
                    # from the instance's, and pointers between them would go wrong silently.
                    raise RuntimeError("this Dagster release stores events differently: upgrade dagster-slurm-launcher")
            finally:
                self._inserting = None

    def prepare_insert_event(self, event: EventLogEntry) -> Any:
        # SqlEventLogStorage.store_event inserts with this statement and files the asset indexes
        # under the id it returns: the id tells the relay which journal record an id points at.
        assert self._inserting is not None, "prepare_insert_event outside store_event"
        seq, self._inserting = self._inserting, None
        return super().prepare_insert_event(event).values(id=step_storage_id(seq))

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        for event in events:
            self.store_event(event)

    def get_asset_records(self, asset_keys: Sequence[AssetKey] | None = None) -> Sequence[AssetRecord]:
        if asset_keys is None:
            raise refusal("instance.get_asset_records() of every asset")
        own = {r.asset_entry.asset_key: r for r in super().get_asset_records(asset_keys)}
        records = []
        for key in asset_keys:
            mine = own.get(key)
            # An asset the step materialized without declaring it (a runtime AssetMaterialization)
            # has no shipped history; its own record is the latest.
            shipped = self._history.record(key) if key in self._history.records or mine is None else None
            if shipped is None or mine is None:
                record = shipped or mine
            elif mine.asset_entry.last_materialization_record is not None:
                # The step materialized it: its own materialization is the latest.
                entry = changed(
                    shipped.asset_entry,
                    last_materialization_record=mine.asset_entry.last_materialization_record,
                    last_run_id=mine.asset_entry.last_run_id,
                )
                record = changed(shipped, asset_entry=entry)
            else:
                record = shipped
            if record is not None:
                records.append(record)
        return records

    def get_latest_materialization_events(
        self, asset_keys: Iterable[AssetKey]
    ) -> Mapping[AssetKey, EventLogEntry | None]:
        asset_keys = list(asset_keys)
        found = {
            r.asset_entry.asset_key: r.asset_entry.last_materialization for r in self.get_asset_records(asset_keys)
        }
        return {key: found.get(key) for key in asset_keys}

    def fetch_materializations(self, *args: Any, **kwargs: Any) -> EventRecordsResult:
        return self._latest(MATERIALIZATION, super().fetch_materializations, *args, **kwargs)

    def fetch_observations(self, *args: Any, **kwargs: Any) -> EventRecordsResult:
        return self._latest(OBSERVATION, super().fetch_observations, *args, **kwargs)

    def _latest(
        self,
        kind: str,
        fetch_own: Callable[..., EventRecordsResult],
        records_filter: AssetKey | AssetRecordsFilter,
        limit: int,
        cursor: str | None = None,
        ascending: bool = False,
    ) -> EventRecordsResult:
        key = records_filter if isinstance(records_filter, AssetKey) else records_filter.asset_key
        partitions = None if isinstance(records_filter, AssetKey) else records_filter.asset_partitions
        plain = isinstance(records_filter, AssetKey) or records_filter == AssetRecordsFilter(
            asset_key=key, asset_partitions=partitions
        )
        if not (
            plain and limit == 1 and cursor is None and not ascending and (partitions is None or len(partitions) == 1)
        ):
            raise beyond_the_latest(
                f"fetch_{kind}s({records_filter!r}, limit={limit}, cursor={cursor!r}, ascending={ascending})"
            )
        own = fetch_own(records_filter, limit=1)
        if own.records:
            return own
        if partitions:
            shipped = self._history.latest_record_in_partition(key, partitions[0], kind)
        else:
            shipped = self._history.latest_record(key, kind)
        if shipped is None:
            return EventRecordsResult(records=[], cursor=EventLogCursor.from_storage_id(-1).to_string(), has_more=False)
        return EventRecordsResult(
            records=[shipped], cursor=EventLogCursor.from_storage_id(shipped.storage_id).to_string(), has_more=True
        )

    def get_latest_tags_by_partition(
        self,
        asset_key: AssetKey,
        event_type: DagsterEventType,
        tag_keys: Sequence[str],
        asset_partitions: Sequence[str] | None = None,
        before_cursor: int | None = None,
        after_cursor: int | None = None,
    ) -> Mapping[str, Mapping[str, str]]:
        if (
            event_type != DagsterEventType.ASSET_MATERIALIZATION
            or list(tag_keys) != [DATA_VERSION_TAG]
            or asset_partitions is None
            or before_cursor is not None
            or after_cursor is not None
        ):
            raise beyond_the_latest(
                f"the latest tags {list(tag_keys)} by partition of asset {asset_key.to_user_string()}"
            )
        own = super().get_latest_tags_by_partition(asset_key, event_type, tag_keys, asset_partitions)
        shipped = self._history.data_versions(asset_key, [p for p in asset_partitions if p not in own])
        return {**{p: {DATA_VERSION_TAG: v} for p, v in shipped.items()}, **own}

    # The dynamic partitions shipped with the step, as the instance held them at submission;
    # a set that was not shipped is refused, never answered empty.
    def get_dynamic_partitions(self, partitions_def_name: str) -> Sequence[str]:
        return super().get_dynamic_partitions(self._shipped(partitions_def_name))

    def get_paginated_dynamic_partitions(
        self, partitions_def_name: str, limit: int, ascending: bool, cursor: str | None = None
    ) -> Any:
        return super().get_paginated_dynamic_partitions(self._shipped(partitions_def_name), limit, ascending, cursor)

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        return super().has_dynamic_partition(self._shipped(partitions_def_name), partition_key)

    def get_existing_dynamic_partitions(
        self, partitions_def_name: str, partition_keys: Sequence[str]
    ) -> AbstractSet[str]:
        return super().get_existing_dynamic_partitions(self._shipped(partitions_def_name), partition_keys)

    def _shipped(self, partitions_def_name: str) -> str:
        if partitions_def_name not in self._dynamic_partitions:
            raise refusal(
                f"instance.get_dynamic_partitions({partitions_def_name!r}) (no asset of the job uses that partition "
                "set, so it was not sent with the step)"
            )
        return partitions_def_name


class StepRunStorage(InMemoryRunStorage):
    """Holds the step's run, and answers for it alone."""

    def __init__(self, run: DagsterRun, plan_snapshot: ExecutionPlanSnapshot | None) -> None:
        super().__init__()
        plan_snapshot_id = super().add_execution_plan_snapshot(plan_snapshot) if plan_snapshot else None
        # The job snapshot lives in the real instance only; executing a step does not need it.
        self.run = changed(run, job_snapshot_id=None, execution_plan_snapshot_id=plan_snapshot_id)
        super().add_run(self.run)

    def _answer(self, method: str, filters: RunsFilter | None) -> None:
        if filters != RunsFilter(run_ids=[self.run.run_id]):
            raise refusal(f"instance.{method} for anything but the step's own run ({filters!r})")

    def get_runs(self, filters: RunsFilter | None = None, *args: Any, **kwargs: Any) -> Sequence[DagsterRun]:
        self._answer("get_runs", filters)
        return super().get_runs(filters, *args, **kwargs)

    def get_run_records(self, filters: RunsFilter | None = None, *args: Any, **kwargs: Any) -> Sequence[Any]:
        self._answer("get_run_records", filters)
        return super().get_run_records(filters, *args, **kwargs)

    def get_run_ids(self, filters: RunsFilter | None = None, *args: Any, **kwargs: Any) -> Sequence[str]:
        self._answer("get_run_ids", filters)
        return super().get_run_ids(filters, *args, **kwargs)

    def has_run(self, run_id: str) -> bool:
        self._answer("has_run", RunsFilter(run_ids=[run_id]))
        return True

    def get_runs_count(self, filters: RunsFilter | None = None) -> int:
        self._answer("get_runs_count", filters)
        return super().get_runs_count(filters)


_refuse_the_rest(JournalingEventLogStorage, EventLogStorage, _EVENT_LOG_ANSWERED)
_refuse_the_rest(StepRunStorage, RunStorage, _RUN_ANSWERED)


def step_instance(
    journal: JournalWriter,
    remote_base_dir: str,
    history: AssetHistory,
    run: DagsterRun,
    dynamic_partitions: Mapping[str, Sequence[str]],
    plan_snapshot: ExecutionPlanSnapshot | None = None,
) -> tuple[DagsterInstance, DagsterRun]:
    """The step's instance, holding ``run``, and the run as stored there.

    Its event log is the journal; outputs of the default IO manager go to
    ``<remote_base_dir>/storage`` on the shared filesystem, as they would go to
    ``$DAGSTER_HOME/storage``. ``plan_snapshot``: the run's, when it has repository load data
    (cacheable assets read it from there).
    """
    with unstamped_in_memory_storages():
        run_storage = StepRunStorage(run, plan_snapshot)
        event_storage = JournalingEventLogStorage(journal, history, dynamic_partitions, run_storage.run.run_id)
    instance = DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=LocalArtifactStorage(remote_base_dir),
        run_storage=run_storage,
        event_storage=event_storage,
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
    )
    return instance, run_storage.run
