"""Dagster's private names this package relies on are all in one module, and exist."""

import re
from pathlib import Path

import dagster_slurm_launcher
from dagster_slurm_launcher import dagster_internals

PACKAGE = Path(dagster_slurm_launcher.__file__).parent


def test_every_private_dagster_name_the_package_uses_exists_in_this_dagster() -> None:
    missing = [name for name in dagster_internals.__all__ if getattr(dagster_internals, name, None) is None]
    assert not missing


def test_no_module_but_dagster_internals_imports_from_dagster_private_modules() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "dagster_internals.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*(from|import) dagster\._", line)
    ]
    assert not offenders


def test_no_module_but_dagster_internals_copies_dagster_records_by_hand() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "dagster_internals.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "._replace(" in line
    ]
    assert not offenders


def test_changed_copies_named_tuples_and_records_alike() -> None:
    from dagster import AssetMaterialization, DagsterRun

    run = DagsterRun(job_name="a_job", run_id="r1")
    assert dagster_internals.changed(run, run_id="r2").run_id == "r2"
    materialization = AssetMaterialization("an_asset", tags={"a": "b"})
    assert dagster_internals.changed(materialization, tags={"c": "d"}).tags == {"c": "d"}


def test_in_memory_storages_built_unstamped_skip_alembic_and_dagsters_stamp_comes_back() -> None:
    from dagster import DagsterRun
    from dagster._core.storage.event_log import in_memory

    stamp = in_memory.stamp_alembic_rev
    with dagster_internals.unstamped_in_memory_storages():
        events = dagster_internals.InMemoryEventLogStorage()
        runs = dagster_internals.InMemoryRunStorage()
    assert in_memory.stamp_alembic_rev is stamp
    assert not events.has_table("alembic_version")  # alembic never ran
    runs.add_run(DagsterRun(job_name="a_job", run_id="r1"))
    assert [r.run_id for r in runs.get_runs()] == ["r1"]


def test_the_polling_executor_sleeps_between_passes_only_while_no_launched_step_waits() -> None:
    import inspect

    class Handler(dagster_internals.StepHandler):
        name = "probe"

        def launch_step(self, context):  # type: ignore[no-untyped-def]
            yield from ()

        def check_step_health(self, context):  # type: ignore[no-untyped-def]
            return dagster_internals.CheckStepHealthResult.healthy()

        def terminate_step(self, context):  # type: ignore[no-untyped-def]
            yield from ()

    class Probe(dagster_internals.PollingStepDelegatingExecutor):
        waiting = False

        def before_reading_events(self) -> None:
            pass

        def launches_waiting(self) -> bool:
            return self.waiting

    executor = Probe(Handler(), retries=dagster_internals.RetryMode.DISABLED, sleep_seconds=0.5)
    assert executor._sleep_seconds == 0.5
    executor.waiting = True
    assert executor._sleep_seconds == 0.0
    # What the property stands in for: the pause at the end of each pass of Dagster's loop.
    assert "time.sleep(self._sleep_seconds)" in inspect.getsource(dagster_internals.StepDelegatingExecutor.execute)
