"""What the client knows about a Slurm job: its state and, once finished, its accounting."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal


class JobState(StrEnum):
    """Slurm's job states (``squeue -o %T`` / ``sacct -o State``), plus ``UNKNOWN``.

    ``UNKNOWN`` is the client's own: the job is in neither ``squeue`` nor ``sacct`` (yet).
    It never means finished; callers decide with a bounded grace period.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    CONFIGURING = "CONFIGURING"
    COMPLETING = "COMPLETING"
    SUSPENDED = "SUSPENDED"
    STOPPED = "STOPPED"
    RESIZING = "RESIZING"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    REQUEUED = "REQUEUED"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    REQUEUE_FED = "REQUEUE_FED"
    RESV_DEL_HOLD = "RESV_DEL_HOLD"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    REVOKED = "REVOKED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """The job will not run again (a requeued job shows up as PENDING/REQUEUED instead)."""
        return self in _TERMINAL

    @classmethod
    def parse(cls, text: str) -> tuple["JobState", str | None]:
        """Parse a state column; sacct writes ``CANCELLED by 1001``: the rest is returned as detail."""
        word, _, detail = text.strip().partition(" ")
        try:
            return cls(word), detail or None
        except ValueError:
            return cls.UNKNOWN, text.strip() or None


_TERMINAL = frozenset(
    {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.TIMEOUT,
        JobState.OUT_OF_MEMORY,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.REVOKED,
    }
)


@dataclass(frozen=True)
class SubmittedJob:
    """A job that ``sbatch`` accepted.

    Attributes:
        job_id: Slurm's job id.
        name: the job name it was submitted with.
        submitted_after: a time (UTC, read on the cluster just before ``sbatch``) that the job's
            submit time is not earlier than; it bounds later ``sacct`` queries.
    """

    job_id: str
    name: str
    submitted_after: datetime


@dataclass(frozen=True)
class JobInfo:
    """One job as ``squeue``, ``sacct`` or ``scontrol`` reported it.

    Fields that the reporting command does not know are ``None``; accounting fields
    (``max_rss_bytes``, ``total_cpu``, ``batch_state``...) come from ``sacct``.
    """

    job_id: str
    name: str
    state: JobState
    source: Literal["squeue", "sacct", "scontrol", "none"]
    reason: str | None = None
    """PENDING's reason (``Resources``, ``Priority``...), or who cancelled (``by 1001``)."""
    exit_code: tuple[int, int] | None = None
    """``(code, signal)`` as in sacct's ``ExitCode`` ``code:signal``."""
    node_list: str | None = None
    partition: str | None = None
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    elapsed: timedelta | None = None
    time_limit: str | None = None
    alloc_cpus: int | None = None
    alloc_nodes: int | None = None
    total_cpu: timedelta | None = None
    max_rss_bytes: int | None = None
    req_tres: str | None = None
    alloc_tres: str | None = None
    batch_state: JobState | None = None
    batch_exit_code: tuple[int, int] | None = None
    work_dir: str | None = None
    """The job's working directory (``--chdir``)."""

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def succeeded(self) -> bool:
        """COMPLETED with exit code 0:0, and so is its ``.batch`` step where accounting shows it."""
        if self.state != JobState.COMPLETED or self.exit_code != (0, 0):
            return False
        if self.source == "sacct":
            return self.batch_state == JobState.COMPLETED and self.batch_exit_code == (0, 0)
        return True

    @property
    def cpu_efficiency(self) -> float | None:
        """TotalCPU / (Elapsed x AllocCPUS), from 0 to 1; ``None`` before the job ran."""
        if self.total_cpu is None or not self.elapsed or not self.alloc_cpus:
            return None
        return self.total_cpu.total_seconds() / (self.elapsed.total_seconds() * self.alloc_cpus)

    @property
    def node_hours(self) -> float | None:
        if self.elapsed is None or self.alloc_nodes is None:
            return None
        return self.elapsed.total_seconds() * self.alloc_nodes / 3600.0


def unknown(job_id: str, name: str = "") -> JobInfo:
    """The record for a job that neither squeue nor accounting knows (yet)."""
    return JobInfo(job_id=job_id, name=name, state=JobState.UNKNOWN, source="none")
