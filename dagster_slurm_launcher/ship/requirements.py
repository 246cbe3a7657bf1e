"""What the cluster's environment must hold, read off the Dagster host's own environment.

The roots are this package, the code location's declared dependencies (its ``pyproject.toml``)
and the executor's ``requirements``. Each is followed through the host's installed
distributions: what the host has installed is pinned to the version it runs, so that the steps
run with what the code was written against. Roots the host does not have go to the installer
as written. Distributions installed from a local folder or file (no index has them: this
package in a development checkout, say) are repacked from their installed files into wheels.
"""

import base64
import hashlib
import io
import json
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from dagster_slurm_launcher.ship.code import CodeShippingError

PACKAGE = "dagster-slurm-launcher"
# Files of an installed distribution that are the installer's, not the wheel's.
_INSTALLER_FILES = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}


@dataclass(frozen=True)
class LocalWheel:
    """A distribution no index has, repacked from its installed files."""

    filename: str
    digest: str
    distribution: metadata.Distribution = field(compare=False, repr=False)

    def build(self) -> bytes:
        """The wheel: the installed files (without bytecode, scripts and the installer's own
        files), and a RECORD of them; entry points are the installer's to write again."""
        dist_info = f"{self.filename.split('-')[0]}-{self.distribution.version}.dist-info"
        records = []
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
            for path in _kept_files(self.distribution):
                data = path.read_binary()
                wheel.writestr(str(path), data)
                sha = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                records.append(f"{path},sha256={sha},{len(data)}")
            records.append(f"{dist_info}/RECORD,,")
            wheel.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
        return buffer.getvalue()


@dataclass(frozen=True)
class Requirements:
    """The requirements file, constraints file and local wheels of one environment."""

    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    wheels: tuple[LocalWheel, ...]
    package_version: str

    def identity(self) -> dict[str, object]:
        return {
            "requirements": list(self.requirements),
            "constraints": list(self.constraints),
            "wheels": {w.filename: w.digest for w in self.wheels},
        }


def _kept_files(dist: metadata.Distribution) -> list[metadata.PackagePath]:
    return [
        p
        for p in dist.files or []
        if not str(p).startswith("..")
        and "__pycache__" not in p.parts
        and not (p.parts[0].endswith(".dist-info") and p.name in _INSTALLER_FILES)
    ]


def _direct_url(dist: metadata.Distribution) -> dict | None:
    text = dist.read_text("direct_url.json")
    return json.loads(text) if text else None


def _local_wheel(dist: metadata.Distribution) -> LocalWheel:
    tag = next(
        (
            line.split(":", 1)[1].strip()
            for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")
        ),
        "py3-none-any",
    )
    name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    digest = hashlib.sha256()
    for path in sorted(_kept_files(dist), key=str):
        digest.update(f"{path}\0{path.hash.value if path.hash else ''}\0".encode())
    return LocalWheel(f"{name}-{dist.version}-{tag}.whl", digest.hexdigest()[:20], dist)


def _how_to_install(dist: metadata.Distribution) -> str | LocalWheel:
    """A requirement line for ``dist`` as installed here, or the wheel to repack it into."""
    name = dist.metadata["Name"]
    direct = _direct_url(dist)
    if direct is None:
        return f"{name}=={dist.version}"
    url = direct.get("url", "")
    if direct.get("dir_info", {}).get("editable"):
        raise CodeShippingError(
            f"{name} is installed in editable mode from {url}, which the cluster cannot install: install it "
            "without -e (`pip install <folder>`) into the Dagster host's environment"
        )
    if "vcs_info" in direct:
        vcs = direct["vcs_info"]
        return f"{name} @ {vcs['vcs']}+{url}@{vcs['commit_id']}"
    if url.startswith("file:"):
        return _local_wheel(dist)
    return f"{name} @ {url}"


def project_dependencies(root: Path) -> list[str]:
    """The ``[project] dependencies`` of the code location's ``pyproject.toml``, if it has one."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return []
    try:
        return list(tomllib.loads(path.read_text()).get("project", {}).get("dependencies", []))
    except tomllib.TOMLDecodeError as exc:
        raise CodeShippingError(f"{path} is not valid TOML ({exc}): its dependencies cannot be read") from None


def resolve(roots: Sequence[str], installed: Iterable[metadata.Distribution] | None = None) -> Requirements:
    """Follow ``roots`` through the installed distributions (this process's, by default)."""
    by_name = {}
    for dist in installed if installed is not None else metadata.distributions():
        by_name.setdefault(canonicalize_name(dist.metadata["Name"] or ""), dist)
    if PACKAGE not in by_name:
        raise CodeShippingError(f"{PACKAGE} is not installed in this environment as a distribution")
    lines: list[str] = []
    queue: list[tuple[Requirement, tuple[str, ...]]] = []
    for root in [PACKAGE, *roots]:
        try:
            requirement = Requirement(root)
        except InvalidRequirement as exc:
            raise CodeShippingError(f"requirement {root!r} is not valid: {exc}") from None
        if canonicalize_name(requirement.name) not in by_name:
            lines.append(root)  # not installed here: the cluster's installer resolves it
        queue.append((requirement, ("",)))
    pins: dict[str, str] = {}
    direct: dict[str, str] = {}
    wheels: dict[str, LocalWheel] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        requirement, extras = queue.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        dist = by_name.get(name)
        if key in seen or dist is None:
            continue
        seen.add(key)
        how = _how_to_install(dist)
        if isinstance(how, LocalWheel):
            wheels[how.filename] = how
        elif " @ " in how:
            direct[name] = how
        else:
            pins[name] = how
        # A requirement asked for with extras brings the dependencies those extras add.
        for text in dist.requires or []:
            queue.append((Requirement(text), ("", *sorted(requirement.extras))))
    # Installed roots are asked for as written; the pins hold the versions, as constraints, so
    # that what the cluster's markers leave out (a macOS-only dependency) is not installed.
    lines += [r for r in [PACKAGE, *roots] if canonicalize_name(Requirement(r).name) in pins]
    lines += [direct[n] for n in sorted(direct)] + [f"./wheels/{f}" for f in sorted(wheels)]
    return Requirements(
        requirements=tuple(dict.fromkeys(lines)),
        constraints=tuple(pins[n] for n in sorted(pins)),
        wheels=tuple(wheels[f] for f in sorted(wheels)),
        package_version=by_name[PACKAGE].version,
    )
