"""Why a step's Slurm job ended without the step reporting an outcome, said so a user can act."""

import signal

from dagster_slurm_launcher.executor.relay import TrackedStep
from dagster_slurm_launcher.naming import ENV_PREFIX
from dagster_slurm_launcher.packed_worker import KILL_WAIT
from dagster_slurm_launcher.slurm import JobState
from dagster_slurm_launcher.transport import Transport, TransportError
from dagster_slurm_launcher.transport.files import FileSlice, read_files

_RAISE = "Raise `{option}` in the executor config or the step's dagster-slurm/sbatch tag."


def explain_missing_outcome(step: TrackedStep, transport: Transport, journal_grace: float) -> str:
    """Why the step's job ended without the step reporting an outcome, and what to change."""
    info = step.info
    assert info is not None
    job = f"Slurm job {step.job.job_id}"
    if info.state == JobState.TIMEOUT:
        limit = step.options.get("time") or info.time_limit
        return f"{job} reached its time limit ({limit}) and was killed. {_RAISE.format(option='time')}"
    if info.state == JobState.CANCELLED:
        return f"{job} was cancelled{' ' + info.reason if info.reason else ''} before the step finished."
    if info.state == JobState.NODE_FAIL:
        return f"{job} was lost when node {info.node_list} failed."
    stderr = _last_lines_of_stderr(step, transport)
    # With JobAcctGatherParams=OverMemoryKill a job killed for memory ends FAILED (signal 9),
    # not OUT_OF_MEMORY; slurmstepd says why in the job's stderr.
    if info.state == JobState.OUT_OF_MEMORY or "exceeded memory limit" in stderr or "oom-kill" in stderr:
        requested = step.options.get("mem") or _tres(info.req_tres, "mem")
        return (
            f"{job} ran out of memory (requested {requested}; peak {_mib(info.max_rss_bytes)}) and was killed. "
            + _RAISE.format(option="mem")
        )
    code = ":".join(map(str, info.exit_code)) if info.exit_code else "unknown"
    return (
        f"{job} ended {info.state.value} (exit code {code}) without reporting the step's outcome: the step "
        f"worker did not start or crashed, or the shared filesystem did not show its journal within "
        f"{journal_grace:.0f}s ({ENV_PREFIX}JOURNAL_GRACE; on NFS it must exceed acdirmax). "
        f"Last lines of {step.folder}/stderr:\n{stderr or '(empty)'}"
    )


def explain_packed_end(step: TrackedStep, transport: Transport) -> str:
    """Why a packed step ended without its outcome while its pack may go on, from the cause
    the packed worker recorded (see packed_worker)."""
    kind, _, value = (step.end_cause or "").partition("=")
    where = f"in Slurm job {step.job.job_id} (a pack of steps; the others go on)"
    if kind == "memory":
        share = step.options.get("mem") or "unknown"
        return (
            f"The step used {_mib(int(value))} of memory, more than its share of the pack's allocation ({share} "
            f"per step), and was killed {where}. Raise `mem` in the executor config or the step's "
            "dagster-slurm/sbatch tag, or tag the step dagster-slurm/pack: 'false'."
        )
    if kind == "time":
        limit = step.options.get("time")
        return (
            f"The step ran longer than its time limit{f' ({limit})' if limit else ''} and was stopped after {value} s "
            f"(SIGTERM, then SIGKILL {KILL_WAIT:.0f} s later if it went on) {where}. Raise `time` in the executor "
            "config or the step's dagster-slurm/sbatch tag."
        )
    code = int(value) if value.lstrip("-").isdigit() else 0
    if kind == "exit" and code > 128:  # the one-step worker leaves on a signal with 128 + its number
        kind, code = "signal", code - 128
    if kind == "signal":
        name = _signal_name(code)
        fix = ""
        if code == signal.SIGTERM:
            cause = "was stopped by SIGTERM (the allocation's time limit, scancel or preemption)"
            fix = (
                " If it was the time limit: raise the executor's pack.time (or the steps' time) or lower "
                "pack.max_steps; `signal: B:USR1@<seconds>` stops a pack starting steps in time."
            )
        elif code == signal.SIGKILL:
            cause = "was killed by SIGKILL (the kernel's out-of-memory killer, or someone's kill -9)"
            fix = " If it was memory: raise `mem` (processes the step starts are not watched by the pack)."
        else:
            cause = f"crashed with {name} (signal {code})"
        summary = f"The step's process {cause} {where}.{fix}"
    else:
        summary = f"The step's process exited with status {code} without reporting the step's outcome {where}."
    stderr = _last_lines_of_stderr(step, transport)
    return f"{summary} Last lines of {step.folder}/stderr:\n{stderr or '(empty)'}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_lines_of_stderr(step: TrackedStep, transport: Transport) -> str:
    try:
        [read] = read_files(transport, [FileSlice(f"{step.folder}/stderr", limit=4096)])
        return "\n".join((read.data or b"").decode("utf-8", "replace").splitlines()[-20:])
    except TransportError as exc:
        return f"(could not be read: {exc})"


def _tres(tres: str | None, key: str) -> str:
    for item in (tres or "").split(","):
        name, _, value = item.partition("=")
        if name == key:
            return value
    return "unknown"


def _mib(size: int | None) -> str:
    return "unknown" if size is None else f"{size / 2**20:.0f} MiB"
