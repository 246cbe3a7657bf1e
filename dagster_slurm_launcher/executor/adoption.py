"""Adoption: a run that continues earlier work takes over a step's job instead of submitting it.

A resumed run (its worker died), a retry or a re-execution finds each step's jobs by their
deterministic name among the jobs its lineage submitted. It takes over the newest one if its
outcome is still to be collected: a job still queued or running, or one that finished with an
outcome no run of the lineage recorded. A packed step's job is its pack, which no name of the
step finds: the step's claim names it (see slurm.Claim). All decisions to adopt are made here.
"""

import time
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property

from dagster import DagsterEventType, DagsterInstance, DagsterRun, EventLogEntry, MetadataValue

from dagster_slurm_launcher.dagster_internals import EngineEventData, StepHandlerContext, plan_step_keys
from dagster_slurm_launcher.executor.lineage import lineage_run_ids, root_run_id
from dagster_slurm_launcher.executor.relay import Relay, TrackedStep
from dagster_slurm_launcher.journal import JOURNAL_FILE, ParsedJournal, last_outcome, parse_records
from dagster_slurm_launcher.naming import claims_folder, is_packed_step_folder, job_name, lineage_folder, pack_job_name
from dagster_slurm_launcher.packed_worker import UNSTARTED
from dagster_slurm_launcher.run_events import SLURM_JOB_ID, SUBMITTED_BY_RUN
from dagster_slurm_launcher.slurm import JobInfo, SlurmClient, SubmittedJob
from dagster_slurm_launcher.transport.files import FileSlice, read_files


@dataclass(frozen=True)
class _Found:
    """What a look-up found of a step's earlier work."""

    jobs: list[JobInfo]
    """The step's jobs submitted by any run of the lineage, newest first (see lineage_jobs)."""
    journal: ParsedJournal | None
    """The newest job's journal, as far as it can be seen (``None``: no job)."""
    outcome: EventLogEntry | None
    """The step's outcome in that journal."""
    outcome_recorded: bool
    """A run of the lineage stored the outcome that journal holds."""
    stored: "_StoredEvents"
    """The events this run already stored, read when a step of the look-up is adopted."""


class _StoredEvents:
    """The events a run already stored, by step (timestamp, message): the relay does not store
    them again. Read once, and only if a step is adopted (a retry of a long chain looks up a
    step each pass)."""

    def __init__(self, instance: DagsterInstance, run_id: str) -> None:
        self._instance = instance
        self._run_id = run_id

    @cached_property
    def _by_step(self) -> dict[str | None, set[tuple[float, str]]]:
        by_step: dict[str | None, set[tuple[float, str]]] = {}
        for entry in self._instance.all_logs(self._run_id):
            by_step.setdefault(entry.step_key, set()).add((entry.timestamp, entry.user_message))
        return by_step

    def of(self, step_key: str) -> frozenset[tuple[float, str]]:
        return frozenset(self._by_step.get(step_key, ()))


class Adoption:
    """Finds a step's earlier jobs and adopts the one whose outcome is still to be collected.

    Steps are looked up together (one read of their claims, one ``squeue`` and one ``sacct``
    per 500 names, one read of their journals): a resumed or retried run of a 1,000-step
    fan-out asks about all of them at once.

    Args:
        continues: the run continues earlier work (resumed, retried, re-executed); a first run
            has no earlier jobs to look for when it launches a step.
    """

    def __init__(self, client: SlurmClient, relay: Relay, remote_base_dir: str, continues: bool) -> None:
        self._client = client
        self._relay = relay
        self._remote_base_dir = remote_base_dir
        self._continues = continues
        # Steps a health check found no job to adopt for, with the jobs it looked at: the
        # executor launches them next, and need not look again.
        self._not_adoptable: dict[str, list[JobInfo]] = {}
        # Ended jobs whose journals were waited on for the grace period: a pack's other steps
        # need not wait again.
        self._waited: set[str] = set()
        # A resumed run's in-flight steps, looked up together at its first health check.
        self._in_flight: dict[str, _Found] | None = None

    def at_health_check(self, context: StepHandlerContext, step_key: str) -> bool:
        """A resumed run asks about a step its dead worker had launched: adopt its job, taking
        a failure too (the step's outcome, which the dead worker did not relay).

        Dagster asks about each in-flight step in turn (``StepDelegatingExecutor.execute``,
        ``resume_from_failure``); the first question looks them all up.
        """
        if self._in_flight is None:
            self._in_flight = self._look_up(
                context, in_flight_steps(context.instance, context.dagster_run) | {step_key}
            )
        found = self._in_flight.pop(step_key, None) or self._look_up(context, {step_key})[step_key]
        if self._adopt(context, step_key, found, take_failures=True):
            return True
        self._not_adoptable[step_key] = found.jobs
        return False

    def at_launch(self, context: StepHandlerContext, step_keys: Sequence[str]) -> dict[str, list[JobInfo] | None]:
        """Before submitting ``step_keys`` (of ``context``'s run): for each, ``None`` if a job
        was adopted, else the lineage's jobs of the step (those a new submission must not
        duplicate). A retry submits a failed step again."""
        unknown = [k for k in step_keys if k not in self._not_adoptable] if self._continues else []
        found = self._look_up(context, set(unknown)) if unknown else {}
        lineages: dict[str, list[JobInfo] | None] = {}
        for key in step_keys:
            if key in self._not_adoptable:
                lineages[key] = self._not_adoptable.pop(key)
            elif key in found:
                lineages[key] = None if self._adopt(context, key, found[key], take_failures=False) else found[key].jobs
            else:
                lineages[key] = []
        return lineages

    def after_lost_race(self, context: StepHandlerContext, step_key: str) -> bool:
        """Another worker submitted the step since the look-up: adopt that job, unless it has
        already ended without an outcome to take."""
        return self._adopt(context, step_key, self._look_up(context, {step_key})[step_key], take_failures=True)

    def lineage_jobs(self, context: StepHandlerContext, step_keys: Iterable[str]) -> dict[str, list[JobInfo]]:
        """Each step's jobs submitted by any run of this run's lineage, newest first; a pack
        that ran the step, with the step's folder as its work dir."""
        root = root_run_id(context.dagster_run)
        names = {key: job_name(root, key) for key in step_keys}
        claims = claims_folder(self._remote_base_dir, root)
        reads = read_files(self._client.transport, [FileSlice(f"{claims}/{name}") for name in names.values()])
        # A packed step's claim names its folder in the pack (see slurm.Claim).
        members = {
            key: folder
            for key, read in zip(names, reads, strict=True)
            if (folder := (read.data or b"").decode("utf-8", "replace").rstrip("\n").partition(" ")[2])
        }
        packs = {key: folder.rsplit("/", 1)[0] for key, folder in members.items()}
        pack_names = {key: pack_job_name(root, pack) for key, pack in packs.items()}
        found = self._client.find_by_name([*names.values(), *pack_names.values()], created(context.instance, root))
        prefix = lineage_folder(self._remote_base_dir, root) + "/"
        lineages = {}
        for key, name in names.items():
            jobs = [j for j in found.get(name, []) if j.work_dir and j.work_dir.startswith(prefix)]
            if key in packs:
                # The claim holds the step's last submission: the pack (its name and folder say
                # which, even where a submitter died before recording the pack's id) is the newest.
                in_pack = [j for j in found.get(pack_names[key], []) if j.work_dir == packs[key]]
                jobs = [replace(j, work_dir=members[key]) for j in in_pack] + jobs
            lineages[key] = jobs
        return lineages

    def _look_up(self, context: StepHandlerContext, step_keys: AbstractSet[str]) -> dict[str, _Found]:
        """What each step's earlier jobs left: their newest job's journal and whether its outcome
        was stored, in a few commands and queries for all of them."""
        lineages = self.lineage_jobs(context, sorted(step_keys))
        journals = self._journals({key: jobs[0] for key, jobs in lineages.items() if jobs})
        run, instance = context.dagster_run, context.instance
        outcomes = {key: outcome for key, journal in journals.items() if (outcome := last_outcome(journal.records))}
        recorded = _recorded_in_lineage(instance, run, outcomes)
        stored = _StoredEvents(instance, run.run_id)
        return {
            key: _Found(jobs, journals.get(key), outcomes.get(key), key in recorded, stored)
            for key, jobs in lineages.items()
        }

    def _adopt(self, context: StepHandlerContext, step_key: str, found: _Found, take_failures: bool) -> bool:
        """Take over the step's newest job if its outcome is still to be collected.

        Adopted: a job still queued or running, or one that finished with an outcome no run of
        the lineage recorded (a failure only if ``take_failures``). Not adopted: no job, a job
        that died without an outcome, or one whose outcome is history (an explicit re-execution).
        """
        if not found.jobs or found.journal is None:
            return False
        run = context.dagster_run
        instance = context.instance
        newest, journal, outcome = found.jobs[0], found.journal, found.outcome
        folder = newest.work_dir
        assert folder is not None  # lineage_jobs keeps only jobs with a work dir
        # A packed step ends before its pack; a resumed run takes its end (the health check
        # says why). A step its pack never started (and never will) has no job to adopt.
        packed = is_packed_step_folder(folder)
        unstarted = packed and (
            (journal.ended and journal.end_cause == UNSTARTED)
            or (newest.is_terminal and not journal.records and not journal.ended)
        )
        if unstarted:
            return False
        if outcome is None and (newest.is_terminal or (packed and journal.ended)) and not (packed and take_failures):
            return False
        if outcome is not None and (
            found.outcome_recorded
            or (outcome.dagster_event_type != DagsterEventType.STEP_SUCCESS and not take_failures)
        ):
            return False
        step = TrackedStep(
            step_key=step_key,
            job=SubmittedJob(newest.job_id, newest.name, newest.submit_time or created(instance, root_run_id(run))),
            folder=folder,
            already_stored=found.stored.of(step_key),
            packed=packed,
        )
        # The relay reads the job's state and journal at its next poll; the executor's health
        # checks answer from them (a step adopted one at a time would cost a poll each).
        self._relay.track(step)
        instance.report_engine_event(
            f"Adopted Slurm job {newest.job_id} ({newest.state.value}) for step {step_key}, "
            f"submitted by run {step.source_run_id}",
            run,
            EngineEventData(
                metadata={
                    SLURM_JOB_ID: MetadataValue.text(newest.job_id),
                    SUBMITTED_BY_RUN: MetadataValue.text(step.source_run_id),
                }
            ),
            step_key=step_key,
        )
        return True

    def _journals(self, newest: Mapping[str, JobInfo]) -> dict[str, ParsedJournal]:
        """Each step's newest job's journal as far as it can be seen, all read in one command
        per round. For a job that ended less than the journal grace period ago, read until the
        worker's ``END`` line shows: on a caching shared filesystem its outcome may not be
        visible yet, and a step must not be run twice."""
        grace = self._relay.timing.journal_grace
        now, started = datetime.now(UTC), time.monotonic()
        deadlines = {}
        for key, job in newest.items():
            # squeue's record of a job that just ended has no end time: take it as recent.
            recently = job.end_time is None or (now - job.end_time).total_seconds() < grace
            deadlines[key] = started + (grace if recently and job.job_id not in self._waited else 0.0)
        journals: dict[str, ParsedJournal] = {}
        waiting = dict(newest)
        while waiting:
            keys = list(waiting)
            reads = read_files(
                self._client.transport, [FileSlice(f"{waiting[k].work_dir}/{JOURNAL_FILE}") for k in keys]
            )
            for key, read in zip(keys, reads, strict=True):
                job = waiting[key]
                if not job.is_terminal:
                    journals[key] = parse_records(read.data or b"")
                    continue
                final = time.monotonic() >= deadlines[key]
                journal = parse_records(read.data or b"", final=final)
                if final:
                    self._waited.add(job.job_id)
                if journal.ended or final:
                    journals[key] = journal
            waiting = {key: job for key, job in waiting.items() if key not in journals}
            if waiting:
                time.sleep(self._relay.timing.poll_interval)
        return journals


def in_flight_steps(instance: DagsterInstance, run: DagsterRun) -> set[str]:
    """The steps a resumed run may ask about: those of its plan (and any it launched, mapped
    ones included) without an outcome in it. ``ActiveExecution.rebuild_from_events`` asks
    about every step ready to run, launched by the dead worker or not."""
    launched, ended = set(plan_step_keys(instance, run)), set()
    for event_type, keys in (
        (DagsterEventType.STEP_WORKER_STARTING, launched),
        (DagsterEventType.STEP_SUCCESS, ended),
        (DagsterEventType.STEP_FAILURE, ended),
    ):
        records = instance.get_records_for_run(run.run_id, of_type=event_type).records
        keys.update(r.event_log_entry.step_key for r in records)
    return {key for key in launched - ended if key is not None}


def _recorded_in_lineage(instance: DagsterInstance, run: DagsterRun, outcomes: Mapping[str, EventLogEntry]) -> set[str]:
    """The steps whose journal ``outcomes`` a run of ``run``'s lineage stored (the same step,
    event type and timestamp; databases keep timestamps to the microsecond)."""
    recorded: set[str] = set()
    for event_type in {outcome.dagster_event_type for outcome in outcomes.values()}:
        for run_id in lineage_run_ids(instance, run):
            for record in instance.get_records_for_run(run_id, of_type=event_type).records:
                entry = record.event_log_entry
                outcome = outcomes.get(entry.step_key or "")
                if (
                    outcome is not None
                    and outcome.dagster_event_type == event_type
                    and abs(entry.timestamp - outcome.timestamp) < 1e-3
                ):
                    recorded.add(entry.step_key)
    return recorded


def created(instance: DagsterInstance, run_id: str) -> datetime:
    """When a run was created: no job of its lineage was submitted before."""
    record = instance.get_run_record_by_id(run_id)
    return record.create_timestamp if record else datetime.now(UTC) - timedelta(days=30)
