"""The instance a step sees on a compute node answers for the step's own run and refuses
everything it cannot answer as the Dagster instance would, reads and writes alike."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, RunsFilter
from dagster._core.storage.event_log.base import EventLogStorage
from dagster._core.storage.runs.base import RunStorage

from dagster_slurm_launcher import UnavailableOnComputeNode
from dagster_slurm_launcher.asset_history import AssetHistory
from dagster_slurm_launcher.journal import JournalWriter
from dagster_slurm_launcher.step_instance import (
    _EVENT_LOG_ANSWERED,
    _RUN_ANSWERED,
    _WRITES,
    JournalingEventLogStorage,
    _refuse_the_rest,
    step_instance,
)

RUN = DagsterRun(job_name="job", run_id="this-run", tags={"team": "a"})


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    journal = JournalWriter(str(tmp_path / "events.jsonl"))
    instance, _ = step_instance(journal, str(tmp_path), AssetHistory({}, {}, {}, {}), RUN, {"regions": ["north"]})
    with instance:
        yield instance
    journal.close()


def test_the_step_reads_its_own_run_and_its_tags(instance: DagsterInstance) -> None:
    assert instance.get_run_by_id("this-run").tags == {"team": "a"}
    assert [r.dagster_run.run_id for r in instance.get_run_records(RunsFilter(run_ids=["this-run"]))] == ["this-run"]
    assert instance.has_run("this-run")


def test_the_dynamic_partitions_shipped_with_the_step_are_answered(instance: DagsterInstance) -> None:
    assert instance.get_dynamic_partitions("regions") == ["north"]
    assert instance.has_dynamic_partition("regions", "north")


def test_a_dynamic_partition_set_that_was_not_shipped_is_refused_not_empty(instance: DagsterInstance) -> None:
    with pytest.raises(UnavailableOnComputeNode, match=r"'files'.*not sent with the step"):
        instance.get_dynamic_partitions("files")
    with pytest.raises(UnavailableOnComputeNode):
        instance.has_dynamic_partition("files", "a.csv")


@pytest.mark.parametrize(
    "use",
    [
        lambda i: i.get_run_by_id("another-run"),
        lambda i: i.get_runs(),
        lambda i: i.get_run_records(RunsFilter(job_name="job")),
        lambda i: i.get_records_for_run("this-run"),
        lambda i: i.all_logs("this-run"),
        lambda i: i.get_asset_keys(),
        lambda i: i.event_log_storage.get_event_records,
    ],
    ids=[
        "another run",
        "every run",
        "runs of a job",
        "the run's events",
        "the run's logs",
        "asset keys",
        "event records",
    ],
)
def test_reads_the_instance_would_answer_differently_are_refused(instance: DagsterInstance, use) -> None:
    with pytest.raises(UnavailableOnComputeNode, match=r"not available on compute nodes.*run config"):
        result = use(instance)
        if callable(result):
            result()


@pytest.mark.parametrize(
    "use",
    [
        lambda i: i.add_dynamic_partitions("regions", ["south"]),
        lambda i: i.delete_dynamic_partition("regions", "north"),
        lambda i: i.add_run_tags("this-run", {"x": "y"}),
    ],
    ids=["add dynamic partitions", "delete a dynamic partition", "add run tags"],
)
def test_writes_that_would_be_lost_are_refused(instance: DagsterInstance, use) -> None:
    with pytest.raises(UnavailableOnComputeNode, match=r"be lost.*sensor"):
        use(instance)


def _public_methods(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") and not isinstance(getattr(cls, n), property)}


def test_the_methods_answered_as_they_are_exist_in_this_dagster_and_none_is_a_write() -> None:
    # Every other method is refused, a method a new Dagster release adds included; a name the
    # lists keep after Dagster dropped it shows here.
    for answered, base in ((_EVENT_LOG_ANSWERED, EventLogStorage), (_RUN_ANSWERED, RunStorage)):
        assert answered <= _public_methods(base)
        assert not [name for name in answered if name.startswith(_WRITES)]


def test_a_method_dagster_adds_is_refused() -> None:
    class NewerEventLogStorage(EventLogStorage):
        def get_something_new(self) -> int:
            return 1

    class Step(JournalingEventLogStorage):
        pass

    _refuse_the_rest(Step, NewerEventLogStorage, _EVENT_LOG_ANSWERED)
    with pytest.raises(UnavailableOnComputeNode, match=r"instance.get_something_new"):
        Step.get_something_new(object())


def test_an_event_outside_the_steps_run_is_refused(instance: DagsterInstance) -> None:
    from dagster import AssetMaterialization

    with pytest.raises(UnavailableOnComputeNode, match=r"report_runless_asset_event.*recorded as the run's"):
        instance.report_runless_asset_event(AssetMaterialization("elsewhere"))
