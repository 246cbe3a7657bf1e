"""The packed worker: runs the steps of a pack, one Slurm allocation, each in a forked process.

Run by a pack's batch script as ``python -u -m dagster_slurm_launcher.packed_worker PACK_FOLDER``.
``PACK_FOLDER/pack.json`` (written by the executor) names the steps' folders, how many steps run
at once and each step's memory. Starting Python and Dagster, and loading the code location,
cost more than a small step: this process does them once, then forks one child per step from
that warm state (as Dagster's forkserver does). A child is the one-step worker
(:mod:`.worker`) with its own folder: its journal, stdout and stderr.

A step that ends without recording its outcome (a crash, a signal, more memory than its share)
gets an ``END`` line naming why, so the executor fails that step alone, at once. On SIGTERM or
SIGUSR1 (the time limit, ``scancel``, ``--signal=B:USR1@...``) no step starts any more, and each
step not started gets ``END - - unstarted``: the executor submits it again. A step whose
journal is not empty is never started (a pack that Slurm requeues does not run a step twice).
"""

import contextlib
import gc
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from dagster_slurm_launcher.journal import JOURNAL_FILE, JournalWriter, holds_outcome

SPEC_FILE = "pack.json"
UNSTARTED = "unstarted"
# Seconds between looks at the running steps' memory.
WATCH_INTERVAL = 0.25
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGUSR1, signal.SIGINT}
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class _Child:
    folder: str
    peak: int = 0
    killed_for_memory: bool = False


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
    # Signals are taken one at a time in the loop below, never in the middle of starting a step.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, *_STOP_SIGNALS})
    _warm(steps)
    pending = [step for step in steps if _untouched(step)]
    running: dict[int, _Child] = {}
    stopping = False
    while pending or running:
        while pending and not stopping and len(running) < slots:
            step = pending.pop(0)
            running[_start(step)] = _Child(step)
        if stopping and pending:
            for step in pending:
                _end(step, UNSTARTED)
            pending = []
        received = signal.sigtimedwait({signal.SIGCHLD, *_STOP_SIGNALS}, WATCH_INTERVAL)
        if received is not None and received.si_signo in _STOP_SIGNALS:
            print(f"received {signal.Signals(received.si_signo).name}: starting no more steps", file=sys.stderr)
            stopping = True
        _reap(running)
        if memory:
            _watch_memory(running, int(memory))
    return 0


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
        return pid
    code = 1
    try:
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


def _reap(running: dict[int, _Child]) -> None:
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
        if child.killed_for_memory:
            cause = f"memory={child.peak}"
        elif os.WIFSIGNALED(status):
            cause = f"signal={os.WTERMSIG(status)}"
        else:
            cause = f"exit={os.waitstatus_to_exitcode(status)}"
        if not holds_outcome(os.path.join(child.folder, JOURNAL_FILE)):
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
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
