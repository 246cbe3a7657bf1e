"""The step worker: runs one Dagster step on a compute node, with no access to the instance.

Run by the sbatch script as ``python -u -m dagster_slurm_launcher.worker STEP_FOLDER``. It reads
the step's arguments from ``STEP_FOLDER/step.json`` (written by the executor), executes the
step through Dagster's own step entry point against a private instance (:mod:`.step_instance`),
and writes every event that instance stores to the journal ``STEP_FOLDER/events.jsonl``.
"""

import contextlib
import os
import signal
import stat
import sys
from collections.abc import Sequence

from dagster_slurm_launcher.dagster_internals import execute_step_command_body, stop_sigterm_remapping
from dagster_slurm_launcher.journal import JOURNAL_FILE, JournalWriter, holds_outcome
from dagster_slurm_launcher.payload import PAYLOAD_FILE, PayloadFormatError, StepPayload
from dagster_slurm_launcher.step_instance import step_instance

# The journal being written, so that a worker Slurm stops still ends it (see JournalWriter.end).
_journal: JournalWriter | None = None


def _exit_without_outcome(signum: int, _frame: object) -> None:
    if _journal is not None:
        _journal.end(output_sizes())
    os._exit(128 + signum)


def output_sizes() -> tuple[int, int] | None:
    """The sizes of the job's stdout and stderr files, everything printed flushed: the relay
    reads them until it has this much (a caching filesystem may show less at first)."""
    sizes = []
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        with contextlib.suppress(Exception):  # a closed or broken stream has nothing to flush
            stream.flush()
        try:
            status = os.fstat(fd)
        except OSError:
            return None
        if not stat.S_ISREG(status.st_mode):
            return None
        sizes.append(status.st_size)
    return sizes[0], sizes[1]


def leave_sigterm_to_slurm() -> None:
    """Make SIGTERM end the worker without recording a step outcome.

    Slurm sends SIGTERM at the time limit, on scancel and on preemption; the job's end state
    (TIMEOUT, CANCELLED, PREEMPTED) then says why the step ended, and the executor fails the
    step with that reason. Dagster would instead turn SIGTERM into a step failure.
    Checkpointing before the limit uses ``--signal`` (the executor's ``signal`` option).
    """
    stop_sigterm_remapping()
    signal.signal(signal.SIGTERM, _exit_without_outcome)


def run_step(step_folder: str) -> None:
    global _journal
    journal_path = os.path.join(step_folder, JOURNAL_FILE)
    if holds_outcome(journal_path):
        # Slurm requeued a job whose step had finished (a node failure after the step, or
        # `scontrol requeue`): its outcome was relayed, and a step is computed once.
        print(f"{journal_path} already holds the step's outcome: not running it again", file=sys.stderr)
        return
    journal = _journal = JournalWriter(journal_path)
    try:
        # Inside: a step.json that cannot be read still ends the journal, so the relay need
        # not wait out the journal grace for lines that will never come.
        with open(os.path.join(step_folder, PAYLOAD_FILE)) as f:
            payload = StepPayload.from_json(f.read())
        instance, run = step_instance(
            journal,
            payload.remote_base_dir,
            payload.asset_history,
            payload.run,
            payload.dynamic_partitions,
            payload.execution_plan_snapshot,
        )
        with instance:
            for _ in execute_step_command_body(payload.args, instance, run):
                pass
    finally:
        _journal = None
        journal.end(output_sizes())
        journal.close()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dagster_slurm_launcher.worker STEP_FOLDER", file=sys.stderr)
        return 2
    leave_sigterm_to_slurm()
    try:
        run_step(argv[0])
    except PayloadFormatError as exc:
        print(exc, file=sys.stderr)  # the executor shows the job's last lines of stderr
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
