"""One status query per poll interval for every run worker on a host that watches one cluster user.

Each run worker polls its own run's jobs; twenty concurrent runs would cost the controller twenty
``squeue`` RPCs per interval where one would do. Run workers that watch the same cluster (same
settings) from one host share a snapshot instead, kept in a file under the control dir: under a
lock, the first worker to find the snapshot older than the interval runs one ``squeue`` for all
of the user's jobs, and one ``sacct`` for every job that any worker found gone from the queue;
the others read what it wrote. Nobody is elected: a worker that dies releases the lock with its
process, and a worker that cannot take the lock in time polls on its own.

The snapshot holds job states, names and accounting, which ``squeue`` shows any user of the
cluster anyway. It is used only in a folder that is the user's own and no one else can write
(the file 0600, written through a fresh temporary file); anything wrong with the folder or
the file (another owner, a loose mode, a full disk, a lock the filesystem refuses) and the
worker polls on its own, saying why once.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from dagster_slurm_launcher.logs import get_logger
from dagster_slurm_launcher.slurm.client import SlurmClient, gone_from_queue, states_of
from dagster_slurm_launcher.slurm.job import JobInfo, JobState, SubmittedJob

log = get_logger(__name__)

FORMAT = 1
# Accounting records and requests older than this are dropped from the snapshot.
KEEP_SECONDS = 3600.0


class StatusSource(Protocol):
    """What answers the state of jobs: :class:`SlurmClient` itself, or :class:`SharedStatus`."""

    def poll(self, jobs: Iterable[SubmittedJob]) -> dict[str, JobInfo]:
        """Each job's state by job id, as :meth:`SlurmClient.poll` gives it."""
        ...


class SharedStatus:
    """The state of jobs, as :meth:`SlurmClient.poll` gives it, from a snapshot shared by the
    processes of this host that poll the same cluster.

    Args:
        client: runs the queries when the snapshot is stale.
        folder: where processes on this host coordinate (the settings' ``ssh_control_dir``).
        cluster: what identifies the cluster and user; processes with the same value share.
        max_age: seconds a snapshot is used for (a little less than the poll interval, so that
            a worker's own last query is stale by its next poll).
    """

    def __init__(self, client: SlurmClient, folder: Path, cluster: str, max_age: float) -> None:
        self._client = client
        # Hosts that share a home folder (NFS) each keep their own: monotonic times are per boot.
        digest = hashlib.sha256(f"{socket.gethostname()} {cluster}".encode()).hexdigest()[:16]
        self._folder = folder.expanduser()
        self._path = self._folder / f"status-{digest}.json"
        self._max_age = max_age
        self._alone_because: str | None = None

    def poll(self, jobs: Iterable[SubmittedJob]) -> dict[str, JobInfo]:
        jobs = list(jobs)
        if not jobs:
            return {}
        try:
            with self._locked() as locked:
                if not locked:
                    return self._alone(jobs, "another process has held the shared status for too long")
                snapshot = self._load()
                self._refresh_queue(snapshot)
                gone = gone_from_queue(jobs, snapshot.queue)
                snapshot.wanted.update({j.job_id: _Wanted(j.name, j.submitted_after, time.time()) for j in gone})
                if any(not (k := snapshot.kept.get(j.job_id)) or not k.info.is_terminal for j in gone):
                    self._refresh_accounting(snapshot)
                self._store(snapshot)
        except (OSError, _UnsafeFolder) as exc:
            return self._alone(jobs, str(exc))
        self._alone_because = None
        return states_of(jobs, snapshot.queue, snapshot.accounting)

    def _alone(self, jobs: list[SubmittedJob], why: str) -> dict[str, JobInfo]:
        if why != self._alone_because:
            log.warning("polling Slurm alone, not through the shared status", reason=why, path=str(self._path))
            self._alone_because = why
        return self._client.poll(jobs)

    def _refresh_queue(self, snapshot: "_Snapshot") -> None:
        if snapshot.fresh(snapshot.queue_at, self._max_age):
            return
        snapshot.queue = self._client.queue()
        snapshot.queue_at = time.monotonic()
        for job_id, info in snapshot.queue.items():
            if not info.is_terminal:
                # Requeued, or in the queue only now: what accounting said of it is out of date.
                snapshot.wanted.pop(job_id, None)
                snapshot.kept.pop(job_id, None)

    def _refresh_accounting(self, snapshot: "_Snapshot") -> None:
        # The other workers' requests ride along: one sacct per interval for the whole host.
        if snapshot.fresh(snapshot.accounting_at, self._max_age) or not snapshot.wanted:
            return
        wanted = [SubmittedJob(job_id, w.name, w.submitted_after) for job_id, w in snapshot.wanted.items()]
        found = self._client.accounting(wanted)
        snapshot.accounting_at = time.monotonic()
        now = time.time()
        # Only the jobs asked for: without accounting, the answer is every job in the cluster.
        for job_id in [j.job_id for j in wanted if j.job_id in found]:
            snapshot.kept[job_id] = _Kept(found[job_id], now)
            if found[job_id].is_terminal:
                snapshot.wanted.pop(job_id, None)

    @contextmanager
    def _locked(self) -> Iterator[bool]:
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = self._folder.stat()
        if folder.st_uid != os.getuid() or folder.st_mode & 0o022:
            raise _UnsafeFolder(f"{self._folder} is not this user's own, or others may write in it")
        fd = os.open(self._path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            # A holder waits on Slurm for a query's time; beyond a few intervals (a query
            # retrying through an outage, a holder stopped by a debugger) poll alone.
            deadline = time.monotonic() + 3 * self._max_age
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        yield False
                        return
                    time.sleep(0.05)
            yield True
        finally:
            os.close(fd)  # closing releases the lock

    def _load(self) -> "_Snapshot":
        try:
            data = json.loads(self._path.read_text())
            if data.get("format") != FORMAT or data.get("boot_id") != _boot_id():
                return _Snapshot()  # monotonic times of another boot, or another release's file
            return _Snapshot.from_json(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return _Snapshot()  # none yet, or damaged: start over

    def _store(self, snapshot: "_Snapshot") -> None:
        snapshot.prune(time.time() - KEEP_SECONDS)
        fd, temporary = tempfile.mkstemp(dir=self._folder, prefix=".status-", suffix=".tmp")  # 0600, new
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(snapshot.to_json(), out)
            os.replace(temporary, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


class _UnsafeFolder(Exception):
    """The control folder is not safe to share a snapshot in."""


@dataclass
class _Wanted:
    name: str
    submitted_after: datetime
    asked_at: float


@dataclass
class _Kept:
    info: JobInfo
    seen_at: float


@dataclass
class _Snapshot:
    queue_at: float = float("-inf")
    queue: dict[str, JobInfo] = field(default_factory=dict)
    accounting_at: float = float("-inf")
    kept: dict[str, _Kept] = field(default_factory=dict)
    wanted: dict[str, _Wanted] = field(default_factory=dict)

    @property
    def accounting(self) -> dict[str, JobInfo]:
        return {job_id: k.info for job_id, k in self.kept.items()}

    @staticmethod
    def fresh(at: float, max_age: float) -> bool:
        return 0 <= time.monotonic() - at < max_age

    def prune(self, before: float) -> None:
        self.kept = {k: v for k, v in self.kept.items() if v.seen_at >= before}
        self.wanted = {k: v for k, v in self.wanted.items() if v.asked_at >= before}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "boot_id": _boot_id(),
            "queue_at": self.queue_at if self.queue_at != float("-inf") else None,
            "queue": [_info_to_json(i) for i in self.queue.values()],
            "accounting_at": self.accounting_at if self.accounting_at != float("-inf") else None,
            "accounting": [{"info": _info_to_json(k.info), "seen_at": k.seen_at} for k in self.kept.values()],
            "wanted": {
                job_id: {"name": w.name, "submitted_after": w.submitted_after.isoformat(), "asked_at": w.asked_at}
                for job_id, w in self.wanted.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "_Snapshot":
        queue = [_info_from_json(i) for i in data["queue"]]
        kept = [_Kept(_info_from_json(k["info"]), k["seen_at"]) for k in data["accounting"]]
        return cls(
            queue_at=data["queue_at"] if data["queue_at"] is not None else float("-inf"),
            queue={i.job_id: i for i in queue},
            accounting_at=data["accounting_at"] if data["accounting_at"] is not None else float("-inf"),
            kept={k.info.job_id: k for k in kept},
            wanted={
                job_id: _Wanted(w["name"], datetime.fromisoformat(w["submitted_after"]), w["asked_at"])
                for job_id, w in data["wanted"].items()
            },
        )


def _info_to_json(info: JobInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in asdict(info).items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, timedelta):
            value = value.total_seconds()
        elif isinstance(value, JobState):
            value = value.value
        out[name] = value
    return out


_DATETIMES = {"submit_time", "start_time", "end_time"}
_DURATIONS = {"elapsed", "total_cpu"}
_STATES = {"state", "batch_state"}
_CODES = {"exit_code", "batch_exit_code"}


def _info_from_json(data: Mapping[str, Any]) -> JobInfo:
    values: dict[str, Any] = {}
    for f in fields(JobInfo):
        value = data.get(f.name)
        if value is not None:
            if f.name in _DATETIMES:
                value = datetime.fromisoformat(value)
            elif f.name in _DURATIONS:
                value = timedelta(seconds=value)
            elif f.name in _STATES:
                value = JobState(value)
            elif f.name in _CODES:
                value = tuple(value)
        values[f.name] = value
    return JobInfo(**values)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"
