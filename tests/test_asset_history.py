"""The step worker's instance answers a step's asset-history reads from what the executor
shipped, overlaid with what the step recorded itself, and refuses what it cannot answer."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, AssetMaterialization, AssetRecordsFilter, DagsterEventType, DagsterInstance, DagsterRun
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.event_api import EventLogRecord
from dagster._core.events import DagsterEvent, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.base import AssetEntry, AssetRecord

from dagster_slurm_launcher import UnavailableOnComputeNode
from dagster_slurm_launcher.asset_history import MATERIALIZATION, OBSERVATION, AssetHistory
from dagster_slurm_launcher.journal import JournalWriter
from dagster_slurm_launcher.step_instance import step_instance

UPSTREAM = AssetKey("upstream")


def materialization(key: AssetKey, run_id: str, data_version: str, partition: str | None = None) -> EventLogEntry:
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="job",
        event_specific_data=StepMaterializationData(
            AssetMaterialization(key, partition=partition, tags={DATA_VERSION_TAG: data_version})
        ),
    )
    return EventLogEntry(error_info=None, level=20, user_message="", run_id=run_id, timestamp=1.0, dagster_event=event)


def shipped() -> AssetHistory:
    record = EventLogRecord(storage_id=4711, event_log_entry=materialization(UPSTREAM, "earlier-run", "v1"))
    entry = AssetEntry(
        asset_key=UPSTREAM,
        last_materialization_record=record,
        last_run_id="this-run",
        last_planned_materialization_run_id="this-run",
        last_planned_materialization_storage_id=4712,
    )
    history = AssetHistory(
        {UPSTREAM: AssetRecord(storage_id=7, asset_entry=entry), AssetKey("never"): None},
        {UPSTREAM: None, AssetKey("never"): None},
        {(UPSTREAM, "p1"): {MATERIALIZATION: record, OBSERVATION: None}},
        {UPSTREAM: (frozenset({"p1", "p2"}), {"p1": "v-p1"})},
    )
    return AssetHistory.from_json(history.to_json())  # as the worker reads it


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    journal = JournalWriter(str(tmp_path / "events.jsonl"))
    instance, _ = step_instance(journal, str(tmp_path), shipped(), DagsterRun(job_name="job", run_id="this-run"), {})
    with instance:
        yield instance
    journal.close()


def test_the_asset_record_is_the_instance_s_with_the_latest_materialization_and_its_storage_id(
    instance: DagsterInstance,
) -> None:
    (record,) = instance.get_asset_records([UPSTREAM])
    assert record.storage_id == 7 and record.asset_entry.last_planned_materialization_storage_id == 4712
    assert record.asset_entry.last_materialization_record.storage_id == 4711
    assert instance.get_latest_materialization_event(UPSTREAM).run_id == "earlier-run"
    (latest,) = instance.fetch_materializations(UPSTREAM, limit=1).records
    assert latest.storage_id == 4711


def test_an_asset_never_materialized_has_no_record(instance: DagsterInstance) -> None:
    assert instance.get_asset_records([AssetKey("never")]) == []
    assert instance.get_latest_materialization_event(AssetKey("never")) is None
    assert instance.fetch_observations(AssetKey("never"), limit=1).records == []


def test_what_the_step_materialized_itself_is_newer_than_what_was_shipped(instance: DagsterInstance) -> None:
    instance.store_event(materialization(UPSTREAM, "this-run", "v2"))
    assert instance.get_latest_materialization_event(UPSTREAM).run_id == "this-run"
    (record,) = instance.get_asset_records([UPSTREAM])
    assert record.storage_id == 7 and record.asset_entry.last_materialization.run_id == "this-run"


def test_the_latest_materialization_in_the_steps_partition_is_answered(instance: DagsterInstance) -> None:
    (latest,) = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=UPSTREAM, asset_partitions=["p1"]), limit=1
    ).records
    assert latest.storage_id == 4711


def test_partition_data_versions_are_answered_for_the_partitions_shipped(instance: DagsterInstance) -> None:
    tags = instance.event_log_storage.get_latest_tags_by_partition(
        UPSTREAM, DagsterEventType.ASSET_MATERIALIZATION, [DATA_VERSION_TAG], asset_partitions=["p1", "p2"]
    )
    assert tags == {"p1": {DATA_VERSION_TAG: "v-p1"}}


def test_the_history_of_an_asset_that_was_not_shipped_is_refused_saying_how_to_ship_it(
    instance: DagsterInstance,
) -> None:
    with pytest.raises(
        UnavailableOnComputeNode, match=r"To ship this asset's history, name it in the tag.*dagster-slurm/asset-history"
    ):
        instance.get_latest_materialization_event(AssetKey("not_shipped"))


@pytest.mark.parametrize(
    "read",
    [
        lambda i: i.fetch_materializations(UPSTREAM, limit=5),
        lambda i: i.fetch_materializations(AssetRecordsFilter(asset_key=UPSTREAM, asset_partitions=["p2"]), limit=1),
        lambda i: i.event_log_storage.get_latest_tags_by_partition(
            UPSTREAM, DagsterEventType.ASSET_MATERIALIZATION, [DATA_VERSION_TAG], asset_partitions=["p3"]
        ),
    ],
    ids=["more than the latest", "another partition", "an unshipped partition"],
)
def test_more_than_the_latest_history_is_refused_saying_no_tag_ships_it(instance: DagsterInstance, read) -> None:
    with pytest.raises(UnavailableOnComputeNode, match="No tag ships older records or other partitions"):
        read(instance)


def test_the_records_of_every_asset_are_refused(instance: DagsterInstance) -> None:
    with pytest.raises(UnavailableOnComputeNode, match="every asset"):
        instance.get_asset_records()


def test_an_asset_the_step_materialized_without_declaring_it_reads_back(instance: DagsterInstance) -> None:
    instance.store_event(materialization(AssetKey("report"), "this-run", "v1"))
    assert instance.get_latest_materialization_event(AssetKey("report")).run_id == "this-run"


def test_each_event_the_step_stores_gets_the_id_of_its_journal_record(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    # The relay recognises such ids in pointers (executor/step_ids.py); a Dagster that stored
    # events without prepare_insert_event would give them ids of the instance's own events.
    from dagster_slurm_launcher.journal import parse_records, step_storage_id

    instance.store_event(materialization(AssetKey("report"), "this-run", "v1"))
    (record,) = instance.fetch_materializations(AssetKey("report"), limit=1).records
    (journaled,) = parse_records((tmp_path / "events.jsonl").read_bytes()).records
    assert record.storage_id == step_storage_id(journaled.seq)


def collected(instance: DagsterInstance, job: str, step_key: str, tags: dict[str, str] | None = None) -> AssetHistory:
    from dagster._core.execution.api import create_execution_plan
    from dagster._core.storage.dagster_run import DagsterRun

    from dagster_slurm_launcher.asset_history import StepView, collect
    from tests.jobs.provenance import defs

    job_def = defs.resolve_job_def(job)
    step = create_execution_plan(job_def, tags=tags or {}).get_step_by_key(step_key)
    return collect(StepView(job_def, step, DagsterRun(job_name=job, tags=tags or {}), instance), instance)


def test_the_executor_collects_what_the_step_reads_of_its_assets_and_their_parents(tmp_path: Path) -> None:
    from dagster import instance_for_test, materialize

    from tests.jobs.provenance import upstream

    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        materialize([upstream], instance=instance)
        history = collected(instance, "downstream_slurm", "downstream")
        assert set(history.records) == {AssetKey("downstream"), UPSTREAM}
        record = history.latest_record(UPSTREAM, MATERIALIZATION)
        assert record.storage_id == instance.fetch_materializations(UPSTREAM, limit=1).records[0].storage_id
        assert history.records[AssetKey("downstream")] is None


def test_the_executor_collects_the_data_versions_of_the_upstream_partitions_the_step_reads(tmp_path: Path) -> None:
    from dagster import instance_for_test, materialize

    from tests.jobs.provenance import daily

    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        for partition in ("d1", "d2"):
            materialize([daily], instance=instance, partition_key=partition)
        history = collected(instance, "daily_downstream_slurm", "daily_downstream", {"dagster/partition": "d2"})
        collected_partitions, versions = history.partition_data_versions[AssetKey("daily")]
        assert collected_partitions == {"d2"} and set(versions) == {"d2"}
        # and the latest in the run's partition, which an asset check of the asset would target
        assert history.latest_in_partition[(AssetKey("daily"), "d2")][MATERIALIZATION] is not None


def test_the_assets_a_steps_tag_names_are_collected_too(tmp_path: Path) -> None:
    from dagster import instance_for_test

    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        history = collected(instance, "tagged_slurm", "reads_tagged_history")
        assert set(history.records) == {AssetKey("reads_tagged_history"), AssetKey("downstream"), AssetKey("daily")}


def _shipped_bytes(history: AssetHistory) -> int:
    import json

    return len(json.dumps(history.to_json()))


def test_what_is_shipped_stays_small_when_a_step_reads_2000_upstream_partitions() -> None:
    from tests.jobs.provenance import wide

    with DagsterInstance.ephemeral() as instance:  # in memory: 2,000 events stored in a moment
        instance.event_log_storage.store_event_batch(
            [
                materialization(AssetKey("wide_upstream"), "earlier-run", f"version-of-{p}", partition=p)
                for p in wide.get_partition_keys()
            ]
        )
        every = collected(instance, "wide_slurm", "reads_all_of_wide")
        last_99 = collected(instance, "wide_slurm", "reads_99_of_wide", {"dagster/partition": "2025-06-22"})
    # All 2,000: Dagster's provenance code reads the asset's latest record, not the partitions,
    # so none is shipped. 99: each one's data version is.
    assert AssetKey("wide_upstream") not in every.partition_data_versions
    assert len(last_99.partition_data_versions[AssetKey("wide_upstream")][1]) == 99
    assert _shipped_bytes(every) < 8 * 2**10, _shipped_bytes(every)
    assert _shipped_bytes(last_99) < 16 * 2**10, _shipped_bytes(last_99)


def test_the_partition_status_cache_of_a_wide_asset_is_not_shipped() -> None:
    from dagster._core.storage.partition_status_cache import AssetStatusCacheValue

    subset = "x" * 500_000
    cache = AssetStatusCacheValue(
        latest_storage_id=1, partitions_def_id="p", serialized_materialized_partition_subset=subset
    )
    entry = AssetEntry(asset_key=UPSTREAM, cached_status=cache)
    history = AssetHistory({UPSTREAM: AssetRecord(storage_id=7, asset_entry=entry)}, {UPSTREAM: None}, {}, {})
    assert _shipped_bytes(history) < 4 * 2**10
    assert AssetHistory.from_json(history.to_json()).records[UPSTREAM].asset_entry.cached_status is None
