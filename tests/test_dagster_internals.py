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
