"""A step's stdout and stderr, from its job's files on the cluster to the UI's logs view, as it runs.

The relay reads what each step's stdout and stderr gained since its last read in the same command
that reads the journals, and appends it to the step's captured logs in the instance's compute log
manager: a running step's output shows in the UI about a second after the read. What one read
takes is bounded: each stream gets its share of ``READ_BUDGET``, its newest bytes, with a line that
says how much was passed over, so that a step printing 100 MB cannot stall the relay. A stream
past ``MAX_LOG_BYTES`` is no longer followed; when its job ends, its last ``TAIL_BYTES`` follow a
line that says where the whole output is.

Appending as the step runs needs a compute log manager whose ``open_log_stream`` appends (the
local one). Others (the cloud storage managers upload and delete their local files each time a
stream is closed) get each stream once, when the step's job has ended.
"""

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dagster import DagsterInstance

from dagster_slurm_launcher.dagster_internals import ComputeIOType, LocalComputeLogManager
from dagster_slurm_launcher.transport.files import FileRead, FileSlice

# Bytes of output one read takes from all streams together, and the least any stream gets.
READ_BUDGET = 8 * 2**20
MIN_SHARE = 64 * 2**10
# The UI shows at most this much of a stream as it runs, and then this much of its end.
MAX_LOG_BYTES = 10 * 2**20
TAIL_BYTES = 2**20

STREAMS = (ComputeIOType.STDOUT, ComputeIOType.STDERR)
# Where the logs view passes over bytes: "[<count> bytes not shown; all of it is in <path>]".
NOT_SHOWN = "bytes not shown; all of it is in"


@dataclass
class Stream:
    """How far one of a step's output files has been relayed."""

    offset: int = 0
    """Bytes of the file relayed or passed over."""
    shown: int = 0
    """Bytes of it written to the captured logs."""
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    """Keeps a character cut between two reads whole (output is bytes; invalid UTF-8 shows as U+FFFD)."""
    pending: list[str] = field(default_factory=list)
    """What waits for the job's end, with a compute log manager that cannot append."""


class FollowedStep(Protocol):
    """What this module needs of a tracked step."""

    folder: str
    log_file_key: str | None
    """Known once the worker reported capturing the step's logs (LOGS_CAPTURED)."""
    logs: dict[ComputeIOType, Stream]
    ended_at: float | None
    output_sizes: tuple[int, int] | None
    """How long the job's output files are, once its worker ended (the journal's END line)."""


@dataclass(frozen=True)
class LogSlice:
    """A read of one stream of one step."""

    step: FollowedStep
    io_type: ComputeIOType
    file: FileSlice
    final: bool
    """The job had ended before this read."""

    @property
    def stream(self) -> Stream:
        return self.step.logs[self.io_type]


def log_slices(steps: Sequence[FollowedStep]) -> list[LogSlice]:
    """What to read of the steps' streams now; none of a step whose log file key is not known."""
    wanted = [(step, io_type) for step in steps if step.log_file_key is not None for io_type in STREAMS]
    for step, io_type in wanted:
        step.logs.setdefault(io_type, Stream())
    followed = [(s, t) for s, t in wanted if s.ended_at is not None or s.logs[t].shown < MAX_LOG_BYTES]
    share = max(MIN_SHARE, READ_BUDGET // max(1, len(followed)))
    slices = []
    for step, io_type in followed:
        stream = step.logs[io_type]
        limit = TAIL_BYTES if stream.shown >= MAX_LOG_BYTES else share
        file = FileSlice(f"{step.folder}/{io_type.value}", stream.offset, limit)
        slices.append(LogSlice(step, io_type, file, final=step.ended_at is not None))
    return slices


def relayed_all(step: FollowedStep) -> bool:
    """Whether everything the step's job printed has been relayed (or passed over): as much as
    the worker's END line says it printed. A step whose log file key is not known, or whose
    worker could not say, has nothing more to wait for."""
    if step.log_file_key is None or step.output_sizes is None:
        return True
    return all(step.logs.get(t, Stream()).offset >= size for t, size in zip(STREAMS, step.output_sizes, strict=True))


def append_logs(instance: DagsterInstance, run_id: str, slices: Sequence[LogSlice], reads: Sequence[FileRead]) -> bool:
    """Append what was read to the steps' captured logs; ``True`` if anything was new."""
    manager = instance.compute_log_manager
    news = False
    for piece, read in zip(slices, reads, strict=True):
        if read.data is None or (not read.data and read.start == piece.stream.offset):
            continue
        news = True
        text = ""
        if read.start > piece.stream.offset:
            text += f"\n[{read.start - piece.stream.offset} {NOT_SHOWN} {piece.file.path}]\n"
            piece.stream.decoder.reset()  # a character cut at the old offset never continues
        text += piece.stream.decoder.decode(read.data, final=piece.final)
        piece.stream.offset = read.start + len(read.data)
        piece.stream.shown += len(read.data)
        if isinstance(manager, LocalComputeLogManager):
            _write(instance, run_id, piece.step, piece.io_type, text)
        else:
            piece.stream.pending.append(text)
    return news


def write_pending(instance: DagsterInstance, run_id: str, step: FollowedStep) -> None:
    """Write what waited for the job's end (see the module's docstring)."""
    for io_type, stream in step.logs.items():
        if stream.pending:
            _write(instance, run_id, step, io_type, "".join(stream.pending))
            stream.pending.clear()


def resume(instance: DagsterInstance, run_id: str, step: FollowedStep) -> None:
    """Go on from what a worker of this run that died had written to the step's logs (a
    resumed run adopts the job and reads its output again from the start)."""
    manager = instance.compute_log_manager
    if step.log_file_key is None or not isinstance(manager, LocalComputeLogManager):
        return
    data = manager.get_log_data(manager.build_log_key_for_run(run_id, step.log_file_key))
    for io_type, written in ((ComputeIOType.STDOUT, data.stdout), (ComputeIOType.STDERR, data.stderr)):
        if written and NOT_SHOWN.encode() not in written:
            step.logs[io_type] = Stream(offset=len(written), shown=len(written))


def _write(instance: DagsterInstance, run_id: str, step: FollowedStep, io_type: ComputeIOType, text: str) -> None:
    manager = instance.compute_log_manager
    log_key = manager.build_log_key_for_run(run_id, step.log_file_key)  # type: ignore[arg-type]
    with manager.open_log_stream(log_key, io_type) as out:
        if out is not None:
            out.write(text)
