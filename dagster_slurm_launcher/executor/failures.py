"""Why a step's Slurm job ended without the step reporting an outcome, said so a user can act."""

from dagster_slurm_launcher.executor.relay import TrackedStep
from dagster_slurm_launcher.naming import ENV_PREFIX
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
    try:
        [read] = read_files(transport, [FileSlice(f"{step.folder}/stderr", limit=4096)])
        stderr = "\n".join((read.data or b"").decode("utf-8", "replace").splitlines()[-20:])
    except TransportError as exc:
        stderr = f"(could not be read: {exc})"
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


def _tres(tres: str | None, key: str) -> str:
    for item in (tres or "").split(","):
        name, _, value = item.partition("=")
        if name == key:
            return value
    return "unknown"


def _mib(size: int | None) -> str:
    return "unknown" if size is None else f"{size / 2**20:.0f} MiB"
