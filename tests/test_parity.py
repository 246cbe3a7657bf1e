"""A step on Slurm records what it records under the multiprocess executor.

Each test runs the same jobs, in the same order, on two fresh instances: one with Dagster's
multiprocess executor, one with the Slurm executor; then compares what each instance holds,
leaving out what is the executor's own (engine events, Slurm metadata, storage ids, which are
compared by what they point at)."""

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, execute_job, instance_for_test
from dagster._core.definitions.reconstruct import ReconstructableJob

pytestmark = pytest.mark.lab

EXECUTORS = ("multiprocess", "slurm")
# Events an executor emits about itself, not about the step's work.
EXECUTOR_OWN = {
    DagsterEventType.ENGINE_EVENT,
    DagsterEventType.STEP_WORKER_STARTING,
    DagsterEventType.STEP_WORKER_STARTED,
    DagsterEventType.LOGS_CAPTURED,
}
POINTER = "dagster/input_event_pointer/"


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[dict[str, DagsterInstance]]:
    homes = {name: tmp_path / name for name in EXECUTORS}
    for home in homes.values():
        home.mkdir(mode=0o700)
    with (
        instance_for_test(temp_dir=str(homes["multiprocess"])) as mp,
        instance_for_test(temp_dir=str(homes["slurm"])) as slurm,
    ):
        yield {"multiprocess": mp, "slurm": slurm}


def run_on_both(
    code_dir: Path, instances: dict[str, DagsterInstance], job: str, file: str = "provenance.py", **kwargs: object
) -> dict[str, str]:
    """Run ``<job>_multiprocess`` and ``<job>_slurm`` on their instances; their run ids."""
    run_ids = {}
    for name, instance in instances.items():
        reconstructable = ReconstructableJob.for_file(str(code_dir / file), f"{job}_{name}")
        result = execute_job(reconstructable, instance, raise_on_error=False, **kwargs)
        run_ids[name] = result.run_id
    return run_ids


def materializations(instance: DagsterInstance, key: str) -> list[dict[str, object]]:
    """Every materialization of ``key``, oldest first, as a user compares them: tags with input
    pointers resolved to (asset, partition, which run of the instance), and metadata values."""
    run_order = [r.run_id for r in reversed(instance.get_runs())]
    records = instance.fetch_materializations(AssetKey(key), limit=100, ascending=True).records
    out = []
    for record in records:
        entry = record.event_log_entry
        materialization = entry.asset_materialization
        tags = dict(materialization.tags or {})
        for tag, value in list(tags.items()):
            if tag.startswith(POINTER):
                tags[tag] = _resolve_pointer(instance, int(value))
        out.append(
            {
                "run": run_order.index(entry.run_id),
                "partition": materialization.partition,
                "tags": tags,
                "metadata": {
                    k: _instance_neutral(repr(v)) for k, v in materialization.metadata.items()
                },  # repr: NaN == NaN
            }
        )
    return out


def _resolve_pointer(instance: DagsterInstance, storage_id: int) -> tuple[str, str, str | None, int] | str:
    run_order = [r.run_id for r in reversed(instance.get_runs())]
    for key in instance.get_asset_keys():
        for kind, fetch in (
            ("materialization", instance.fetch_materializations),
            ("observation", instance.fetch_observations),
        ):
            for record in fetch(key, limit=100).records:
                if record.storage_id == storage_id:
                    return (
                        kind,
                        key.to_user_string(),
                        record.partition_key,
                        run_order.index(record.event_log_entry.run_id),
                    )
    return "no asset event with that storage id"


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STORAGE = re.compile(r"\S*/storage/")


def _instance_neutral(message: str) -> str:
    """A log line with the run id and the IO manager's base folder (each instance's own) left out."""
    return _STORAGE.sub("<storage>/", _UUID.sub("<run id>", message))


def step_events(instance: DagsterInstance, run_id: str, failure_messages: bool = True) -> dict[str | None, Counter]:
    """Per step: its events by type, its log lines by level and message, its failures by kind,
    error class and message, its check results and expectation results."""
    counts: dict[str | None, Counter] = {}
    for record in instance.get_records_for_run(run_id).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        step = counts.setdefault(entry.step_key, Counter())
        if event is None:
            step[("log", entry.level, _instance_neutral(entry.user_message))] += 1
        elif event.event_type not in EXECUTOR_OWN:
            step[event.event_type_value] += 1
            if event.event_type == DagsterEventType.STEP_FAILURE and failure_messages:
                data = event.step_failure_data
                step[
                    (
                        "failure",
                        data.error_source,
                        data.error.cls_name if data.error else None,
                        data.error.message.strip() if data.error else None,
                        repr(data.user_failure_data.metadata) if data.user_failure_data else None,
                    )
                ] += 1
            if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = event.event_specific_data
                target = evaluation.target_materialization_data
                step[
                    (
                        "check",
                        evaluation.check_name,
                        evaluation.passed,
                        _instance_neutral(repr(evaluation.metadata)),
                        _resolve_pointer(instance, target.storage_id) if target else None,
                    )
                ] += 1
            if event.event_type == DagsterEventType.STEP_EXPECTATION_RESULT:
                step[("expectation", repr(event.event_specific_data.expectation_result))] += 1
            if event.event_type == DagsterEventType.STEP_OUTPUT:
                output = event.step_output_data
                step[("output", output.output_name, output.mapping_key, _instance_neutral(repr(output.metadata)))] += 1
    return counts


def assert_same_records(
    instances: dict[str, DagsterInstance], run_ids: dict[str, str], keys: list[str], failure_messages: bool = True
) -> None:
    mp, slurm = instances["multiprocess"], instances["slurm"]
    assert mp.get_run_by_id(run_ids["multiprocess"]).status == slurm.get_run_by_id(run_ids["slurm"]).status
    assert step_events(slurm, run_ids["slurm"], failure_messages) == step_events(
        mp, run_ids["multiprocess"], failure_messages
    )
    for key in keys:
        assert materializations(slurm, key) == materializations(mp, key), key


def data_version_tags(instance: DagsterInstance, key: str) -> dict[str, str]:
    (latest,) = instance.fetch_materializations(AssetKey(key), limit=1).records
    return {k: v for k, v in (latest.event_log_entry.asset_materialization.tags or {}).items() if "data_version" in k}


def test_data_versions_and_input_pointers_match_across_two_runs(
    code_dir: Path, instances: dict[str, DagsterInstance]
) -> None:
    run_on_both(code_dir, instances, "upstream")
    run_ids = run_on_both(code_dir, instances, "downstream")
    assert_same_records(instances, run_ids, ["upstream", "downstream", "reads_history"])
    tags = data_version_tags(instances["slurm"], "downstream")
    # An asset whose dagster-slurm/asset-history tag names assets it does not depend on reads them.
    tagged = run_on_both(code_dir, instances, "tagged")
    assert_same_records(instances, tagged, [])
    logged = [
        e.user_message for e in instances["slurm"].all_logs(tagged["slurm"]) if "latest data version" in e.user_message
    ]
    assert logged == [
        f"downstream: latest data version {tags['dagster/data_version']}",
        "daily: latest data version None",
    ]
    assert (
        tags["dagster/input_data_version/upstream"]
        == data_version_tags(instances["slurm"], "upstream")["dagster/data_version"]
    )
    # The step saw upstream's materialization from the first run (the metadata holds its run id).
    (first_run,) = [r.run_id for r in instances["slurm"].get_runs() if r.job_name == "upstream_slurm"]
    assert (
        first_run
        in instances["slurm"]
        .get_latest_materialization_event(AssetKey("reads_history"))
        .asset_materialization.metadata["upstream_run"]
        .value
    )


def test_data_versions_and_input_pointers_match_within_one_run(
    code_dir: Path, instances: dict[str, DagsterInstance]
) -> None:
    run_ids = run_on_both(code_dir, instances, "chain")
    assert_same_records(instances, run_ids, ["upstream", "downstream", "reads_history"])
    assert data_version_tags(instances["slurm"], "downstream")["dagster/input_data_version/upstream"] != "INITIAL"


def test_partition_data_versions_match(code_dir: Path, instances: dict[str, DagsterInstance]) -> None:
    for partition in ("d1", "d2"):
        run_on_both(code_dir, instances, "daily", tags={"dagster/partition": partition})
    run_ids = run_on_both(code_dir, instances, "daily_downstream", tags={"dagster/partition": "d2"})
    assert_same_records(instances, run_ids, ["daily", "daily_downstream"])
    # Unpartitioned, reading every partition (AllPartitionMapping).
    assert_same_records(instances, run_on_both(code_dir, instances, "daily_total"), ["daily_total"])


def test_an_asset_downstream_of_an_observed_source_records_the_same(
    code_dir: Path, instances: dict[str, DagsterInstance]
) -> None:
    run_on_both(code_dir, instances, "observe")
    run_ids = run_on_both(code_dir, instances, "from_source")
    assert_same_records(instances, run_ids, ["from_source"])
    assert data_version_tags(instances["slurm"], "from_source")["dagster/input_data_version/source"] == "s1"


def test_history_not_shipped_to_the_compute_node_fails_the_step_saying_how_to_ship_it(
    code_dir: Path, instances: dict[str, DagsterInstance]
) -> None:
    run_on_both(code_dir, instances, "upstream")
    run_ids = run_on_both(code_dir, instances, "unshipped")
    slurm = instances["slurm"]
    assert slurm.get_run_by_id(run_ids["slurm"]).is_failure
    (failure,) = slurm.get_records_for_run(run_ids["slurm"], of_type=DagsterEventType.STEP_FAILURE).records
    message = failure.event_log_entry.dagster_event.step_failure_data.error.message
    assert "the history of asset daily is not available on compute nodes" in message
    assert "To ship this asset's history, name it in the tag" in message and "dagster-slurm/asset-history" in message


@pytest.mark.parametrize("job", ["dynamic", "failures", "busy"])
def test_ops_record_the_same_events_logs_outputs_and_failures(
    code_dir: Path, instances: dict[str, DagsterInstance], job: str
) -> None:
    # dynamic outputs and collect; Failure with metadata, an exception, a resource that fails to
    # initialise, an output that fails its type check; a RetryPolicy retry, 200 log lines at all
    # levels, a 30 MB output.
    run_ids = run_on_both(code_dir, instances, job, file="parity.py")
    assert_same_records(instances, run_ids, [])


def test_a_step_that_segfaults_fails_as_under_the_multiprocess_executor(
    code_dir: Path, instances: dict[str, DagsterInstance]
) -> None:
    # Who reports the crash differs (the multiprocess executor's parent, Slurm's job state), so
    # its message does; the events do not.
    run_ids = run_on_both(code_dir, instances, "crash", file="parity.py")
    assert_same_records(instances, run_ids, [], failure_messages=False)


def test_assets_with_rich_metadata_and_a_multi_asset_record_the_same(
    code_dir: Path, instances: dict[str, DagsterInstance]
) -> None:
    run_ids = run_on_both(code_dir, instances, "assets", file="parity.py")
    assert_same_records(instances, run_ids, ["rich", "left", "right"])


def test_a_failing_blocking_check_records_the_same_and_skips_the_same(
    code_dir: Path, instances: dict[str, DagsterInstance]
) -> None:
    run_ids = run_on_both(code_dir, instances, "checked", file="parity.py")
    assert_same_records(instances, run_ids, ["checked", "after_checked"])


def test_pointers_to_what_the_same_step_recorded_match(code_dir: Path, instances: dict[str, DagsterInstance]) -> None:
    # `second` takes `first`, materialized by the same step a moment earlier; the check of
    # `self_checked` targets the materialization its own step recorded.
    run_ids = run_on_both(code_dir, instances, "same_step", file="parity.py")
    assert_same_records(instances, run_ids, ["first", "second", "self_checked"])


def test_static_and_dynamic_partitions_record_the_same(code_dir: Path, instances: dict[str, DagsterInstance]) -> None:
    for instance in instances.values():
        instance.add_dynamic_partitions("regions", ["north", "south"])
    run_ids = run_on_both(code_dir, instances, "per_letter", file="parity.py", tags={"dagster/partition": "b"})
    assert_same_records(instances, run_ids, ["per_letter"])
    run_on_both(code_dir, instances, "per_region", file="parity.py", tags={"dagster/partition": "north"})
    run_ids = run_on_both(code_dir, instances, "per_region", file="parity.py", tags={"dagster/partition": "north"})
    assert_same_records(instances, run_ids, ["per_region", "per_region_downstream"])
