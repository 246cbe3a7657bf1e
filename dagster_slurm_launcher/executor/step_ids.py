"""Storage ids that point from one event of a step at another event of the same step.

Dagster records, on a materialization, the storage id of each input's latest materialization
(``dagster/input_event_pointer/<key>``), and on a check evaluation the storage id of the
materialization it checked. When that event was recorded by the same step a moment earlier,
the id is one the step worker's instance gave it (:func:`..journal.step_storage_id`); the
relay rewrites it to the id the Dagster instance gave the same event when it was relayed.
"""

from dataclasses import dataclass

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, EventLogEntry

from dagster_slurm_launcher.dagster_internals import INPUT_EVENT_POINTER_TAG_PREFIX, changed
from dagster_slurm_launcher.journal import seq_of_step_storage_id
from dagster_slurm_launcher.logs import get_logger

log = get_logger(__name__)

_ASSET_EVENTS = (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION)


@dataclass(frozen=True)
class _AssetEvent:
    event_type: DagsterEventType
    asset_key: AssetKey
    partition: str | None
    timestamp: float
    step_key: str | None


class StepIds:
    """The instance's storage ids of one step's asset events, found when an event points at one."""

    def __init__(self) -> None:
        self._events: dict[int, _AssetEvent] = {}
        self._found: dict[int, int] = {}

    def remember(self, seq: int, entry: EventLogEntry) -> None:
        """Note journal record ``seq``, relayed as ``entry``, in case a later event points at it."""
        event = entry.dagster_event
        if event is not None and event.event_type in _ASSET_EVENTS and event.asset_key is not None:
            self._events[seq] = _AssetEvent(
                event.event_type, event.asset_key, event.partition, entry.timestamp, entry.step_key
            )

    def rewrite(self, instance: DagsterInstance, entry: EventLogEntry) -> EventLogEntry:
        """``entry`` with its ids of the step's own events replaced by the instance's."""
        event = entry.dagster_event
        if event is None:
            return entry
        if event.event_type in _ASSET_EVENTS:
            data = event.event_specific_data
            field = (
                "materialization" if event.event_type == DagsterEventType.ASSET_MATERIALIZATION else "asset_observation"
            )
            asset_event = getattr(data, field)
            tags = self._rewrite_pointers(instance, entry, asset_event.tags)
            if tags is not None:
                data = changed(data, **{field: changed(asset_event, tags=tags)})
                return changed(entry, dagster_event=changed(event, event_specific_data=data))
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            target = evaluation.target_materialization_data
            seq = seq_of_step_storage_id(target.storage_id) if target is not None else None
            if seq is not None:
                storage_id = self._instance_id(instance, entry.run_id, seq)
                # A target that cannot be found is left out rather than pointing nowhere.
                target = changed(target, storage_id=storage_id, run_id=entry.run_id) if storage_id is not None else None
                evaluation = changed(evaluation, target_materialization_data=target)
                return changed(entry, dagster_event=changed(event, event_specific_data=evaluation))
        return entry

    def _rewrite_pointers(
        self, instance: DagsterInstance, entry: EventLogEntry, tags: dict[str, str] | None
    ) -> dict[str, str] | None:
        """The tags with the step's own ids rewritten, or None if none was."""
        rewritten = dict(tags or {})
        for tag, value in (tags or {}).items():
            seq = (
                seq_of_step_storage_id(int(value))
                if tag.startswith(INPUT_EVENT_POINTER_TAG_PREFIX) and value.isdigit()
                else None
            )
            if seq is not None:
                storage_id = self._instance_id(instance, entry.run_id, seq)
                if storage_id is None:
                    del rewritten[tag]
                else:
                    rewritten[tag] = str(storage_id)
        return rewritten if rewritten != (tags or {}) else None

    def _instance_id(self, instance: DagsterInstance, run_id: str, seq: int) -> int | None:
        if seq in self._found:
            return self._found[seq]
        event = self._events.get(seq)
        if event is None:
            log.warning("an event points at a journal record that was not relayed", seq=seq)
            return None
        # One indexed query by asset key, at the event's time (databases keep it to the
        # microsecond); the relay stored the event in this run, for this step.
        records_filter = AssetRecordsFilter(
            asset_key=event.asset_key,
            asset_partitions=[event.partition] if event.partition is not None else None,
            after_timestamp=event.timestamp - 1e-3,
            before_timestamp=event.timestamp + 1e-3,
        )
        fetch = (
            instance.fetch_materializations
            if event.event_type == DagsterEventType.ASSET_MATERIALIZATION
            else instance.fetch_observations
        )
        matches = [
            r
            for r in fetch(records_filter, limit=100).records
            if r.event_log_entry.run_id == run_id
            and r.event_log_entry.step_key == event.step_key
            and abs(r.timestamp - event.timestamp) < 1e-5
        ]
        if not matches:
            log.warning(
                "a relayed asset event is not in the instance", seq=seq, asset_key=event.asset_key.to_user_string()
            )
            return None
        self._found[seq] = matches[0].storage_id
        return self._found[seq]
