"""Which files of a code location are shipped, how their hash changes, and where a step loads them from."""

from pathlib import Path

import pytest

from dagster_slurm_launcher.dagster_internals import JobPythonOrigin
from dagster_slurm_launcher.ship.code import DEFAULT_EXCLUDE, CodeShippingError, collect, import_paths, relocated


def project(root: Path) -> Path:
    for name, text in {
        "defs.py": "x = 1\n",
        "pkg/__init__.py": "",
        "pkg/mod.py": "y = 2\n",
        "pkg/__pycache__/mod.cpython-311.pyc": "junk",
        ".env": "SECRET=1\n",
        ".git/config": "[core]\n",
        ".venv/bin/python": "",
        ".tmp_dagster_home_abc/dagster.yaml": "",
        "data/big.csv": "a,b\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_hidden_files_caches_and_virtualenvs_are_never_shipped(tmp_path: Path) -> None:
    bundle = collect(project(tmp_path), ["*"], DEFAULT_EXCLUDE)
    assert bundle.files == ("data/big.csv", "defs.py", "pkg/__init__.py", "pkg/mod.py")


def test_exclude_takes_paths_from_the_root_and_names_anywhere(tmp_path: Path) -> None:
    bundle = collect(project(tmp_path), ["*"], [*DEFAULT_EXCLUDE, "data/*.csv", "mod.py"])
    assert bundle.files == ("defs.py", "pkg/__init__.py")


def test_the_hash_changes_with_a_files_content_and_only_then(tmp_path: Path) -> None:
    root = project(tmp_path)
    first = collect(root, ["*"], DEFAULT_EXCLUDE).digest
    (root / ".env").write_text("SECRET=2\n")
    (root / "pkg/__pycache__/mod.cpython-311.pyc").write_text("other junk")
    assert collect(root, ["*"], DEFAULT_EXCLUDE).digest == first
    (root / "pkg/mod.py").write_text("y = 3\n")
    assert collect(root, ["*"], DEFAULT_EXCLUDE).digest != first


def test_the_archive_holds_the_files_as_hashed_with_their_modes_and_links_as_files(tmp_path: Path) -> None:
    import io
    import tarfile

    root = project(tmp_path / "p")
    (root / "defs.py").chmod(0o755)
    (tmp_path / "outside.py").write_text("z = 3\n")
    (root / "linked.py").symlink_to(tmp_path / "outside.py")
    bundle = collect(root, ["*"], DEFAULT_EXCLUDE)
    (root / "defs.py").write_text("changed after hashing\n")
    with tarfile.open(fileobj=io.BytesIO(bundle.archive())) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("defs.py").read() == b"x = 1\n"
        assert members["linked.py"].isreg() and tar.extractfile("linked.py").read() == b"z = 3\n"
    assert sorted(members) == list(bundle.files)
    assert members["defs.py"].mode & 0o100 and members["defs.py"].uid == 0


def test_a_step_loads_the_job_from_the_shipped_copy(tmp_path: Path) -> None:
    from dagster._core.code_pointer import FileCodePointer
    from dagster._core.origin import RepositoryPythonOrigin

    pointer = FileCodePointer(str(tmp_path / "pkg" / "mod.py"), "defs", str(tmp_path))
    origin = JobPythonOrigin("job", RepositoryPythonOrigin("/laptop/venv/bin/python", pointer))
    moved = relocated(origin, tmp_path, "/cluster/code/abc", "/cluster/envs/def/bin/python")
    # A working directory below the shipped folder stays below it.
    sub = relocated(
        JobPythonOrigin(
            "job", RepositoryPythonOrigin("python", FileCodePointer("defs.py", "defs", str(tmp_path / "pkg")))
        ),
        tmp_path,
        "/cluster/code/abc",
        "python",
    )
    assert sub.repository_origin.code_pointer == FileCodePointer(
        "/cluster/code/abc/pkg/defs.py", "defs", "/cluster/code/abc/pkg"
    )
    assert moved.repository_origin.code_pointer == FileCodePointer(
        "/cluster/code/abc/pkg/mod.py", "defs", "/cluster/code/abc"
    )
    assert moved.repository_origin.executable_path == "/cluster/envs/def/bin/python"


def test_a_file_outside_the_shipped_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    from dagster._core.code_pointer import FileCodePointer
    from dagster._core.origin import RepositoryPythonOrigin

    pointer = FileCodePointer("/elsewhere/defs.py", "defs", str(tmp_path))
    origin = JobPythonOrigin("job", RepositoryPythonOrigin("python", pointer))
    with pytest.raises(CodeShippingError, match=r"ship\.code\.root"):
        relocated(origin, tmp_path, "/cluster/code/abc", "python")


def test_a_src_layout_puts_src_on_the_steps_import_path(tmp_path: Path) -> None:
    (tmp_path / "src" / "proj").mkdir(parents=True)
    (tmp_path / "src" / "proj" / "__init__.py").write_text("")
    assert import_paths(tmp_path, "/c") == ["/c/src"]
    assert import_paths(project(tmp_path / "flat"), "/c") == []


def test_a_runs_run_config_may_not_ship_code_or_install_packages_unless_trusted() -> None:
    from dagster_slurm_launcher.executor.config import SlurmConfigError, refuse_shell_from_run_config

    defaults = {"ship": {"code": None, "environment": "python", "installer": "pip", "requirements": []}}
    refuse_shell_from_run_config(defaults, trusted=False)  # the filled-in defaults ship nothing
    shipping = {"ship": {**defaults["ship"], "environment": "build", "requirements": ["evil"]}}
    with pytest.raises(SlurmConfigError, match="'ship'"):
        refuse_shell_from_run_config(shipping, trusted=False)
    refuse_shell_from_run_config(shipping, trusted=True)


def test_excluding_more_never_ships_what_is_excluded_by_default() -> None:
    from dagster_slurm_launcher.executor.config import ship_config

    block = {"code": {"root": None, "include": ["*"], "exclude": ["data"]}, "environment": "python"}
    config = ship_config({"ship": {**block, "installer": "pip", "requirements": []}})
    assert config is not None and {".*", "data"} <= set(config.exclude)


def test_a_narrower_root_than_the_working_directory_becomes_the_copys_top(tmp_path: Path) -> None:
    from dagster._core.code_pointer import FileCodePointer
    from dagster._core.origin import RepositoryPythonOrigin

    # `dagster dev -f pipelines/defs.py` started in the project, ship.code.root: pipelines
    pointer = FileCodePointer(str(tmp_path / "pipelines" / "defs.py"), "defs", str(tmp_path))
    origin = JobPythonOrigin("job", RepositoryPythonOrigin("python", pointer))
    moved = relocated(origin, tmp_path / "pipelines", "/cluster/code/abc", "python")
    assert moved.repository_origin.code_pointer == FileCodePointer(
        "/cluster/code/abc/defs.py", "defs", "/cluster/code/abc"
    )
