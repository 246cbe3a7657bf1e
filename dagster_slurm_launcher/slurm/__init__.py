"""The Slurm client: submit jobs, poll them in batches, find them by name, cancel them."""

from dagster_slurm_launcher.slurm.client import (
    AlreadySubmitted,
    Claim,
    JobRequest,
    PackMember,
    SlurmClient,
    SlurmError,
    SubmissionUncertain,
    sbatch_arguments,
    validate_job_name,
)
from dagster_slurm_launcher.slurm.job import JobInfo, JobState, SubmittedJob

__all__ = [
    "AlreadySubmitted",
    "Claim",
    "JobInfo",
    "JobRequest",
    "JobState",
    "PackMember",
    "SlurmClient",
    "SlurmError",
    "SubmissionUncertain",
    "SubmittedJob",
    "sbatch_arguments",
    "validate_job_name",
]
