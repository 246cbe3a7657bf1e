"""The event journal: how step events travel from a compute node to the Dagster instance.

The step worker appends one line per event, ``<seq> <serialized EventLogEntry>``, flushed and
fsynced before the step goes on, so an event the worker wrote survives the worker. Serialized
entries are ASCII JSON (Dagster's serdes), so a line never contains a newline and byte offsets
equal character offsets. Only complete lines count: a line cut short by a crash is never read.
"""

import os
from dataclasses import dataclass
from typing import IO

from dagster._core.events.log import EventLogEntry
from dagster._serdes import deserialize_value, serialize_value

JOURNAL_FILE = "events.jsonl"


class JournalWriter:
    """Appends events to a journal file, each durable before :meth:`append` returns."""

    def __init__(self, path: str) -> None:
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - closed in close()
        os.fchmod(self._file.fileno(), 0o600)
        self._seq = _last_seq(path)

    def append(self, entry: EventLogEntry) -> None:
        self._seq += 1
        self._file.write(f"{self._seq} {serialize_value(entry)}\n".encode("ascii"))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _last_seq(path: str) -> int:
    """A requeued job appends to its predecessor's journal: continue its numbering."""
    last = 0
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                last = int(line.split(b" ", 1)[0])
    return last


@dataclass(frozen=True)
class JournalRecord:
    seq: int
    entry: EventLogEntry


def parse_records(chunk: str) -> tuple[list[JournalRecord], int]:
    """Complete records in ``chunk`` and how many bytes of it they span (the rest is unfinished)."""
    records = []
    consumed = 0
    for line in chunk.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        consumed += len(line)
        seq, _, payload = line.rstrip("\n").partition(" ")
        records.append(JournalRecord(int(seq), deserialize_value(payload, EventLogEntry)))
    return records, consumed
