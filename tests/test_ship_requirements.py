"""What the cluster's environment is asked to hold, read off the Dagster host's environment."""

import zipfile
from io import BytesIO

import pytest

from dagster_slurm_launcher.ship.code import CodeShippingError
from dagster_slurm_launcher.ship.requirements import project_dependencies, resolve


def test_installed_distributions_are_pinned_to_the_hosts_versions() -> None:
    from importlib.metadata import version

    requirements = resolve([])
    assert f"dagster=={version('dagster')}" in requirements.constraints
    assert f"pydantic-settings=={version('pydantic-settings')}" in requirements.constraints
    # Only what this package needs: not the test tools installed beside it.
    assert not any(c.startswith("pytest==") for c in requirements.constraints)


def test_a_requirement_the_host_lacks_goes_to_the_installer_as_written() -> None:
    requirements = resolve(["no-such-package-here>=1"])
    assert "no-such-package-here>=1" in requirements.requirements


def test_this_package_from_a_local_checkout_is_repacked_into_a_wheel_with_its_metadata() -> None:
    requirements = resolve([])
    [wheel] = [w for w in requirements.wheels if w.filename.startswith("dagster_slurm_launcher-")]
    assert f"./wheels/{wheel.filename}" in requirements.requirements
    with zipfile.ZipFile(BytesIO(wheel.build())) as archive:
        names = archive.namelist()
    assert "dagster_slurm_launcher/worker.py" in names
    assert "dagster_slurm_launcher/transport/programs/claim.sh" in names
    assert any(n.endswith(".dist-info/METADATA") for n in names) and any(n.endswith(".dist-info/RECORD") for n in names)
    assert not any("__pycache__" in n or n.endswith("direct_url.json") for n in names)


def test_an_invalid_requirement_is_refused_with_its_text() -> None:
    with pytest.raises(CodeShippingError, match="not valid"):
        resolve(["pandas>>2"])


def test_the_code_locations_pyproject_dependencies_are_roots(tmp_path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\ndependencies = ["six>=1", "attrs"]\n')
    assert project_dependencies(tmp_path) == ["six>=1", "attrs"]
    assert project_dependencies(tmp_path / "none") == []
