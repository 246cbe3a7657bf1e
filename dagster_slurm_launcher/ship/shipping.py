"""Ship a run's code location and Python environment before its first step: what is on the
cluster already costs one command; what is not is uploaded, built and checked once."""

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import serialize_value

from dagster_slurm_launcher.dagster_internals import JobPythonOrigin
from dagster_slurm_launcher.ship import code as shipped_code
from dagster_slurm_launcher.ship.code import DEFAULT_EXCLUDE, CodeBundle, CodeShippingError
from dagster_slurm_launcher.ship.environment import EnvironmentSpec, build, cluster_platform, download_wheels
from dagster_slurm_launcher.ship.requirements import project_dependencies, resolve
from dagster_slurm_launcher.ship.upload import upload
from dagster_slurm_launcher.transport import Transport
from dagster_slurm_launcher.transport.programs import command

CODE_DIR = "code"
ENVS_DIR = "envs"
# Run tags naming what a run uses: the UI shows them, and `dagster-slurm shipped prune` keeps
# what an unfinished run uses.
CODE_TAG = "dagster-slurm/code"
ENVIRONMENT_TAG = "dagster-slurm/environment"
# The run that wrote the two tags above: Dagster's run retries copy a parent run's tags, and a
# resumed retry must not take its parent's shipment for its own.
SHIPPED_BY_TAG = "dagster-slurm/shipped-by"

Report = Callable[[str, Mapping[str, Any]], None]
"""Writes a message with metadata to the run's event log."""


@dataclass(frozen=True)
class ShipConfig:
    """The executor config's ``ship`` block."""

    code: bool
    code_root: Path | None
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    environment: str
    installer: str
    requirements: tuple[str, ...]

    @staticmethod
    def from_config(config: Mapping[str, Any] | None) -> "ShipConfig | None":
        if not config:
            return None
        code = config.get("code")
        return ShipConfig(
            code=code is not None,
            code_root=Path(code["root"]).expanduser() if code and code.get("root") else None,
            include=tuple(code["include"]) if code else (),
            # Never shipped, whatever the config adds: secrets (.env), repositories, virtualenvs.
            exclude=(*DEFAULT_EXCLUDE, *code["exclude"]) if code else (),
            environment=config["environment"],
            installer=config["installer"],
            requirements=tuple(config["requirements"]),
        )


@dataclass(frozen=True)
class Shipment:
    """Where a run's steps find their code and interpreter on the cluster."""

    python: str
    code_dir: str | None
    import_paths: tuple[str, ...]
    tags: Mapping[str, str]
    _root: Path | None = None

    def origin(self, origin: JobPythonOrigin) -> JobPythonOrigin:
        """The job's origin as a step loads it: from the shipped code folder, if code is shipped."""
        if self.code_dir is None or self._root is None:
            return origin
        return shipped_code.relocated(origin, self._root, self.code_dir, self.python)

    def working_directory(self, origin: JobPythonOrigin) -> str | None:
        """Where a step starts: the origin's working directory, in the shipped copy if code is shipped."""
        return getattr(self.origin(origin).repository_origin.code_pointer, "working_directory", None)

    def step_environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with the shipped copy's import paths before any ``PYTHONPATH`` it sets."""
        if not self.import_paths:
            return dict(env)
        return {**env, "PYTHONPATH": ":".join([*self.import_paths, *filter(None, [env.get("PYTHONPATH")])])}


def ship(
    config: ShipConfig,
    transport: Transport,
    base_dir: str,
    origin: JobPythonOrigin,
    base_python: str,
    setup: Sequence[str],
    env: Mapping[str, str],
    report: Report,
    run_id: str,
) -> Shipment:
    """Make the run's code and environment present on the cluster, and check that they load the job.

    Raises:
        CodeShippingError: the code or the requirements cannot be shipped as configured.
        TransportError: an upload failed; EnvironmentBuildError (one) with the installer's message.
    """
    root = _root(config, origin)
    bundle = shipped_code.collect(root, config.include, config.exclude) if config.code and root else None
    spec = None
    if config.environment != "python":
        roots = [*(project_dependencies(root) if root else []), *config.requirements]
        spec = EnvironmentSpec(config.environment, config.installer, base_python, tuple(setup), resolve(roots))
    code_dir = f"{base_dir}/{CODE_DIR}/{bundle.digest}" if bundle else None
    env_dir = f"{base_dir}/{ENVS_DIR}/{spec.digest}" if spec else None
    python = f"{env_dir}/bin/python" if env_dir else base_python
    # Checked once per pair of code and interpreter.
    checked_with = spec.digest if spec else hashlib.sha256(base_python.encode()).hexdigest()[:20]
    marker = f"{code_dir}/.checked-{checked_with}" if code_dir else None
    status = _status(transport, code_dir, env_dir, marker)
    tags = {k: v for k, v in ((CODE_TAG, bundle and bundle.digest), (ENVIRONMENT_TAG, spec and spec.digest)) if v}
    tags[SHIPPED_BY_TAG] = run_id

    if bundle and code_dir and not status["code"]:
        _ship_code(transport, bundle, code_dir, report)
    elif bundle:
        report(f"Code location unchanged: {code_dir} is on the cluster.", {"code": code_dir, "uploaded bytes": 0})
    if spec and env_dir and not status["environment"]:
        _ship_environment(transport, spec, env_dir, report)
    elif spec:
        report(f"Python environment unchanged: {env_dir} is ready.", {"environment": env_dir})
    paths = tuple(shipped_code.import_paths(root, code_dir)) if root and code_dir else ()
    shipment = Shipment(python=python, code_dir=code_dir, import_paths=paths, tags=tags, _root=root)
    if code_dir and marker and not status["checked"]:
        _check(transport, shipment, origin, code_dir, marker, setup, env)
        report(f"The shipped environment loads job {origin.job_name!r} from the shipped code.", {"python": python})
    return shipment


def shipped_before(
    config: ShipConfig,
    transport: Transport,
    base_dir: str,
    origin: JobPythonOrigin,
    base_python: str,
    run_id: str,
    tags: Mapping[str, str],
    report: Report,
) -> Shipment | None:
    """The shipment an earlier worker of this run made, as its tags name it; ``None`` if it
    made none. A worker that resumes a run runs its steps from there, as the steps it adopts do,
    whatever changed on this host since.

    Raises:
        CodeShippingError: what the run shipped is gone from the cluster (pruned).
    """
    if tags.get(SHIPPED_BY_TAG) != run_id:
        return None  # nothing shipped for this run yet (or the tags are a retried parent's)
    if (config.code and CODE_TAG not in tags) or (config.environment != "python" and ENVIRONMENT_TAG not in tags):
        return None
    root = _root(config, origin)
    code_dir = f"{base_dir}/{CODE_DIR}/{tags[CODE_TAG]}" if config.code else None
    env_dir = f"{base_dir}/{ENVS_DIR}/{tags[ENVIRONMENT_TAG]}" if config.environment != "python" else None
    status = _status(transport, code_dir, env_dir, None)
    gone = [path for path, present in ((code_dir, status["code"]), (env_dir, status["environment"])) if not present]
    if gone:
        raise CodeShippingError(
            f"{' and '.join(str(g) for g in gone)}, which this run shipped and its steps use, is gone from the "
            "cluster (pruned?): the run cannot be resumed; re-execute it, which ships again"
        )
    python = f"{env_dir}/bin/python" if env_dir else base_python
    paths = tuple(shipped_code.import_paths(root, code_dir)) if root and code_dir else ()
    report(
        f"Resuming with the code and environment this run shipped: {code_dir or 'code as it is'}, {python}.",
        {"code": code_dir or "", "python": python},
    )
    ours = {k: tags[k] for k in (CODE_TAG, ENVIRONMENT_TAG, SHIPPED_BY_TAG) if k in tags}
    return Shipment(python=python, code_dir=code_dir, import_paths=paths, tags=ours, _root=root)


def _root(config: ShipConfig, origin: JobPythonOrigin) -> Path | None:
    """The code location's folder: what ships, and whose pyproject.toml names dependencies."""
    if config.code_root:
        return config.code_root
    try:
        return shipped_code.code_root(origin)
    except CodeShippingError:
        if config.code:
            raise
        return None  # only the environment ships: no project folder to read dependencies from


def _status(transport: Transport, code_dir: str | None, env_dir: str | None, marker: str | None) -> dict[str, bool]:
    result = transport.run(command("ship_status", code_dir or "", env_dir or "", marker or ""))
    lines = dict(line.split() for line in result.stdout.splitlines() if len(line.split()) == 2)
    if not result.ok or set(lines) != {"code", "environment", "checked"}:
        raise CodeShippingError(f"could not look up what is shipped already: {result.stderr.strip() or result.stdout}")
    return {key: value == "yes" for key, value in lines.items()}


def _ship_code(transport: Transport, bundle: CodeBundle, code_dir: str, report: Report) -> None:
    started = time.monotonic()
    archive = bundle.archive()
    report(
        f"Shipping the code location {bundle.root}: {len(bundle.files)} files, {_size(bundle.size)} "
        f"({_size(len(archive))} compressed) to {code_dir}.",
        {"code": code_dir, "files": len(bundle.files)},
    )
    new = upload(transport, archive, code_dir, _progress("code location", report))
    report(
        f"Code location shipped in {time.monotonic() - started:.1f} s."
        if new
        else "Code location shipped by another run meanwhile.",
        {"code": code_dir, "uploaded bytes": len(archive)},
    )


def _ship_environment(transport: Transport, spec: EnvironmentSpec, env_dir: str, report: Report) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dagster-slurm-wheels-") as work:
        wheels = []
        if spec.mode == "wheels":
            platform = cluster_platform(transport, spec)
            report(
                f"Downloading wheels for the cluster's Python (cp{platform.python_version}, {platform.machine}).",
                {"environment": env_dir},
            )
            wheels = download_wheels(spec, platform, Path(work))
        staged = spec.staged(wheels)
    report(
        f"Building the Python environment {env_dir} with {spec.installer} "
        f"({len(spec.requirements.constraints)} pinned distributions, {_size(len(staged))} to upload).",
        {"environment": env_dir, "requirements": "\n".join(spec.requirements.requirements)},
    )
    stage_dir = f"{env_dir}.stage"
    upload(transport, staged, stage_dir, _progress("environment's inputs", report))
    built = build(transport, spec, env_dir, stage_dir)
    report(
        f"Python environment built in {time.monotonic() - started:.1f} s."
        if built
        else "Python environment built by another run meanwhile.",
        {"environment": env_dir, "uploaded bytes": len(staged)},
    )


def _check(
    transport: Transport,
    shipment: Shipment,
    origin: JobPythonOrigin,
    code_dir: str,
    marker: str,
    setup: Sequence[str],
    env: Mapping[str, str],
) -> None:
    steps_env = shipment.step_environment(env)
    python_path = [p for p in steps_env.get("PYTHONPATH", "").split(":") if p]
    spec = {"origin": serialize_value(shipment.origin(origin)), "env": steps_env, "python_path": python_path}
    setup_text = "".join(f"{line}\n" for line in setup).encode()
    argv = [shipment.python, code_dir, marker, str(len(setup_text))]
    result = transport.run(command("check_code", *argv), stdin=setup_text + json.dumps(spec).encode())
    if not result.ok:
        last = "\n".join((result.stdout + result.stderr).strip().splitlines()[-40:])
        raise CodeShippingError(
            f"the shipped environment could not load job {origin.job_name!r} from the shipped code on the "
            f"login node; no step was submitted:\n{last}"
        )


def _progress(what: str, report: Report) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        if total > 8 * 1024 * 1024:  # one chunk or less: the start and end messages say it all
            report(f"Uploading the {what}: {_size(done)} of {_size(total)}.", {})

    return progress


def _size(count: int) -> str:
    return f"{count / 1024:.1f} KiB" if count < 1024 * 1024 else f"{count / 1024 / 1024:.1f} MiB"
