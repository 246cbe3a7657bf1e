"""The relay rewrites a step's pointers to its own events into the ids the instance gave them."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetKey, AssetMaterialization, DagsterEventType, DagsterInstance, instance_for_test
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluation,
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.events import DagsterEvent, StepMaterializationData
from dagster._core.events.log import EventLogEntry

from dagster_slurm_launcher.executor.step_ids import StepIds
from dagster_slurm_launcher.journal import step_storage_id

RUN = "this-run"
POINTER = "dagster/input_event_pointer/first"


def entry(
    event_type: DagsterEventType, data: object, step_key: str = "step", timestamp: float = 100.0
) -> EventLogEntry:
    event = DagsterEvent(event_type_value=event_type.value, job_name="job", event_specific_data=data, step_key=step_key)
    return EventLogEntry(
        error_info=None,
        level=20,
        user_message="",
        run_id=RUN,
        timestamp=timestamp,
        step_key=step_key,
        dagster_event=event,
    )


def materialization(key: str, tags: dict[str, str] | None = None, **kwargs: object) -> EventLogEntry:
    return entry(
        DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(AssetMaterialization(key, tags=tags)), **kwargs
    )


def check_of(target_id: int) -> EventLogEntry:
    target = AssetCheckEvaluationTargetMaterializationData(storage_id=target_id, run_id=RUN, timestamp=100.0)
    evaluation = AssetCheckEvaluation(
        asset_key=AssetKey("first"), check_name="c", passed=True, metadata={}, target_materialization_data=target
    )
    return entry(DagsterEventType.ASSET_CHECK_EVALUATION, evaluation)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield instance


def relayed_first(instance: DagsterInstance, ids: StepIds) -> int:
    """Relay journal record 3, the step's materialization of `first`; the id the instance gave it."""
    first = materialization("first")
    ids.remember(3, first)
    instance.handle_new_event(first)
    # Another step's materialization of the same key at the same moment, stored later, is not the one.
    instance.handle_new_event(materialization("first", step_key="other"))
    return next(
        r.storage_id
        for r in instance.fetch_materializations(AssetKey("first"), limit=5).records
        if r.event_log_entry.step_key == "step"
    )


def test_an_input_pointer_to_the_steps_own_materialization_names_the_instances_event(instance: DagsterInstance) -> None:
    ids = StepIds()
    stored_id = relayed_first(instance, ids)
    second = ids.rewrite(instance, materialization("second", tags={POINTER: str(step_storage_id(3)), "other": "x"}))
    assert second.dagster_event.step_materialization_data.materialization.tags == {
        POINTER: str(stored_id),
        "other": "x",
    }


def test_a_check_of_the_steps_own_materialization_targets_the_instances_event(instance: DagsterInstance) -> None:
    ids = StepIds()
    stored_id = relayed_first(instance, ids)
    check = ids.rewrite(instance, check_of(step_storage_id(3)))
    assert check.dagster_event.event_specific_data.target_materialization_data.storage_id == stored_id


def test_ids_of_the_instance_are_left_as_they_are(instance: DagsterInstance) -> None:
    unchanged = check_of(4711)
    assert StepIds().rewrite(instance, unchanged) is unchanged


def test_a_pointer_to_an_event_that_was_not_relayed_is_left_out_not_kept_wrong(instance: DagsterInstance) -> None:
    ids = StepIds()
    second = ids.rewrite(instance, materialization("second", tags={POINTER: str(step_storage_id(9))}))
    assert POINTER not in (second.dagster_event.step_materialization_data.materialization.tags or {})
    check = ids.rewrite(instance, check_of(step_storage_id(9)))
    assert check.dagster_event.event_specific_data.target_materialization_data is None
    assert AssetCheckKey(AssetKey("first"), "c") == check.dagster_event.event_specific_data.asset_check_key
