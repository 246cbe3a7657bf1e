"""Read parts of many files on the cluster with one command.

The program is fixed and its file list travels on stdin, so the command line stays the same
size whatever the number of files (a command line over the kernel's 128 KiB argument limit
fails with "Argument list too long"). Each file is opened before its size is taken and read to
end of file: on NFS, opening revalidates cached attributes (close-to-open), while a bare
``stat`` may report a size seconds old.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from dagster_slurm_launcher.transport.base import CommandInterrupted, Transport, TransportError
from dagster_slurm_launcher.transport.programs import command

# A read is idempotent: a command cut off by a dropped connection is simply sent again.
_ATTEMPTS = 3


@dataclass(frozen=True)
class FileSlice:
    """Which bytes of ``path`` to read: from ``offset`` on, but at most the last ``limit`` bytes."""

    path: str
    offset: int = 0
    limit: int | None = None


@dataclass(frozen=True)
class FileRead:
    """What was read: ``data`` starts at byte ``start`` of the file (``None``: no such file)."""

    slice: FileSlice
    start: int
    data: bytes | None


def read_files(transport: Transport, slices: Sequence[FileSlice]) -> list[FileRead]:
    """Read every slice in one command, in the order given.

    Raises:
        TransportError: the files could not be read (the message carries the shell's error).
    """
    if not slices:
        return []
    request = b"".join(f"{s.offset}\0{s.limit or 0}\0{s.path}\0".encode() for s in slices)
    for attempt in range(_ATTEMPTS):
        try:
            result = transport.run(command("read_files"), stdin=request)
            break
        except CommandInterrupted:
            if attempt == _ATTEMPTS - 1:
                raise
    if not result.ok:
        raise TransportError(f"could not read {len(slices)} file(s) on the cluster: {result.stderr.strip()}")
    reads = list(parse_files_output(slices, result.output))
    if len(reads) != len(slices):
        raise TransportError(
            f"reading {len(slices)} file(s) on the cluster returned {len(reads)}: {result.stderr.strip()}"
        )
    return reads


def parse_files_output(slices: Sequence[FileSlice], output: bytes) -> list[FileRead]:
    """The frames of the reader's output; counts are bytes, and so is the data."""
    reads = []
    pos = 0
    while pos < len(output):
        header_end = output.index(b"\n", pos)
        fields = output[pos:header_end].decode("ascii").split(" ")
        pos = header_end + 1
        s = slices[int(fields[0])]
        if fields[1] == "-":
            reads.append(FileRead(s, s.offset, None))
            continue
        start, count = int(fields[1]), int(fields[2])
        reads.append(FileRead(s, start, output[pos : pos + count]))
        pos += count
    return reads
