"""What this package records in a run's events about Slurm jobs, and reads back from them.

A run's events are where a later process (the launcher terminating the run, a retry deciding
where inputs load from) learns which jobs the run submitted or adopted.
"""

from collections.abc import Iterable, Iterator, Sequence

from dagster import DagsterEventType, DagsterInstance, DagsterRun, MetadataValue

from dagster_slurm_launcher.dagster_internals import EngineEventData

SLURM_JOB_ID = "Slurm job ID"
"""Metadata key of a submission (STEP_WORKER_STARTING) and an adoption (engine event): the job."""
SUBMITTED_BY_RUN = "Submitted by run"
"""Metadata key of the engine event that records an adoption: the run whose job was adopted."""
SLURM_JOB_IDS = "Slurm job IDs"
"""Metadata key of the engine events that list a run's jobs (cancelled, or left running)."""
SLURM_JOB_NAME = "Slurm job name"
"""Metadata key of a submission: the name of the step's job (its own, or its pack's)."""
# What release 0.1 named these keys: a run it started may be resumed or retried by this one.
_EARLIER_NAMES = {SLURM_JOB_ID: "slurm_job_id", SUBMITTED_BY_RUN: "submitted_by_run"}


def metadata_values(
    instance: DagsterInstance, run_id: str, event_types: Iterable[DagsterEventType], key: str
) -> Iterator[tuple[str | None, str]]:
    """``(step key, value)`` of metadata entry ``key`` in the run's events of ``event_types``."""
    for event_type in event_types:
        for record in instance.get_records_for_run(run_id, of_type=event_type).records:
            entry = record.event_log_entry
            data = entry.dagster_event.event_specific_data if entry.dagster_event else None
            metadata = getattr(data, "metadata", None) or {}
            value = metadata.get(key) or metadata.get(_EARLIER_NAMES.get(key, key))
            if value is not None:
                yield entry.step_key, str(value.value)


def report_cancelled(
    instance: DagsterInstance, run: DagsterRun, job_ids: Sequence[str], cls: type | None = None
) -> None:
    """Record that the run's Slurm jobs ``job_ids`` were cancelled."""
    instance.report_engine_event(
        f"Cancelled Slurm jobs {', '.join(job_ids)}",
        run,
        EngineEventData(metadata={SLURM_JOB_IDS: MetadataValue.text(" ".join(job_ids))}),
        cls=cls,
    )
