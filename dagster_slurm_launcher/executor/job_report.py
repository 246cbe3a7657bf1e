"""How a step's Slurm job is described in the run's events, in the words a user reads in the UI.

The UI shows an event's message in the run's log, and its metadata as a table of labels and
values; both say the same things with the same labels across the submission, the job's state
changes and its end.
"""

from collections.abc import Mapping
from datetime import timedelta

from dagster import DagsterEventType, MetadataValue

from dagster_slurm_launcher.run_events import SLURM_JOB_ID, SLURM_JOB_NAME
from dagster_slurm_launcher.slurm import JobInfo, JobState, SubmittedJob
from dagster_slurm_launcher.slurm.client import OptionValue, sbatch_arguments

# sacct's Elapsed is whole seconds while TotalCPU is not: below this, CPU efficiency is noise
# (a one-second job shows 150%).
MIN_SECONDS_FOR_EFFICIENCY = 30.0
# The executor's own sbatch options: the step folder says where they point.
FOLDER_OPTIONS = frozenset({"output", "error", "chdir"})

STATE = "Slurm state"
EXIT_CODE = "Exit code"


def submission(
    job: SubmittedJob, options: Mapping[str, OptionValue], folder: str, pack_size: int = 1
) -> tuple[str, dict]:
    """The message and metadata of a step's submission (``pack_size`` steps share its job)."""
    requested = sbatch_arguments({k: v for k, v in options.items() if k not in FOLDER_OPTIONS})
    what = "as Slurm job" if pack_size == 1 else f"in a pack of {pack_size} steps, Slurm job"
    message = f"Submitted {what} {job.job_id} ({job.name}) with {' '.join(requested) or 'no sbatch options'}."
    metadata = {
        SLURM_JOB_ID: MetadataValue.text(job.job_id),
        SLURM_JOB_NAME: MetadataValue.text(job.name),
        "Step folder": MetadataValue.path(folder),
        "sbatch options": MetadataValue.text(" ".join(requested)),
    }
    return message, metadata


def ended(job_id: str, info: JobInfo, outcome: DagsterEventType | None) -> tuple[str, dict]:
    """The message and metadata of a step's job that has ended, with its accounting."""
    state = info.state.value + (f" {info.reason}" if info.reason else "")
    code = ":".join(map(str, info.exit_code)) if info.exit_code else "unknown"
    if info.succeeded and outcome == DagsterEventType.STEP_FAILURE:
        message = f"Slurm job {job_id} ended normally; the step failed in the op's code (see the step's failure)."
    elif info.succeeded:
        message = f"Slurm job {job_id} ended normally."
    else:
        message = f"Slurm job {job_id} ended {state} (exit code {code})."
    metadata = {
        SLURM_JOB_ID: MetadataValue.text(job_id),
        STATE: MetadataValue.text(state),
        EXIT_CODE: MetadataValue.text(code),
    }
    if info.node_list:
        metadata["Node"] = MetadataValue.text(info.node_list)
    if info.elapsed is not None:
        metadata["Elapsed"] = MetadataValue.text(_duration(info.elapsed))
    if info.max_rss_bytes is not None:
        metadata["Max RSS"] = MetadataValue.text(f"{info.max_rss_bytes / 2**20:.1f} MiB")
    efficiency = info.cpu_efficiency
    if efficiency is not None and info.elapsed and info.elapsed.total_seconds() >= MIN_SECONDS_FOR_EFFICIENCY:
        metadata["CPU efficiency"] = MetadataValue.text(f"{efficiency:.0%} of {info.alloc_cpus} CPUs")
    return message, metadata


def waiting_or_running(job_id: str, info: JobInfo) -> tuple[str, dict]:
    """The message and metadata of a job's state while it waits or runs."""
    if info.reason and info.state == JobState.PENDING:
        summary = f"PENDING ({info.reason})"
    elif info.state == JobState.RUNNING:
        summary = f"RUNNING on {info.node_list}"
    else:
        summary = info.state.value
    metadata = {SLURM_JOB_ID: MetadataValue.text(job_id), STATE: MetadataValue.text(summary)}
    if info.node_list and info.state == JobState.RUNNING:
        metadata["Node"] = MetadataValue.text(info.node_list)
    return f"Slurm job {job_id} is {summary}", metadata


def _duration(elapsed: timedelta) -> str:
    seconds = int(elapsed.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
