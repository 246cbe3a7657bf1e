"""The step worker: runs one Dagster step on a compute node, with no access to the instance.

Run by the sbatch script as ``python -m dagster_slurm_launcher.worker STEP_FOLDER``. It reads
the step's arguments from ``STEP_FOLDER/step.json`` (written by the executor), executes the
step through Dagster's own step entry point against a private in-memory instance, and writes
every event that instance stores to the journal ``STEP_FOLDER/events.jsonl``.
"""

import json
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    EventRecordsResult,
)
from dagster._cli.api import _execute_step_command_body
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.event_api import EventLogCursor
from dagster._core.events.log import EventLogEntry
from dagster._core.instance import InstanceType
from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
from dagster._core.run_coordinator import DefaultRunCoordinator
from dagster._core.snap import ExecutionPlanSnapshot
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.event_log import InMemoryEventLogStorage
from dagster._core.storage.event_log.base import AssetRecord
from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
from dagster._core.storage.root import LocalArtifactStorage
from dagster._core.storage.runs import InMemoryRunStorage
from dagster._grpc.types import ExecuteStepArgs
from dagster._record import copy
from dagster._serdes import deserialize_value
from dagster._utils import interrupts

from dagster_slurm_launcher.asset_history import (
    MATERIALIZATION,
    OBSERVATION,
    AssetHistory,
    unavailable,
)
from dagster_slurm_launcher.journal import JOURNAL_FILE, JournalWriter, holds_outcome, step_storage_id
from dagster_slurm_launcher.naming import PAYLOAD_FILE


class JournalingEventLogStorage(InMemoryEventLogStorage):
    """Stores events in memory (the step reads some back) and appends each to the journal first.

    Asset history comes from what the executor shipped (see :mod:`..asset_history`), overlaid
    with what this step itself recorded, which is newer; a read that neither can answer fails.
    """

    def __init__(self, journal: JournalWriter, history: AssetHistory) -> None:
        super().__init__()
        self._journal = journal
        self._history = history
        self._seq = 0

    def store_event(self, event: EventLogEntry) -> None:
        self._seq = self._journal.append(event)
        super().store_event(event)

    def prepare_insert_event(self, event: EventLogEntry) -> Any:
        # SqlEventLogStorage.store_event inserts with this statement and files the asset indexes
        # under the id it returns: the id tells the relay which journal record an id points at.
        return super().prepare_insert_event(event).values(id=step_storage_id(self._seq))

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        for event in events:
            self.store_event(event)

    def get_asset_records(self, asset_keys: Sequence[AssetKey] | None = None) -> Sequence[AssetRecord]:
        if asset_keys is None:
            raise unavailable("the records of every asset")
        own = {r.asset_entry.asset_key: r for r in super().get_asset_records(asset_keys)}
        records = []
        for key in asset_keys:
            shipped, mine = self._history.record(key), own.get(key)
            if shipped is None or mine is None:
                record = shipped or mine
            elif mine.asset_entry.last_materialization_record is not None:
                # The step materialized it: its own materialization is the latest.
                entry = copy(shipped.asset_entry, last_materialization_record=mine.asset_entry.last_materialization_record,
                             last_run_id=mine.asset_entry.last_run_id)
                record = copy(shipped, asset_entry=entry)
            else:
                record = shipped
            if record is not None:
                records.append(record)
        return records

    def get_latest_materialization_events(self, asset_keys: Iterable[AssetKey]) -> Mapping[AssetKey, EventLogEntry | None]:
        asset_keys = list(asset_keys)
        found = {r.asset_entry.asset_key: r.asset_entry.last_materialization for r in self.get_asset_records(asset_keys)}
        return {key: found.get(key) for key in asset_keys}

    def fetch_materializations(
        self, records_filter: AssetKey | AssetRecordsFilter, limit: int, cursor: str | None = None, ascending: bool = False
    ) -> EventRecordsResult:
        return self._latest(MATERIALIZATION, records_filter, limit, cursor, ascending, super().fetch_materializations)

    def fetch_observations(
        self, records_filter: AssetKey | AssetRecordsFilter, limit: int, cursor: str | None = None, ascending: bool = False
    ) -> EventRecordsResult:
        return self._latest(OBSERVATION, records_filter, limit, cursor, ascending, super().fetch_observations)

    def _latest(
        self, kind: str, records_filter: AssetKey | AssetRecordsFilter, limit: int, cursor: str | None, ascending: bool,
        fetch_own: Callable[..., EventRecordsResult],
    ) -> EventRecordsResult:
        key = records_filter if isinstance(records_filter, AssetKey) else records_filter.asset_key
        partitions = None if isinstance(records_filter, AssetKey) else records_filter.asset_partitions
        plain = isinstance(records_filter, AssetKey) or records_filter == AssetRecordsFilter(asset_key=key, asset_partitions=partitions)
        if not (plain and limit == 1 and cursor is None and not ascending and (partitions is None or len(partitions) == 1)):
            raise unavailable(f"fetch_{kind}s({records_filter!r}, limit={limit}, cursor={cursor!r}, ascending={ascending})")
        own = fetch_own(records_filter, limit=1)
        if own.records:
            return own
        if partitions:
            shipped = self._history.latest_record_in_partition(key, partitions[0], kind)
        else:
            shipped = self._history.latest_record(key, kind)
        if shipped is None:
            return EventRecordsResult(records=[], cursor=EventLogCursor.from_storage_id(-1).to_string(), has_more=False)
        return EventRecordsResult(records=[shipped], cursor=EventLogCursor.from_storage_id(shipped.storage_id).to_string(), has_more=True)

    def get_latest_tags_by_partition(
        self, asset_key: AssetKey, event_type: DagsterEventType, tag_keys: Sequence[str],
        asset_partitions: Sequence[str] | None = None, before_cursor: int | None = None, after_cursor: int | None = None,
    ) -> Mapping[str, Mapping[str, str]]:
        if (event_type != DagsterEventType.ASSET_MATERIALIZATION or list(tag_keys) != [DATA_VERSION_TAG]
                or asset_partitions is None or before_cursor is not None or after_cursor is not None):
            raise unavailable(f"the latest tags {list(tag_keys)} by partition of asset {asset_key.to_user_string()}")
        own = super().get_latest_tags_by_partition(asset_key, event_type, tag_keys, asset_partitions)
        shipped = self._history.data_versions(asset_key, [p for p in asset_partitions if p not in own])
        return {**{p: {DATA_VERSION_TAG: v} for p, v in shipped.items()}, **own}


def worker_instance(journal: JournalWriter, artifacts_dir: str, history: AssetHistory) -> DagsterInstance:
    """An instance whose event log is the journal; outputs of the default IO manager go to
    ``<artifacts_dir>/storage`` on the shared filesystem, as they would go to
    ``$DAGSTER_HOME/storage``."""
    return DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=LocalArtifactStorage(artifacts_dir),
        run_storage=InMemoryRunStorage(),
        event_storage=JournalingEventLogStorage(journal, history),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
    )


# The journal being written, so that a worker Slurm stops still ends it (see JournalWriter.end).
_journal: JournalWriter | None = None


def _exit_without_outcome(signum: int, _frame: object) -> None:
    if _journal is not None:
        _journal.end()
    os._exit(128 + signum)


def leave_sigterm_to_slurm() -> None:
    """Make SIGTERM end the worker without recording a step outcome.

    Slurm sends SIGTERM at the time limit, on scancel and on preemption; the job's end state
    (TIMEOUT, CANCELLED, PREEMPTED) then says why the step ended, and the executor fails the
    step with that reason. Dagster would instead turn SIGTERM into a step failure: each time
    it swaps its SIGINT handler, ``dagster._utils.interrupts._replace_interrupt_signal``
    re-maps SIGTERM onto it through ``setup_interrupt_handlers``, which is disabled here.
    Checkpointing before the limit uses ``--signal`` (the executor's ``signal`` option).
    """
    interrupts.setup_interrupt_handlers = lambda: None
    signal.signal(signal.SIGTERM, _exit_without_outcome)


def run_step(step_folder: str) -> None:
    global _journal  # noqa: PLW0603 - read by the SIGTERM handler
    journal_path = os.path.join(step_folder, JOURNAL_FILE)
    if holds_outcome(journal_path):
        # Slurm requeued a job whose step had finished (a node failure after the step, or
        # `scontrol requeue`): its outcome was relayed, and a step is computed once.
        print(f"{journal_path} already holds the step's outcome: not running it again", file=sys.stderr)
        return
    with open(os.path.join(step_folder, PAYLOAD_FILE)) as f:
        payload = json.load(f)
    args = deserialize_value(payload["args"], ExecuteStepArgs)
    run = deserialize_value(payload["run"], DagsterRun)
    journal = _journal = JournalWriter(journal_path)
    try:
        history = AssetHistory.from_json(payload["asset_history"])
        with worker_instance(journal, payload["artifacts_dir"], history) as instance:
            plan_snapshot_id = None
            if payload.get("execution_plan_snapshot"):
                # Runs with repository load data (cacheable assets) read it from their plan snapshot.
                snapshot = deserialize_value(payload["execution_plan_snapshot"], ExecutionPlanSnapshot)
                plan_snapshot_id = instance.run_storage.add_execution_plan_snapshot(snapshot)
            # The job snapshot lives in the real instance only; executing a step does not need it.
            run = run._replace(job_snapshot_id=None, execution_plan_snapshot_id=plan_snapshot_id)
            instance.add_run(run)
            for partitions_def_name, keys in payload["dynamic_partitions"].items():
                instance.add_dynamic_partitions(partitions_def_name, keys)
            for _ in _execute_step_command_body(args, instance, run):
                pass
    finally:
        _journal = None
        journal.end()
        journal.close()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dagster_slurm_launcher.worker STEP_FOLDER", file=sys.stderr)
        return 2
    leave_sigterm_to_slurm()
    run_step(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
