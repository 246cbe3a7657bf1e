"""Run worker processes: started detached from whoever launched them, and found again.

A run worker must outlive the daemon or webserver that started it (a deploy restarts those),
so it is double-forked into its own session and reparented to init, and, under systemd, put
in a scope of its own (a service's processes all die with it otherwise). It is identified by
host, boot and the kernel's record of when it started: a pid alone may have been reused by an
unrelated process, and a wall-clock start time moves when the clock is stepped.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HOST_TAG = "dagster-slurm/run-worker-host"
PID_TAG = "dagster-slurm/run-worker-pid"
START_TAG = "dagster-slurm/run-worker-start"
LOG_TAG = "dagster-slurm/run-worker-log"

LAUNCH_TIMEOUT_SECONDS = 120
# What tags written by version 0.1.0 (pid and wall-clock start time only) leave unknown.
_UNKNOWN_BOOT = ""
_UNKNOWN_TICKS = -1


def boot_id() -> str:
    """This boot of this machine's kernel: process start ticks count from it."""
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, start ticks since boot)`` of ``pid`` from ``/proc/<pid>/stat``, or ``None``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: fields follow the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


@dataclass(frozen=True)
class WorkerProcess:
    """Where a run worker runs: enough to tell whether it is still that same process."""

    host: str
    boot: str
    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> "WorkerProcess | None":
        """The process ``pid`` of this host, if it is alive."""
        stat = _stat(pid)
        return None if stat is None else cls(socket.gethostname(), boot_id(), pid, stat[1])

    @classmethod
    def current(cls) -> "WorkerProcess":
        worker = cls.of(os.getpid())
        assert worker is not None
        return worker

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> "WorkerProcess | None":
        """The run worker a run's tags name, if any.

        A run launched by version 0.1.0 recorded no boot and start ticks: its worker is taken
        to be the process with its pid, if any (a live worker must not get a twin).
        """
        if PID_TAG not in tags:
            return None
        boot, _, ticks = tags.get(START_TAG, f"{_UNKNOWN_BOOT}/{_UNKNOWN_TICKS}").rpartition("/")
        return cls(host=tags[HOST_TAG], boot=boot, pid=int(tags[PID_TAG]), start_ticks=int(ticks))

    def tags(self, log_path: str) -> dict[str, str]:
        """Run tags that say where this worker runs and logs."""
        return {
            HOST_TAG: self.host,
            PID_TAG: str(self.pid),
            START_TAG: f"{self.boot}/{self.start_ticks}",
            LOG_TAG: log_path,
        }

    def state(self) -> str:
        """``running``, ``gone``, or ``elsewhere`` (on another host: cannot be checked from here)."""
        if self.host != socket.gethostname():
            return "elsewhere"
        if self.boot not in (boot_id(), _UNKNOWN_BOOT):
            return "gone"  # the host rebooted
        stat = _stat(self.pid)
        if stat is None or self.start_ticks not in (stat[1], _UNKNOWN_TICKS):
            return "gone"
        if stat[0] == "Z":
            reap([self.pid])
            return "gone"
        return "running"

    def signal(self, signum: int) -> bool:
        """Send ``signum`` if this is still the same process on this host; whether it was sent."""
        if self.state() != "running":
            return False
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True


def reap(pids: Sequence[int]) -> list[int]:
    """Collect the exit status of those of ``pids`` that are this process's finished children;
    the pids still to watch.

    A detached worker is reparented to init. In a container whose init *is* the Dagster daemon
    or webserver, the worker becomes its child, and stays a zombie until it is reaped.
    """
    left = []
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue  # not our child: init reaps it
        if not done:
            left.append(pid)
    return left


def open_log(path: str) -> int:
    """Open a run worker's log for appending: 0600 from creation, never through a symlink (the
    log directory may be shared, and the log holds what the run prints)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def prune_logs(log_dir: str, retention_days: float) -> None:
    """Remove run workers' logs older than ``retention_days``."""
    cutoff = time.time() - retention_days * 86400
    for entry in os.scandir(log_dir):
        try:
            if entry.name.endswith(".log") and entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass  # another launcher pruned it first


@cache
def _scope_prefix() -> tuple[str, ...]:
    """``systemd-run --scope`` where systemd manages this host and lets us create a scope.

    A daemon started by systemd lives in its service's cgroup, and stopping or restarting the
    service kills every process in it, detached or not; a scope of its own keeps the worker out.
    """
    if not os.path.isdir("/run/systemd/system") or shutil.which("systemd-run") is None:
        return ()
    for prefix in (
        ("systemd-run", "--scope", "--quiet", "--collect"),
        ("systemd-run", "--user", "--scope", "--quiet", "--collect"),
    ):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0:
                return prefix
        except subprocess.TimeoutExpired:
            pass
    return ()


def spawn_detached(
    argv: Sequence[str], stdin: bytes, log_path: str, cwd: str | None, env: Mapping[str, str]
) -> WorkerProcess:
    """Start ``argv`` detached (own session, reparented to init), feeding it ``stdin``.

    The command must follow :func:`detach`'s protocol: read its stdin, then call ``detach``,
    which prints the detached process's pid.
    """
    log = open_log(log_path)
    try:
        process = subprocess.Popen(
            [*_scope_prefix(), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    finally:
        os.close(log)
    try:
        out, _ = process.communicate(stdin, timeout=LAUNCH_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        # It never detached: kill it, so that no worker the launcher gave up on runs the run.
        process.kill()
        process.wait()
        raise RuntimeError(
            f"the run worker did not start within {LAUNCH_TIMEOUT_SECONDS}s and was killed; its log is {log_path}"
        ) from None
    if process.returncode == 0 and out.strip().isdigit():
        worker = WorkerProcess.of(int(out))
        if worker is not None:
            return worker
        # it printed its pid and exited at once: its log says why
    with open(log_path, "rb") as f:
        tail = f.read()[-2000:].decode(errors="replace")
    raise RuntimeError(
        f"the run worker did not start (exit code {process.returncode}); its log {log_path} ends:\n{tail}"
    )


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
