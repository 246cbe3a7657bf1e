"""The packed worker: runs the steps of a pack, one Slurm allocation, each in a forked process.

Run by a pack's batch script as ``python -u -m dagster_slurm_launcher.packed_worker PACK_FOLDER``.
``PACK_FOLDER/pack.json`` (written by the executor) names the steps' folders, how many steps run
at once, and each step's memory and time. Starting Python and Dagster, and loading the code
location, cost more than a small step: this process does them once, then forks one child per
step from that warm state (as Dagster's forkserver does). A child is the one-step worker
(:mod:`.worker`) with its own folder (its journal, stdout and stderr) and a process group of its
own: what a step starts and leaves running ends with it, as it would with a job of its own.

A step that ends without recording its outcome (a crash, a signal, more memory than its share,
longer than its time) gets an ``END`` line naming why, so the executor fails that step alone, at
once. On SIGTERM or SIGUSR1 (the time limit, ``scancel``, ``--signal=B:USR1@...``) no step
starts any more, and each step not started gets ``END - - unstarted``: the executor submits it
again (so does a step stopped before it journaled anything, and every step not started when
this worker fails). A pack whose worker is killed outright leaves its unstarted steps' journals
empty: the executor submits those again once the pack has ended (packs are never requeued). A
step whose journal is not empty is never started here.
"""

import contextlib
import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from dagster_slurm_launcher.journal import JOURNAL_FILE, JournalWriter, has_outcome, read_records

SPEC_FILE = "pack.json"
UNSTARTED = "unstarted"
# Seconds between looks at the running steps' memory and time.
WATCH_INTERVAL = 0.25
# Seconds a step past its time has between SIGTERM and SIGKILL. The step worker leaves at once on
# SIGTERM; this is for user code that catches SIGTERM itself (Slurm's KillWait is its like).
KILL_WAIT = 10.0
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGUSR1, signal.SIGINT}
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class _Child:
    folder: str
    started: float
    peak: int = 0
    killed_for_memory: bool = False
    stopped_for_time: float | None = None
    """When it was sent SIGTERM for running past its time."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dagster_slurm_launcher.packed_worker PACK_FOLDER", file=sys.stderr)
        return 2
    pack = argv[0]
    with open(os.path.join(pack, SPEC_FILE)) as f:
        spec = json.load(f)
    steps = [os.path.join(pack, name) for name in spec["steps"]]
    slots = max(1, int(spec["slots"]))
    memory = spec.get("memory_per_step")
    # The step's own limit: the pack's is the sum of its rounds' (or pack.time), so a step
    # that hangs would hold its slot, and the steps waiting for it, until the pack's ended.
    time_limit = spec.get("time_per_step")
    # Signals are taken one at a time in the loop below, never in the middle of starting a step.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, *_STOP_SIGNALS})
    pending = [step for step in steps if _untouched(step)]
    running: dict[int, _Child] = {}
    try:
        _warm(steps)
        stopping = False
        while pending or running:
            # A stop that came in while steps ran or the code loaded: no step starts after it.
            stopping = _stop_received(0, running) or stopping
            while pending and not stopping and len(running) < slots:
                step = pending.pop(0)
                running[_start(step)] = _Child(step, time.monotonic())
                stopping = _stop_received(0, running)
            if stopping and pending:
                for step in pending:
                    _end(step, UNSTARTED)
                pending = []
            stopping = _stop_received(WATCH_INTERVAL, running) or stopping
            _reap(running, stopping)
            if memory:
                _watch_memory(running, int(memory))
            if time_limit:
                _watch_time(running, float(time_limit))
    finally:
        # This worker failed: the steps it never started are the executor's to submit again,
        # and those it started end with it, as they would with a job of their own.
        for step in pending:
            with contextlib.suppress(OSError):
                _end(step, UNSTARTED)
        for pid in running:
            _kill(pid, signal.SIGKILL)
    return 0


def _stop_received(timeout: float, running: dict[int, _Child]) -> bool:
    """Wait up to ``timeout`` for a signal; whether it was one that stops the pack.

    SIGTERM and SIGINT (the time limit, ``scancel``) are passed on to the running steps: Slurm
    signals every process of a job it tracks by cgroup or process tree, but only the worker's
    process group where it tracks by group (proctrack/pgid), and each step has a group of its own.
    SIGUSR1 (``--signal=B:USR1@...``) lets the running steps finish.
    """
    received = signal.sigtimedwait({signal.SIGCHLD, *_STOP_SIGNALS}, timeout)
    if received is not None and received.si_signo in _STOP_SIGNALS:
        print(f"received {signal.Signals(received.si_signo).name}: starting no more steps", file=sys.stderr)
        if received.si_signo != signal.SIGUSR1:
            for pid in running:
                _kill(pid, signal.SIGTERM)
        return True
    return False


def _warm(steps: list[str]) -> None:
    """Import what every step needs and load the code location, before the first fork."""
    from dagster_slurm_launcher import worker  # noqa: F401  (Dagster, the step instance)
    from dagster_slurm_launcher.dagster_internals import recon_job_from_origin
    from dagster_slurm_launcher.payload import PAYLOAD_FILE, StepPayload

    try:
        with open(os.path.join(steps[0], PAYLOAD_FILE)) as f:
            payload = StepPayload.from_json(f.read())
        recon_job_from_origin(payload.args.job_origin).get_definition()
    except Exception:
        # Each step loads the code again and records its own failure, in its own journal.
        print("could not load the code location before the steps:", file=sys.stderr)
        traceback.print_exc()
    # Dagster's filesystem IO manager (the default one) imports upath's core on first use: a
    # third of a trivial step's CPU in a fork, paid once here instead.
    with contextlib.suppress(ImportError):
        import upath.core  # noqa: F401
    if threading.active_count() > 1:
        # A fork copies one thread: a lock another thread held stays taken in every step.
        print(
            f"loading the code location started {threading.active_count() - 1} thread(s); a step that needs "
            "what they hold may hang: tag such steps dagster-slurm/pack: 'false'",
            file=sys.stderr,
        )
    # Objects of the warm state stay out of the children's collections: fewer pages copied.
    gc.freeze()


def _untouched(step: str) -> bool:
    try:
        return os.stat(os.path.join(step, JOURNAL_FILE)).st_size == 0
    except FileNotFoundError:
        return True


def _start(step: str) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        # Set in both, so that the group exists whichever runs first: a kill for time or
        # memory reaches what the step started too.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        return pid
    code = 1
    try:
        os.setpgid(0, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(os.path.join(step, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), fd)
        from dagster_slurm_launcher import worker

        code = worker.main([step])
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream: nothing more to write
                stream.flush()
        os._exit(code)


def _reap(running: dict[int, _Child], stopping: bool) -> None:
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        child = running.pop(pid, None)
        if child is None:
            continue
        # What the step started and left running ends with it, as with a job of its own (the
        # group's id stays taken while any of its processes lives: no other process has it).
        _kill(pid, signal.SIGKILL)
        if child.killed_for_memory:
            cause = f"memory={child.peak}"
        elif child.stopped_for_time is not None:
            cause = f"time={child.stopped_for_time - child.started:.0f}"
        elif os.WIFSIGNALED(status):
            cause = f"signal={os.WTERMSIG(status)}"
        else:
            cause = f"exit={os.waitstatus_to_exitcode(status)}"
        records = read_records(os.path.join(child.folder, JOURNAL_FILE))
        stopped_here = child.killed_for_memory or child.stopped_for_time is not None
        if stopping and not records and not stopped_here:
            # Stopped before its step journaled anything: no user code ran (STEP_START is the
            # first record), so the step is as good as never started.
            _end(child.folder, UNSTARTED)
        elif not has_outcome(records):
            _end(child.folder, cause)


def _end(step: str, cause: str) -> None:
    """Append the step's last journal line: it ended (or never started) without its outcome."""
    sizes = None
    with contextlib.suppress(OSError):
        sizes = (os.stat(os.path.join(step, "stdout")).st_size, os.stat(os.path.join(step, "stderr")).st_size)
    journal = JournalWriter(os.path.join(step, JOURNAL_FILE))
    try:
        journal.end(sizes, cause)
    finally:
        journal.close()


def _watch_memory(running: dict[int, _Child], limit: int) -> None:
    """Kill a step whose resident memory exceeds its share, before the allocation's limit
    (Slurm's, or the kernel's) ends every step of the pack."""
    for pid, child in running.items():
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss = int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
        child.peak = max(child.peak, rss)
        if rss > limit and not child.killed_for_memory:
            child.killed_for_memory = True
            _kill(pid, signal.SIGKILL)


def _watch_time(running: dict[int, _Child], limit: float) -> None:
    """Stop a step that ran past its time as Slurm stops a job: SIGTERM (the step worker leaves
    without an outcome), then SIGKILL if its process is still there after KILL_WAIT."""
    now = time.monotonic()
    for pid, child in running.items():
        if child.stopped_for_time is None and now - child.started > limit:
            child.stopped_for_time = now
            _kill(pid, signal.SIGTERM)
        elif child.stopped_for_time is not None and now - child.stopped_for_time > KILL_WAIT:
            _kill(pid, signal.SIGKILL)


def _kill(pid: int, signum: int) -> None:
    """Signal a step's process group: the step and the processes it started."""
    with contextlib.suppress(ProcessLookupError):  # the step's process was its group's last
        os.killpg(pid, signum)


if __name__ == "__main__":
    sys.exit(main())
