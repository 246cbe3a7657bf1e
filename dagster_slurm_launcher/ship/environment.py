"""The steps' Python environment on the cluster, built once per content from the Dagster host's
requirements: on the login node from the site's package index (``build``), or offline from
wheels the Dagster host downloaded for the cluster's platform (``wheels``)."""

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dagster_slurm_launcher.ship.requirements import Requirements
from dagster_slurm_launcher.transport import CommandInterrupted, Transport, TransportError
from dagster_slurm_launcher.transport.programs import command

MODES = ("python", "build", "wheels")
INSTALLERS = ("pip", "uv")
# Changes when the way an environment is built changes, so that older builds are not reused.
_LAYOUT = 1
# The longest a build may take; a concurrent run waits for it that long (build_environment.sh).
BUILD_TIMEOUT = 2700.0


class EnvironmentBuildError(TransportError):
    """The environment could not be built; the message holds the installer's last lines."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """Everything that decides an environment's content, and so its hash."""

    mode: str
    installer: str
    base_python: str
    setup: tuple[str, ...]
    requirements: Requirements

    @property
    def digest(self) -> str:
        identity = {
            "layout": _LAYOUT,
            "mode": self.mode,
            "installer": self.installer,
            "python": self.base_python,
            "setup": list(self.setup),
            **self.requirements.identity(),
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]

    def staged(self, wheels: Sequence[Path] = ()) -> bytes:
        """The build's inputs as an uncompressed tar (wheels are compressed already)."""
        files: dict[str, bytes] = {
            "requirements.txt": "".join(f"{line}\n" for line in self.requirements.requirements).encode(),
            "constraints.txt": "".join(f"{line}\n" for line in self.requirements.constraints).encode(),
            "setup.sh": "".join(f"{line}\n" for line in self.setup).encode(),
        }
        for wheel in self.requirements.wheels:
            files[f"wheels/{wheel.filename}"] = wheel.build()
        for path in wheels:
            files.setdefault(f"wheels/{path.name}", path.read_bytes())
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in sorted(files.items()):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o600
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()


def build(transport: Transport, spec: EnvironmentSpec, env_dir: str, stage_dir: str) -> bool:
    """Build the environment at ``env_dir`` from the inputs unpacked at ``stage_dir``, unless a
    concurrent run built it first; ``True`` if this call built it.

    Raises:
        EnvironmentBuildError: with the installer's message.
    """
    source = "offline" if spec.mode == "wheels" else "index"
    argv = [env_dir, stage_dir, spec.installer, spec.base_python, source, spec.requirements.package_version]
    try:
        result = transport.run(command("build_environment", *argv), timeout=BUILD_TIMEOUT)
    except CommandInterrupted as exc:
        raise EnvironmentBuildError(
            f"no answer from the login node while it built {env_dir} ({exc}); the build goes on or stops "
            "there, and the next run waits for it or starts it again"
        ) from None
    if not result.ok:
        where = "from the wheels shipped" if source == "offline" else "from the site's package index"
        raise EnvironmentBuildError(
            f"building the Python environment {env_dir} on the login node failed ({spec.installer}, {where}):\n"
            f"{result.stderr.strip()}"
        )
    return result.stdout.split()[-1] == "built"


@dataclass(frozen=True)
class Platform:
    """The cluster interpreter's platform, as ``pip download`` takes it."""

    python_version: str
    """``311`` for CPython 3.11."""
    machine: str
    glibc: tuple[int, int] | None

    def pip_arguments(self) -> list[str]:
        tags = [f"linux_{self.machine}"]
        if self.glibc:
            major, minor = self.glibc
            tags += [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
            tags += [f"manylinux{v}_{self.machine}" for v in ("2014", "2010", "1")]
        platform_args = [arg for tag in tags for arg in ("--platform", tag)]
        return [
            *platform_args,
            "--python-version",
            self.python_version,
            "--implementation",
            "cp",
            "--only-binary=:all:",
        ]


def cluster_platform(transport: Transport, spec: EnvironmentSpec) -> Platform:
    """Ask the cluster's base interpreter (after the setup lines) for its platform."""
    setup = "".join(f"{line}\n" for line in spec.setup).encode()
    result = transport.run(command("python_platform", spec.base_python), stdin=setup)
    if not result.ok or len(result.stdout.split()) != 3:
        raise EnvironmentBuildError(
            f"could not ask the cluster's Python {spec.base_python!r} for its platform: {result.stderr.strip()}"
        )
    version, machine, libc = result.stdout.split()
    glibc = (int(libc.split(".")[0]), int(libc.split(".")[1])) if libc != "-" else None
    return Platform(version, machine, glibc)


def download_wheels(spec: EnvironmentSpec, platform: Platform, into: Path) -> list[Path]:
    """Download wheels of every requirement for ``platform`` with this interpreter's pip.

    Raises:
        EnvironmentBuildError: with pip's message (a package with no wheel for the platform, say).
    """
    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        # The local wheels go in as files, so that pip follows their dependencies too.
        (workdir / "wheels").mkdir()
        for wheel in spec.requirements.wheels:
            (workdir / "wheels" / wheel.filename).write_bytes(wheel.build())
        (workdir / "requirements.txt").write_text("".join(f"{line}\n" for line in spec.requirements.requirements))
        (workdir / "constraints.txt").write_text("".join(f"{line}\n" for line in spec.requirements.constraints))
        argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "-d", str(into)]
        argv += [*platform.pip_arguments(), "-r", "requirements.txt", "-c", "constraints.txt"]
        result = subprocess.run(argv, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        last = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        if "No module named pip" in last:
            last += f"\n(install pip into the Dagster host's environment: {sys.executable} -m ensurepip)"
        raise EnvironmentBuildError(f"downloading wheels for the cluster ({platform}) failed:\n{last}")
    return sorted(into.glob("*.whl"))
