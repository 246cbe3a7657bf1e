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


def dist(tmp_path, name: str, version: str, requires: list[str] = (), direct_url: str | None = None):
    from importlib.metadata import PathDistribution

    info = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    lines = [f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "RECORD").write_text("")
    if direct_url:
        (info / "direct_url.json").write_text(direct_url)
    return PathDistribution(info)


def test_markers_and_extras_decide_what_is_pinned(tmp_path) -> None:
    installed = [
        dist(tmp_path, "dagster-slurm-launcher", "1.0", ["dagster"]),
        dist(tmp_path, "dagster", "1.13.0", ['pywin32; sys_platform == "win32"', 'fancy; extra == "fancy"']),
        dist(tmp_path, "pywin32", "306"),
        dist(tmp_path, "fancy", "2.0"),
    ]
    assert resolve([], installed).constraints == ("dagster==1.13.0", "dagster-slurm-launcher==1.0")
    with_extra = resolve(["dagster[fancy]"], installed)
    assert "fancy==2.0" in with_extra.constraints and "pywin32==306" not in with_extra.constraints
    assert with_extra.requirements == ("dagster-slurm-launcher", "dagster[fancy]")


def test_an_editable_dependency_is_refused_with_the_fix(tmp_path) -> None:
    editable = '{"url": "file:///home/me/lib", "dir_info": {"editable": true}}'
    installed = [
        dist(tmp_path, "dagster-slurm-launcher", "1.0", ["mylib"]),
        dist(tmp_path, "mylib", "0.1", direct_url=editable),
    ]
    with pytest.raises(CodeShippingError, match="editable mode from file:///home/me/lib"):
        resolve([], installed)


def test_a_dependency_from_a_git_repository_is_required_at_its_commit(tmp_path) -> None:
    vcs = '{"url": "https://git.example/lib.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}}'
    installed = [
        dist(tmp_path, "dagster-slurm-launcher", "1.0", ["mylib"]),
        dist(tmp_path, "mylib", "0.1", direct_url=vcs),
    ]
    assert "mylib @ git+https://git.example/lib.git@abc123" in resolve([], installed).requirements
