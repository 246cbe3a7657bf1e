"""Read parts of many files on the cluster with one command.

The program is fixed and its file list travels on stdin, so the command line stays the same
size whatever the number of files (a command line over the kernel's 128 KiB argument limit
fails with "Argument list too long"). Each file is opened before its size is taken and read to
end of file: on NFS, opening revalidates cached attributes (close-to-open), while a bare
``stat`` may report a size seconds old.
"""

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from dagster_slurm_launcher.transport.base import (
    CommandInterrupted,
    Transport,
    TransportError,
)

# stdin: "<offset>\0<limit>\0<path>\0" per file (limit 0: none). stdout: per file, in order,
# "<index> <start> <count>\n" and <count> bytes, or "<index> -\n" if it could not be opened.
_READ_FILES = r"""
t=$(mktemp) || exit 1
exec 4>&2  # the loop's stderr is silenced (files not there yet); its real errors go here
trap 'rm -f "$t"' EXIT
trap 'exit 1' HUP INT PIPE TERM
i=0
while IFS= read -r -d '' offset && IFS= read -r -d '' limit && IFS= read -r -d '' path; do
    if exec 3<"$path"; then
        start=$offset
        if [ "$limit" -gt 0 ]; then
            size=$(stat -L -c %s /dev/fd/3)
            [ $((size - limit)) -gt "$offset" ] && start=$((size - limit))
        fi
        if ! tail -c +$((start + 1)) <&3 >"$t"; then
            exec 3<&-
            # A full temporary directory fails the whole read, rather than pass for "no new
            # data"; a journal that could not be read (ESTALE or EIO on NFS) is read next time.
            if ! printf x >"$t"; then
                echo "could not copy $path into $t (is ${TMPDIR:-/tmp} on the login node full?)" >&4
                exit 1
            fi
            printf '%s -\n' "$i"
            i=$((i + 1))
            continue
        fi
        exec 3<&-
        printf '%s %s %s\n' "$i" "$start" "$(stat -c %s "$t")"
        cat "$t"
    else
        printf '%s -\n' "$i"
    fi
    i=$((i + 1))
done 2>/dev/null
"""
_COMMAND = f"bash -c {shlex.quote(_READ_FILES)}"
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
            result = transport.run(_COMMAND, stdin=request)
            break
        except CommandInterrupted:
            if attempt == _ATTEMPTS - 1:
                raise
    if not result.ok:
        raise TransportError(f"could not read {len(slices)} file(s) on the cluster: {result.stderr.strip()}")
    reads = list(parse_files_output(slices, result.output))
    if len(reads) != len(slices):
        raise TransportError(f"reading {len(slices)} file(s) on the cluster returned {len(reads)}: {result.stderr.strip()}")
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
