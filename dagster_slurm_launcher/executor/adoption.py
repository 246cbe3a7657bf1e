"""Adoption: a run that continues earlier work takes over a step's job instead of submitting it.

A resumed run (its worker died), a retry or a re-execution finds each step's jobs by their
deterministic name among the jobs its lineage submitted. It takes over the newest one if its
outcome is still to be collected: a job still queued or running, or one that finished with an
outcome no run of the lineage recorded. A packed step's job is its pack, which no name of the
step finds: the step's claim names it (see slurm.Claim). All decisions to adopt are made here.
"""

import dataclasses
import time
from datetime import UTC, datetime, timedelta

from dagster import DagsterEventType, DagsterInstance, DagsterRun, EventLogEntry, MetadataValue

from dagster_slurm_launcher.dagster_internals import EngineEventData, StepHandlerContext
from dagster_slurm_launcher.executor.lineage import lineage_run_ids, root_run_id
from dagster_slurm_launcher.executor.relay import Relay, TrackedStep
from dagster_slurm_launcher.journal import JOURNAL_FILE, OUTCOMES, ParsedJournal, parse_records
from dagster_slurm_launcher.naming import claims_folder, is_packed_step_folder, job_name, lineage_folder, pack_job_name
from dagster_slurm_launcher.packed_worker import UNSTARTED
from dagster_slurm_launcher.run_events import SLURM_JOB_ID, SUBMITTED_BY_RUN
from dagster_slurm_launcher.slurm import JobInfo, SlurmClient, SubmittedJob
from dagster_slurm_launcher.transport.files import FileSlice, read_files


class Adoption:
    """Finds a step's earlier jobs and adopts the one whose outcome is still to be collected.

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

    def at_health_check(self, context: StepHandlerContext, step_key: str) -> bool:
        """A resumed run asks about a step its dead worker had launched: adopt its job, taking
        a failure too (the step's outcome, which the dead worker did not relay)."""
        lineage = self.lineage_jobs(context, step_key)
        if self._adopt(context, step_key, lineage, take_failures=True):
            return True
        self._not_adoptable[step_key] = lineage
        return False

    def at_launch(self, context: StepHandlerContext, step_key: str) -> tuple[bool, list[JobInfo]]:
        """Before submitting: whether a job was adopted, and the lineage's jobs of the step
        (those a new submission must not duplicate). A retry submits a failed step again."""
        if step_key in self._not_adoptable:
            return False, self._not_adoptable.pop(step_key)
        lineage = self.lineage_jobs(context, step_key) if self._continues else []
        return self._adopt(context, step_key, lineage, take_failures=False), lineage

    def after_lost_race(self, context: StepHandlerContext, step_key: str) -> bool:
        """Another worker submitted the step since the look-up: adopt that job, unless it has
        already ended without an outcome to take."""
        return self._adopt(context, step_key, self.lineage_jobs(context, step_key), take_failures=True)

    def lineage_jobs(self, context: StepHandlerContext, step_key: str) -> list[JobInfo]:
        """The step's jobs submitted by any run of this run's lineage, newest first; a pack
        that ran the step, with the step's folder as its work dir."""
        root = root_run_id(context.dagster_run)
        name = job_name(root, step_key)
        prefix = lineage_folder(self._remote_base_dir, root) + "/"
        member = self._packed_folder(root, name)
        pack = member.rsplit("/", 1)[0] if member else None
        names = [name] + ([pack_job_name(root, pack)] if pack else [])
        found = self._client.find_by_name(names, created(context.instance, root))
        jobs = [j for j in found.get(name, []) if j.work_dir and j.work_dir.startswith(prefix)]
        if pack:
            # The claim holds the step's last submission: the pack (its name and folder say
            # which, even where a submitter died before recording the pack's id) is the newest.
            packs = [j for j in found.get(names[1], []) if j.work_dir == pack]
            jobs = [dataclasses.replace(j, work_dir=member) for j in packs] + jobs
        return jobs

    def _packed_folder(self, root: str, name: str) -> str | None:
        """The step's folder in a pack, if the step's claim names a pack as its last job."""
        [read] = read_files(self._client.transport, [FileSlice(f"{claims_folder(self._remote_base_dir, root)}/{name}")])
        _, _, folder = (read.data or b"").decode("utf-8", "replace").rstrip("\n").partition(" ")
        return folder or None

    def _adopt(self, context: StepHandlerContext, step_key: str, lineage: list[JobInfo], take_failures: bool) -> bool:
        """Take over the step's newest job if its outcome is still to be collected.

        Adopted: a job still queued or running, or one that finished with an outcome no run of
        the lineage recorded (a failure only if ``take_failures``). Not adopted: no job, a job
        that died without an outcome, or one whose outcome is history (an explicit re-execution).
        """
        if not lineage:
            return False
        run = context.dagster_run
        instance = context.instance
        newest = lineage[0]
        folder = newest.work_dir
        assert folder is not None  # lineage_jobs keeps only jobs with a work dir
        journal = self._journal(folder, newest)
        outcome = next((r.entry for r in reversed(journal.records) if r.entry.dagster_event_type in OUTCOMES), None)
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
            _recorded_in_lineage(instance, run, step_key, outcome)
            or (outcome.dagster_event_type != DagsterEventType.STEP_SUCCESS and not take_failures)
        ):
            return False
        stored = frozenset(
            (e.timestamp, e.user_message) for e in instance.all_logs(run.run_id) if e.step_key == step_key
        )
        step = TrackedStep(
            step_key=step_key,
            job=SubmittedJob(newest.job_id, newest.name, newest.submit_time or created(instance, root_run_id(run))),
            folder=folder,
            already_stored=stored,
            packed=packed,
        )
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
        self._relay.poll()
        return True

    def _journal(self, folder: str, job: JobInfo) -> ParsedJournal:
        """The job's journal as far as it can be seen. For a job that ended less than the journal
        grace period ago, read until the worker's ``END`` line shows: on a caching shared
        filesystem its outcome may not be visible yet, and a step must not be run twice."""
        # squeue's record of a job that just ended has no end time: take it as recent.
        grace = self._relay.timing.journal_grace
        recently = job.end_time is None or (datetime.now(UTC) - job.end_time).total_seconds() < grace
        deadline = time.monotonic() + (grace if recently and job.job_id not in self._waited else 0.0)
        while True:
            [read] = read_files(self._client.transport, [FileSlice(f"{folder}/{JOURNAL_FILE}")])
            if not job.is_terminal:
                return parse_records(read.data or b"")
            final = time.monotonic() >= deadline
            journal = parse_records(read.data or b"", final=final)
            if final:
                self._waited.add(job.job_id)
            if journal.ended or final:
                return journal
            time.sleep(self._relay.timing.poll_interval)


def _recorded_in_lineage(instance: DagsterInstance, run: DagsterRun, step_key: str, outcome: EventLogEntry) -> bool:
    """Whether a run of ``run``'s lineage stored this journal record (the same step, event
    type and timestamp; databases keep timestamps to the microsecond)."""
    for run_id in lineage_run_ids(instance, run):
        for record in instance.get_records_for_run(run_id, of_type=outcome.dagster_event_type).records:
            entry = record.event_log_entry
            if entry.step_key == step_key and abs(entry.timestamp - outcome.timestamp) < 1e-3:
                return True
    return False


def created(instance: DagsterInstance, run_id: str) -> datetime:
    """When a run was created: no job of its lineage was submitted before."""
    record = instance.get_run_record_by_id(run_id)
    return record.create_timestamp if record else datetime.now(UTC) - timedelta(days=30)
