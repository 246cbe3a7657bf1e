"""A lineage's Slurm jobs, and removing the cluster folders of lineages that are over.

Run folders stay on the cluster after a run fails (its steps' stdout, stderr and journals are
what a user reads to see why). Both commands start from the Dagster instance (``DAGSTER_HOME``):
it knows which runs a lineage has, and whether each has ended.
"""

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from dagster_slurm_launcher.connect import Cluster
from dagster_slurm_launcher.dagster_internals import plan_step_keys
from dagster_slurm_launcher.executor.adoption import created
from dagster_slurm_launcher.executor.lineage import lineage_run_ids, root_run_id
from dagster_slurm_launcher.naming import JOB_NAME_PREFIX, job_name, lineage_folder, root_of_job_name
from dagster_slurm_launcher.run_events import SLURM_JOB_ID, SLURM_JOB_NAME, metadata_values
from dagster_slurm_launcher.slurm import JobInfo
from dagster_slurm_launcher.transport import TransportError
from dagster_slurm_launcher.transport.programs import command

# DagsterRun.is_finished's complement, as a filter: anything but these may still start jobs.
NOT_FINISHED = [
    s
    for s in DagsterRunStatus
    if s not in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
]


class UnknownRun(LookupError):
    """The instance has no run with this id."""


@dataclass(frozen=True)
class LineageJob:
    """One Slurm job of a lineage: which step it ran and which run submitted it (if recorded)."""

    step_key: str
    run_id: str | None
    info: JobInfo


def lineage_jobs(instance: DagsterInstance, cluster: Cluster, run_id: str) -> list[LineageJob]:
    """Every Slurm job that ``run_id``'s lineage submitted, oldest first.

    Jobs are found as a resumed run finds them: by their deterministic names, for every step of
    the lineage's plans (so a job whose submission no event recorded is listed too).
    """
    run = _run(instance, run_id)
    root = root_run_id(run)
    runs = [r for r in (instance.get_run_by_id(i) for i in lineage_run_ids(instance, run)) if r is not None]
    submissions = [
        (step_key, job_id, r.run_id)
        for r in runs
        for step_key, job_id in metadata_values(
            instance, r.run_id, [DagsterEventType.STEP_WORKER_STARTING], SLURM_JOB_ID
        )
    ]
    submitted_by = {job_id: run_id for _, job_id, run_id in submissions}
    # The plans name every static step; a dynamic output's mapped steps (square[3]) only show
    # in the events, as the plan holds them unresolved.
    step_keys = {key for r in runs for key in plan_step_keys(instance, r)}
    step_keys |= {step_key for step_key, _, _ in submissions if step_key}
    names = {job_name(root, key): {key} for key in step_keys}
    # Packs, by the names their steps' submissions recorded: a pack's job ran each of them.
    starting = [DagsterEventType.STEP_WORKER_STARTING]
    for r in runs:
        for step_key, name in metadata_values(instance, r.run_id, starting, SLURM_JOB_NAME):
            if step_key:
                names.setdefault(name, set()).add(step_key)
    # As adoption looks a step's jobs up: from the root run's creation (find_by_name allows for skew).
    found = cluster.client.find_by_name(list(names), created(instance, root))
    jobs = [
        LineageJob(key, submitted_by.get(info.job_id), info)
        for name, infos in found.items()
        for info in infos
        for key in sorted(names[name])
    ]
    return sorted(jobs, key=lambda j: (j.info.submit_time or datetime.max.replace(tzinfo=UTC), int(j.info.job_id)))


@dataclass(frozen=True)
class Verdict:
    """What cleanup does with one lineage folder on the cluster, and why."""

    folder: str
    remove: bool
    reason: str


def cutoff_of(older_than: timedelta) -> float:
    """The time (seconds since the epoch) a lineage must have ended before, to be removed."""
    return time.time() - older_than.total_seconds()


def plan_cleanup(instance: DagsterInstance, cluster: Cluster, cutoff: float) -> list[Verdict]:
    """A verdict for every lineage folder under the run folders' base: removed only if the
    instance knows every run of the lineage as finished, the last before ``cutoff`` (see
    :func:`cutoff_of`), and no job of the lineage is still in the controller's queue."""
    roots = _lineage_roots(cluster)
    if not roots:
        return []
    queued = queued_roots(cluster)
    # By each unfinished run's own root: a re-execution through the Python API lacks the root
    # tag that get_run_group looks for.
    unfinished = {root_run_id(r): r.run_id for r in instance.get_runs(RunsFilter(statuses=NOT_FINISHED))}
    verdicts = []
    for root in roots:
        folder = lineage_folder(cluster.remote_base_dir, root)
        verdicts.append(Verdict(folder, *_judge(instance, root, queued, unfinished, cutoff)))
    return verdicts


def queued_roots(cluster: Cluster) -> set[str]:
    """The root run ids of the lineages with a job in Slurm's queue."""
    queued = cluster.client.queued_with_prefix(f"{JOB_NAME_PREFIX}-")
    return {root_of_job_name(i.name) for i in queued if not i.is_terminal}


def remove_folders(cluster: Cluster, folders: Sequence[str], unchanged_since: float) -> set[str]:
    """Remove those of ``folders`` (lineage folders) that nothing changed in since
    ``unchanged_since`` (a run that started after the verdicts were made keeps its folder), in
    one command; the folders removed."""
    if not folders:
        return set()
    runs = f"{cluster.remote_base_dir}/runs"
    result = cluster.client.transport.run(
        command("remove_folders", runs, str(int(unchanged_since))), stdin=b"".join(f.encode() + b"\0" for f in folders)
    )
    if not result.ok:
        raise TransportError(f"could not remove run folders on the cluster: {result.stderr.strip()}")
    return {line.removeprefix("removed ") for line in result.stdout.splitlines() if line.startswith("removed ")}


def _judge(
    instance: DagsterInstance, root: str, queued: set[str], unfinished: dict[str, str], cutoff: float
) -> tuple[bool, str]:
    if instance.get_run_by_id(root) is None:
        return False, "no run of this instance started it (another deployment's?)"
    if root in unfinished:
        return False, f"run {unfinished[root]} has not finished"
    _, runs = instance.get_run_group(root)
    records = instance.get_run_records(RunsFilter(run_ids=[r.run_id for r in runs]))
    if root in queued:
        return False, "a job of the lineage is still in Slurm's queue"
    ended = max((r.end_time or r.create_timestamp.timestamp()) for r in records)
    when = datetime.fromtimestamp(ended, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if ended > cutoff:
        return False, f"its last run ended {when}, within the age limit"
    return True, f"{len(records)} run(s), all finished; the last ended {when}"


def _lineage_roots(cluster: Cluster) -> list[str]:
    runs = f"{cluster.remote_base_dir}/runs"
    result = cluster.client.transport.run(f"cd {shlex.quote(runs)} 2>/dev/null && ls -A")
    return sorted(name for name in result.stdout.split() if name)


def _run(instance: DagsterInstance, run_id: str) -> DagsterRun:
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise UnknownRun(f"the instance (DAGSTER_HOME) has no run {run_id}")
    return run
