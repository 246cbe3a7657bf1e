"""Shipping the code location and its Python environment: a Dagster host whose code and
virtualenv the cluster cannot read (as a laptop's), and a cluster whose Python has only the
standard library. Each run ships what the cluster lacks, once per content."""

import os
import re
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob

from dagster_slurm_launcher.ship.shipping import CODE_TAG, ENVIRONMENT_TAG
from tests import lab

pytestmark = pytest.mark.lab

DEFS = """
import sys
import time

import dagster_slurm_launcher
import helper
from dagster import Definitions, MaterializeResult, asset, define_asset_job

from dagster_slurm_launcher import slurm_executor


@asset
def greeting() -> str:
    time.sleep(helper.SLEEP)
    return helper.GREETING


@asset
def report(greeting: str) -> MaterializeResult:
    import six  # a dependency the code location's pyproject.toml declares

    return MaterializeResult(
        metadata={{
            "greeting": greeting,
            "python": sys.executable,
            "package": dagster_slurm_launcher.__file__,
            "helper": helper.__file__,
            "six": six.__version__,
        }}
    )


defs = Definitions(
    assets=[greeting, report],
    jobs=[define_asset_job("shipped", selection="*")],
    executor=slurm_executor.configured({config!r}),
)
shipped = defs.resolve_job_def("shipped")
"""


def code_location(folder: Path, config: dict, greeting: str = "hello", sleep: int = 0) -> Path:
    """A code location as on a laptop: in a folder only root can read."""
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "defs.py").write_text(textwrap.dedent(DEFS.format(config=config)))
    (folder / "helper.py").write_text(f"GREETING = {greeting!r}\nSLEEP = {sleep}\n")
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "laptop-project"\nversion = "0.1"\ndependencies = ["six"]\n'
    )
    (folder / ".env").write_text("SECRET=never-shipped\n")
    return folder


def executor_config(base: str, environment: str, installer: str = "pip", requirements: list[str] | None = None) -> dict:
    return {
        "poll_interval": 1.0,
        "time": "00:10:00",
        "remote_base_dir": base,
        "python": "/usr/bin/python3",
        "ship": {"code": {}, "environment": environment, "installer": installer, "requirements": requirements or []},
    }


@pytest.fixture
def base() -> Iterator[str]:
    """A fresh folder on the cluster for shipped code and environments, removed afterwards."""
    path = f"/home/{lab.cluster_user()}/ship-test-{uuid.uuid4().hex[:8]}"
    yield path
    lab.run_as_cluster_user(["rm", "-rf", path], check=False)


def run(folder: Path, instance: DagsterInstance):
    return execute_job(ReconstructableJob.for_file(str(folder / "defs.py"), "shipped"), instance, raise_on_error=False)


def engine_messages(instance: DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    return [r.event_log_entry.dagster_event.message or "" for r in records]


def failure_message(instance: DagsterInstance, run_id: str) -> str:
    """The error of the run's one RUN_FAILURE event."""
    [failure] = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
    return failure.event_log_entry.dagster_event.event_specific_data.error.message


def shipped(base: str, kind: str) -> list[str]:
    """The content-addressed folders under ``<base>/<kind>`` (not partial uploads, locks or build inputs)."""
    names = lab.run_as_cluster_user(["ls", "-A", f"{base}/{kind}"], check=False).split()
    return sorted(f"{base}/{kind}/{name}" for name in names if "." not in name)


def report_metadata(instance: DagsterInstance) -> dict[str, str]:
    event = instance.get_latest_materialization_event(AssetKey("report"))
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_a_laptops_code_and_environment_are_shipped_once_and_only_what_changed_again(
    tmp_path: Path, instance: DagsterInstance, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = code_location(tmp_path / "project", executor_config(base, "build"))
    monkeypatch.chdir(folder)
    assert not lab.cluster_user_can_read(folder / "defs.py")

    first = run(folder, instance)
    assert first.success
    messages = engine_messages(instance, first.run_id)
    assert any(m.startswith("Shipping the code location") for m in messages)
    assert any(m.startswith("Python environment built in") for m in messages)
    metadata = report_metadata(instance)
    [env] = shipped(base, "envs")
    [code] = shipped(base, "code")
    assert metadata["python"] == f"{env}/bin/python" and metadata["package"].startswith(f"{env}/")
    assert metadata["helper"] == f"{code}/helper.py" and metadata["greeting"] == "hello"
    assert metadata["six"]  # the project's own dependency
    listed = lab.run_as_cluster_user(["ls", "-A", code]).split()
    assert {"defs.py", "helper.py", "pyproject.toml"} <= set(listed) and ".env" not in listed
    run_tags = instance.get_run_by_id(first.run_id).tags
    assert run_tags[CODE_TAG] == os.path.basename(code) and run_tags[ENVIRONMENT_TAG] == os.path.basename(env)
    assert len(lab.settled_jobs_of_run(first.run_id, 2)) == 2

    second = run(folder, instance)
    assert second.success
    messages = engine_messages(instance, second.run_id)
    assert any(m.startswith("Code location unchanged") for m in messages)
    assert any(m.startswith("Python environment unchanged") for m in messages)
    assert not any(m.startswith(("Shipping", "Building")) for m in messages)

    (folder / "helper.py").write_text("GREETING = 'hello again'\nSLEEP = 0\n")
    third = run(folder, instance)
    assert third.success
    messages = engine_messages(instance, third.run_id)
    assert any(m.startswith("Shipping the code location") for m in messages)
    assert any(m.startswith("Python environment unchanged") for m in messages)
    assert report_metadata(instance)["greeting"] == "hello again"
    assert len(shipped(base, "code")) == 2 and shipped(base, "envs") == [env]


def test_two_runs_that_start_together_build_one_environment(
    tmp_path: Path, instance: DagsterInstance, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = code_location(tmp_path / "project", executor_config(base, "build", installer="uv"))
    monkeypatch.chdir(folder)
    workers = [lab.start_run_worker(instance, folder / "defs.py", "shipped") for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0
    runs = instance.get_runs()
    assert len(runs) == 2 and {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
    messages = [m for r in runs for m in engine_messages(instance, r.run_id)]
    assert sum(m.startswith("Python environment built in") for m in messages) == 1
    assert sum(m.startswith("Python environment built by another run") for m in messages) == 1
    assert len(shipped(base, "envs")) == 1


def test_a_requirement_that_does_not_exist_fails_the_run_before_any_step(
    tmp_path: Path, instance: DagsterInstance, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = executor_config(base, "build", requirements=["dagster-slurm-no-such-package==1.0"])
    folder = code_location(tmp_path / "project", config)
    monkeypatch.chdir(folder)
    result = run(folder, instance)
    assert not result.success
    error = failure_message(instance, result.run_id)
    assert "building the Python environment" in error and "dagster-slurm-no-such-package" in error
    assert "No matching distribution" in error  # the installer's own words
    assert not instance.get_records_for_run(result.run_id, of_type=DagsterEventType.STEP_WORKER_STARTING).records
    assert lab.slurm_jobs_of_run(result.run_id) == []
    assert shipped(base, "envs") == []


def test_a_cluster_without_a_package_index_gets_wheels_from_the_dagster_host(
    tmp_path: Path, instance: DagsterInstance, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = code_location(tmp_path / "project", executor_config(base, "wheels", installer="uv"))
    monkeypatch.chdir(folder)
    result = run(folder, instance)
    assert result.success
    messages = engine_messages(instance, result.run_id)
    assert any(m.startswith("Downloading wheels for the cluster's Python (cp311") for m in messages)
    # Dagster and its dependencies as wheels: tens of MiB, uploaded in 8 MiB chunks, each reported.
    progress = [m for m in messages if m.startswith("Uploading the environment's inputs:")]
    done, total = re.fullmatch(r".*: (.+) of (.+)\.", progress[-1]).groups()
    assert len(progress) >= 2 and done == total
    [env] = shipped(base, "envs")
    assert report_metadata(instance)["python"] == f"{env}/bin/python"


def test_shipped_code_is_listed_and_pruned_but_never_what_an_unfinished_run_uses(
    tmp_path: Path, instance: DagsterInstance, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import job, op

    from tests.test_cli import dagster_slurm

    config = executor_config(base, "python")
    config["python"] = os.environ["DAGSTER_SLURM_PYTHON"]  # the lab's shared environment: code only
    folder = code_location(tmp_path / "project", config)
    monkeypatch.chdir(folder)
    first = run(folder, instance)
    (folder / "helper.py").write_text("GREETING = 'changed'\nSLEEP = 0\n")
    second = run(folder, instance)
    assert first.success and second.success
    old, new = (instance.get_run_by_id(r.run_id).tags[CODE_TAG] for r in (first, second))

    @op
    def noop() -> None:
        pass

    @job
    def elsewhere() -> None:
        noop()

    # A run still going that uses the first code (its steps may be queued for days).
    instance.create_run_for_job(elsewhere, status=DagsterRunStatus.STARTED, tags={CODE_TAG: old})
    env = {"DAGSTER_SLURM_REMOTE_BASE_DIR": base}
    listed = dagster_slurm("shipped", "list", instance=instance, **env)
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[-1] for line in listed.stdout.splitlines()[1:]} == {old, new}
    assert all(line.split()[1] == "ready" for line in listed.stdout.splitlines()[1:])

    dry = dagster_slurm("shipped", "prune", "--older-than", "0m", "--dry-run", instance=instance, **env)
    assert "would remove" in dry.stdout and len(shipped(base, "code")) == 2
    pruned = dagster_slurm("shipped", "prune", "--older-than", "0m", instance=instance, **env)
    assert pruned.returncode == 0, pruned.stderr
    assert re.search(rf"^kept \(a run may still need it\) +code/{old}", pruned.stdout, re.M)
    assert re.search(rf"^removed +code/{new}", pruned.stdout, re.M)
    assert shipped(base, "code") == [f"{base}/code/{old}"]


def test_a_resumed_run_runs_the_code_it_shipped_though_the_laptops_copy_changed(
    tmp_path: Path, instance: DagsterInstance, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = executor_config(base, "python")
    config["python"] = os.environ["DAGSTER_SLURM_PYTHON"]  # the lab's shared environment: code only
    folder = code_location(tmp_path / "project", config, sleep=20)
    monkeypatch.chdir(folder)
    first = lab.start_run_worker(instance, folder / "defs.py", "shipped")
    [run] = lab.wait_until(lambda: instance.get_runs(), 60, what="the run")
    lab.wait_until(lambda: lab.job_of_step(run.run_id, "greeting", {"RUNNING"}), 120, what="greeting running")
    first.kill()
    first.wait()
    # Edited while the run worker was down: the resumed run's steps still run what it shipped.
    (folder / "helper.py").write_text("GREETING = 'edited meanwhile'\nSLEEP = 0\n")
    resumed = lab.start_run_worker(instance, folder / "defs.py", "shipped", resume_run_id=run.run_id)
    assert resumed.wait(timeout=300) == 0
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
    shipped_code = f"{base}/code/{instance.get_run_by_id(run.run_id).tags[CODE_TAG]}"
    metadata = report_metadata(instance)
    assert metadata["greeting"] == "hello" and metadata["helper"] == f"{shipped_code}/helper.py"
    messages = engine_messages(instance, run.run_id)
    assert any(m.startswith("Resuming with the code and environment this run shipped") for m in messages)
    assert shipped(base, "code") == [shipped_code]


def test_code_that_imports_what_the_environment_lacks_fails_the_run_before_any_step(
    tmp_path: Path, instance: DagsterInstance, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = code_location(tmp_path / "project", executor_config(base, "build", installer="uv"))
    # Installed on this host (the test tools), declared nowhere: the cluster's environment lacks it.
    (folder / "defs.py").write_text("import psutil  # noqa: F401\n" + (folder / "defs.py").read_text())
    monkeypatch.chdir(folder)
    result = run(folder, instance)
    assert not result.success
    error = failure_message(instance, result.run_id)
    assert "could not load job 'shipped'" in error and "No module named 'psutil'" in error
    assert lab.slurm_jobs_of_run(result.run_id) == []
