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
