"""The event journal: how step events travel from a compute node to the Dagster instance.

The step worker appends one line per event, ``<seq> <serialized EventLogEntry>``, flushed and
fsynced before the step goes on, so an event the worker wrote survives the worker. The last
line a worker writes, whether the step finished or Slurm stopped it, is ``END <stdout bytes>
<stderr bytes>``, and in a pack, for a step that ended or never started without its outcome,
``END <stdout bytes> <stderr bytes> <cause>`` (see :mod:`.packed_worker`): a reader that has
seen it has every record, however late a caching shared filesystem showed it, and knows how
much of the job's output files to wait for (their sizes are ``-`` when the worker's output is
not a file).

Serialized entries are ASCII JSON (Dagster's serdes), so a record never contains a newline.
Only complete lines count. NUL bytes are data that NFS has not shown yet: reading stops there
until they are filled in. A line that is damaged otherwise (a record cut short by SIGKILL or an
out-of-memory kill, then ended by the next writer) is waited on while it is the last one, and
skipped once good lines follow it.
"""

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dagster import DagsterEventType, EventLogEntry, deserialize_value, serialize_value

JOURNAL_FILE = "events.jsonl"
END = b"END"
# Events that end a step for the executor. A resource that fails to initialise ends the step
# with RESOURCE_INIT_FAILURE alone: the worker raises before any STEP_FAILURE, and
# StepDelegatingExecutor.execute (its `is_resource_init_failure` branch) marks the step failed
# and logs the STEP_FAILURE itself, without taking the step off its running steps; a later
# health check that reported the job's end as a missing outcome would fail the step twice.
OUTCOMES = frozenset(
    {
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.STEP_UP_FOR_RETRY,
        DagsterEventType.RESOURCE_INIT_FAILURE,
    }
)

# The storage id the step worker's instance gives the event of journal record `seq`: above any id
# an instance reaches, so that an id in an event can be told to point at an event of the same step
# (an input's event pointer, a check's target materialization) and be rewritten by the relay to
# the id the instance gave that event (see executor/step_ids.py).
STEP_STORAGE_ID_BASE = 10**15


def step_storage_id(seq: int) -> int:
    return STEP_STORAGE_ID_BASE + seq


def seq_of_step_storage_id(storage_id: int) -> int | None:
    """The journal record a storage id points at, or None for an id of the instance."""
    return storage_id - STEP_STORAGE_ID_BASE if storage_id > STEP_STORAGE_ID_BASE else None


class JournalWriter:
    """Appends events to a journal file, each durable before :meth:`append` returns.

    Lines are written unbuffered (one ``write`` each), so that :meth:`end` may be called from a
    signal handler that interrupted an append.
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(self._fd, 0o600)
        self._seq = _start_on_a_new_line(self._fd)
        self._at_line_start = True

    def append(self, entry: EventLogEntry) -> int:
        """Write ``entry`` as the next record; its sequence number."""
        self._seq += 1
        self._write(f"{self._seq} {serialize_value(entry)}\n".encode("ascii"))
        return self._seq

    def end(self, output_sizes: tuple[int, int] | None = None, cause: str | None = None) -> None:
        """Say that this worker writes nothing more, how long its stdout and stderr files are,
        and (from a pack's worker) why a step ended without its outcome (after an interrupted
        line, on a line of its own)."""
        sizes = b" %d %d" % output_sizes if output_sizes else b" - -"
        why = b" " + cause.encode("ascii") if cause else b""
        self._write((b"" if self._at_line_start else b"\n") + END + sizes + why + b"\n")

    def _write(self, line: bytes) -> None:
        self._at_line_start = False
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self._at_line_start = True

    def close(self) -> None:
        os.close(self._fd)


def _start_on_a_new_line(fd: int) -> int:
    """Cut a line a killed predecessor left unfinished (a requeued job appends to its journal),
    so that the next record starts on a line of its own; the last sequence number written."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        os.ftruncate(fd, len(complete))
    return max((r.seq for r in parse_records(complete, final=True).records), default=0)


@dataclass(frozen=True)
class JournalRecord:
    seq: int
    entry: EventLogEntry


@dataclass(frozen=True)
class ParsedJournal:
    records: list[JournalRecord]
    consumed: int
    """Bytes of the chunk that need not be read again (complete lines, and bad ones skipped)."""
    ended: bool
    """The last line read is the worker's ``END`` (a requeued job's worker writes after it)."""
    output_sizes: tuple[int, int] | None
    """The sizes of the job's stdout and stderr files that the last ``END`` read gave."""
    end_cause: str | None
    """Why a packed step ended without its outcome, as the last ``END`` read gives it."""
    skipped: int
    """Lines that could not be read and were passed over."""


def parse_records(chunk: bytes, final: bool = False) -> ParsedJournal:
    """The records of ``chunk``, a part of a journal that starts at a line boundary.

    Reading stops at NUL bytes, and before damaged lines that no good line follows, to read
    them again later; unless ``final`` (nothing more will become visible), when they are skipped.
    """
    records: list[JournalRecord] = []
    consumed = skipped = 0
    ended = False
    output_sizes: tuple[int, int] | None = None
    end_cause: str | None = None
    bad = 0  # damaged lines since the last good one
    pos = 0
    for line in _complete_lines(chunk):
        if b"\0" in line and not final:
            break
        pos += len(line)
        body = line[:-1]
        if body == END or body.startswith(END + b" "):
            ended, output_sizes, end_cause = True, _sizes(body), _cause(body)
        elif (record := _parse_line(body)) is not None:
            records.append(record)
            ended = False
        else:
            bad += 1
            continue
        skipped, bad, consumed = skipped + bad, 0, pos
    if final and bad:
        skipped, consumed = skipped + bad, pos
    return ParsedJournal(records, consumed, ended, output_sizes, end_cause, skipped)


def _sizes(end_line: bytes) -> tuple[int, int] | None:
    fields = end_line.split()[1:3]
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    return int(fields[0]), int(fields[1])


def _cause(end_line: bytes) -> str | None:
    fields = end_line.split()
    return fields[3].decode("ascii", "replace") if len(fields) > 3 else None


def _complete_lines(chunk: bytes) -> Iterable[bytes]:
    lines = chunk.split(b"\n")[:-1]  # what follows the last newline is unfinished
    return (line + b"\n" for line in lines)


def _parse_line(body: bytes) -> JournalRecord | None:
    seq, _, payload = body.partition(b" ")
    if not seq.isdigit():
        return None
    try:
        return JournalRecord(int(seq), deserialize_value(payload.decode("ascii"), EventLogEntry))
    except Exception:  # any damage to a line: serdes raises several kinds
        return None


def read_records(path: str) -> list[JournalRecord]:
    """Every record of the journal at ``path`` (none if there is no such file)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return parse_records(data, final=True).records


def last_outcome(records: Sequence[JournalRecord]) -> EventLogEntry | None:
    """The step's outcome among ``records`` (the last, where a requeued job recorded two)."""
    return next((r.entry for r in reversed(records) if r.entry.dagster_event_type in OUTCOMES), None)


def has_outcome(records: Sequence[JournalRecord]) -> bool:
    return last_outcome(records) is not None


def holds_outcome(path: str) -> bool:
    """Whether the journal at ``path`` records the step's outcome (a requeued job must not run
    the step again)."""
    return has_outcome(read_records(path))
