"""The code location as files: which to ship, their content hash, the archive, and the job's
origin rewritten to point at the shipped copy."""

import fnmatch
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dagster_slurm_launcher.dagster_internals import JobPythonOrigin, changed

# Hidden entries (.git, .venv, .env files with secrets, `dagster dev`'s .tmp_dagster_home_*),
# caches and virtualenvs: nothing a step imports, and some of it must never leave the laptop.
DEFAULT_EXCLUDE = (".*", "__pycache__", "*.pyc", "venv", "node_modules", "*.egg-info")
# Larger than any code location; smaller than the data folder that slipped into one.
MAX_CODE_BYTES = 256 * 1024 * 1024


class CodeShippingError(ValueError):
    """The code location cannot be shipped as configured; the message says how to fix it."""


@dataclass(frozen=True)
class CodeBundle:
    """The files of a code location that go to the cluster, as they were read for the hash."""

    root: Path
    files: tuple[str, ...]
    """Paths relative to ``root``, POSIX-style, sorted."""
    digest: str
    size: int
    contents: tuple[tuple[bytes, bool], ...] = field(repr=False, compare=False)
    """Each file's bytes and executable bit, in the order of ``files``."""

    def archive(self) -> bytes:
        """The files as a gzipped tar of regular files: what was hashed, whatever changed on
        disk since, and a symbolic link as the file it points to (its target is not shipped)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
            for name, (content, executable) in zip(self.files, self.contents, strict=True):
                info = tarfile.TarInfo(name)
                info.size = len(content)
                info.mode = 0o755 if executable else 0o644
                tar.addfile(info, io.BytesIO(content))
        return buffer.getvalue()


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    # A pattern with a slash matches the path from the root; one without, any single name in it
    # (as .gitignore does): "data/*.csv" against the path, "__pycache__" against each part.
    parts = relative.split("/")
    return any(
        fnmatch.fnmatchcase(relative, p) if "/" in p else any(fnmatch.fnmatchcase(part, p) for part in parts)
        for p in patterns
    )


def collect(root: Path, include: Sequence[str], exclude: Sequence[str]) -> CodeBundle:
    """The files under ``root`` that match ``include`` and not ``exclude``, with their hash.

    The hash covers each file's path, content and executable bit, so that a run whose code is
    unchanged finds the copy an earlier run shipped. Symbolic links to files are shipped as the
    files; links to folders are not followed.
    """
    if not root.is_dir():
        raise CodeShippingError(f"the code location's folder {root} does not exist: set ship.code.root")
    if root.resolve() in (Path.home().resolve(), Path("/")):
        raise CodeShippingError(
            f"the code location's folder is {root} (where Dagster was started): start it from the project's "
            "folder, or set ship.code.root to it, so that not all of it is shipped"
        )
    files: list[str] = []
    for folder, dirs, names in os.walk(root):
        relative_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative_folder == "." else f"{relative_folder}/"
        dirs[:] = sorted(d for d in dirs if not _matches(prefix + d, exclude))
        for name in names:
            relative = prefix + name
            if _matches(relative, exclude) or not _matches(relative, include):
                continue
            if os.path.isfile(os.path.join(folder, name)):
                files.append(relative)
    files.sort()
    digest = hashlib.sha256()
    size = 0
    contents = []
    for relative in files:
        path = root / relative
        content = path.read_bytes()
        size += len(content)
        if size > MAX_CODE_BYTES:
            raise CodeShippingError(
                f"the code location {root} holds more than {MAX_CODE_BYTES >> 20} MiB of files to ship (at "
                f"{relative}): exclude what steps do not import with ship.code.exclude (data goes through IO "
                "managers, not the code's folder)"
            )
        executable = bool(path.stat().st_mode & stat.S_IXUSR)
        digest.update(f"{relative}\0{int(executable)}\0".encode())
        digest.update(hashlib.sha256(content).digest())
        contents.append((content, executable))
    return CodeBundle(root, tuple(files), digest.hexdigest()[:20], size, tuple(contents))


def code_root(origin: JobPythonOrigin) -> Path:
    """The folder a job's code location is shipped from: its working directory, else its file's folder."""
    pointer = origin.repository_origin.code_pointer
    working_directory = getattr(pointer, "working_directory", None)
    python_file = getattr(pointer, "python_file", None)
    if working_directory:
        return Path(working_directory)
    if python_file:
        return Path(python_file).parent
    raise CodeShippingError(
        f"the job's code location ({type(pointer).__name__}) names no folder to ship: "
        "set ship.code.root to the folder its module is imported from"
    )


def relocated(origin: JobPythonOrigin, root: Path, code_dir: str, python: str) -> JobPythonOrigin:
    """``origin`` with its code pointer's paths moved from ``root`` to ``code_dir`` on the cluster."""
    pointer = origin.repository_origin.code_pointer
    if not hasattr(pointer, "working_directory"):
        raise CodeShippingError(
            f"code locations loaded through a {type(pointer).__name__} cannot be shipped: load the "
            "definitions from a file (-f) or a module (-m)"
        )
    # A working directory above a narrower root (`dagster dev -f pipelines/defs.py` started in
    # the project, root `pipelines`) becomes the copy's top.
    working_directory = Path(pointer.working_directory or root).resolve()
    inside = working_directory.is_relative_to(root.resolve())
    fields: dict[str, str] = {
        "working_directory": _moved(str(working_directory), root, code_dir) if inside else code_dir
    }
    python_file = getattr(pointer, "python_file", None)
    if python_file:
        path = Path(python_file)
        if not path.is_absolute():
            path = Path(pointer.working_directory or os.getcwd()) / path
        fields["python_file"] = _moved(str(path), root, code_dir)
    repository = changed(origin.repository_origin, code_pointer=changed(pointer, **fields), executable_path=python)
    return changed(origin, repository_origin=repository)


def _moved(path: str, root: Path, code_dir: str) -> str:
    """``path`` under ``root`` on this host, as the same path under ``code_dir`` on the cluster."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise CodeShippingError(
            f"the code location's {path} is outside the shipped folder {root}: set ship.code.root to a folder "
            "that holds it"
        )
    relative = resolved.relative_to(root.resolve()).as_posix()
    return code_dir if relative == "." else f"{code_dir}/{relative}"


def import_paths(root: Path, code_dir: str) -> list[str]:
    """Folders of the shipped copy to put on ``PYTHONPATH``: ``src`` in a src layout, whose
    package the Dagster host imports from an editable install that the cluster does not have."""
    return [f"{code_dir}/src"] if (root / "src").is_dir() else []
