"""Run worker processes: started detached from whoever launched them, and found again.

A run worker must outlive the daemon or webserver that started it (a deploy restarts those),
so it is double-forked into its own session and reparented to init. It is identified by host,
pid and start time: a pid alone may have been reused by an unrelated process.
"""

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psutil

# psutil rounds creation times; a restarted process with a reused pid differs by far more.
_START_TIME_TOLERANCE = 1.0

HOST_TAG = "dagster-slurm/run-worker-host"
PID_TAG = "dagster-slurm/run-worker-pid"
START_TAG = "dagster-slurm/run-worker-start-time"
LOG_TAG = "dagster-slurm/run-worker-log"


@dataclass(frozen=True)
class WorkerProcess:
    """Where a run worker runs: enough to tell whether it is still that same process."""

    host: str
    pid: int
    start_time: float

    @classmethod
    def current(cls) -> "WorkerProcess":
        return cls(socket.gethostname(), os.getpid(), psutil.Process().create_time())

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> "WorkerProcess | None":
        """The run worker a run's tags name, if any."""
        if PID_TAG not in tags:
            return None
        return cls(host=tags[HOST_TAG], pid=int(tags[PID_TAG]), start_time=float(tags[START_TAG]))

    def tags(self, log_path: str) -> dict[str, str]:
        """Run tags that say where this worker runs and logs."""
        return {HOST_TAG: self.host, PID_TAG: str(self.pid), START_TAG: f"{self.start_time:.3f}", LOG_TAG: log_path}

    def state(self) -> str:
        """``running``, ``gone``, or ``elsewhere`` (on another host: cannot be checked from here)."""
        if self.host != socket.gethostname():
            return "elsewhere"
        try:
            process = psutil.Process(self.pid)
            alive = process.status() != psutil.STATUS_ZOMBIE
            same = abs(process.create_time() - self.start_time) <= _START_TIME_TOLERANCE
        except psutil.NoSuchProcess:
            return "gone"
        return "running" if alive and same else "gone"

    def signal(self, signum: int) -> bool:
        """Send ``signum`` if this is still the same process on this host; whether it was sent."""
        if self.state() != "running":
            return False
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True


def spawn_detached(argv: Sequence[str], stdin: bytes, log_path: str, cwd: str | None, env: Mapping[str, str]) -> WorkerProcess:
    """Start ``argv`` detached (own session, reparented to init), feeding it ``stdin``.

    The command must follow :func:`detach`'s protocol: read its stdin, then call ``detach``,
    which prints the detached process's pid.
    """
    with open(log_path, "ab", buffering=0) as log:
        os.chmod(log_path, 0o600)
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=cwd, env=dict(env),
            start_new_session=True,
        )
        out, _ = process.communicate(stdin, timeout=120)
    if process.returncode == 0 and out.strip().isdigit():
        pid = int(out)
        try:
            return WorkerProcess(host=socket.gethostname(), pid=pid, start_time=psutil.Process(pid).create_time())
        except psutil.NoSuchProcess:
            pass  # it printed its pid and exited at once: its log says why
    with open(log_path, "rb") as f:
        tail = f.read()[-2000:].decode(errors="replace")
    raise RuntimeError(f"the run worker did not start (exit code {process.returncode}); its log {log_path} ends:\n{tail}")


def detach() -> None:
    """Fork; the parent prints the child's pid and exits, the child goes on in a new session.

    Called by a process started with :func:`spawn_detached` once it has read its stdin. The
    child is reparented to init, so it is never left a zombie of a long-lived daemon, and it
    no longer holds the launcher's stdout pipe.
    """
    pid = os.fork()
    if pid:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # stdout joins stderr in the worker's log
    os.close(devnull)
