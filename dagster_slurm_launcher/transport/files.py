"""Read parts of many files on the cluster with one command."""

import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


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
    data: str | None


def read_files_command(slices: Sequence[FileSlice]) -> str:
    """One shell command printing each slice as a frame ``<index> <start> <count>\\n<bytes>``
    (``<index> -\\n`` for a missing file)."""
    parts = []
    for index, s in enumerate(slices):
        q = shlex.quote(s.path)
        start = f"$(( size - {s.limit} > {s.offset} ? size - {s.limit} : {s.offset} ))" if s.limit else str(s.offset)
        parts.append(
            f"if [ -f {q} ]; then size=$(stat -c %s {q}); start={start}; n=$(( size - start )); "
            f"[ $n -lt 0 ] && n=0; echo {index} $start $n; tail -c +$(( start + 1 )) {q} | head -c $n; "
            f"else echo {index} -; fi"
        )
    return "\n".join(parts)


def parse_files_output(slices: Sequence[FileSlice], output: str) -> Iterator[FileRead]:
    """The frames of :func:`read_files_command`'s output. Counts are bytes: the files must be
    ASCII (journals are) or the caller must accept a cut at the end (logs)."""
    pos = 0
    while pos < len(output):
        header_end = output.index("\n", pos)
        fields = output[pos:header_end].split(" ")
        pos = header_end + 1
        s = slices[int(fields[0])]
        if fields[1] == "-":
            yield FileRead(s, s.offset, None)
            continue
        start, count = int(fields[1]), int(fields[2])
        yield FileRead(s, start, output[pos : pos + count])
        pos += count
