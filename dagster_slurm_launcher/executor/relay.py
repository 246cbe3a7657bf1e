"""The relay: brings each step's Slurm state and journal into the Dagster instance.

Every poll costs one Slurm status query for all steps (squeue, plus sacct for finished jobs)
and then one command that reads the new bytes of every journal. Between polls, while steps run,
the journals alone are read more often (they cost the controller nothing): a step's success is
relayed, and its downstream steps submitted, within about a second of the step writing it, not
at the next poll. Once the journals have shown nothing new for a while (a long step that logs
little), they are read once per poll again, so a quiet run costs the login node one command per
poll.

A job that has ended writes nothing more, but a shared filesystem that caches (NFS) may show
its last lines seconds later, and slurmdbd its record: after a job ends, its journal is read
until it shows the worker's ``END`` line, and its state asked until accounting has it, for at
most the journal grace period. Only then is the step *drained* (its accounting reported) and a
missing outcome a failure.
"""

import time
from dataclasses import dataclass, field

from dagster import DagsterEventType, DagsterInstance, DagsterLogManager, DagsterRun, EventLogEntry

from dagster_slurm_launcher.dagster_internals import ComputeIOType, EngineEventData, StepOutputHandle, changed
from dagster_slurm_launcher.executor import job_report, step_logs
from dagster_slurm_launcher.executor.step_ids import StepIds
from dagster_slurm_launcher.executor.step_logs import Stream, append_logs, log_slices, relayed_all
from dagster_slurm_launcher.journal import JOURNAL_FILE, OUTCOMES, parse_records
from dagster_slurm_launcher.logs import get_logger
from dagster_slurm_launcher.naming import run_id_of_step_folder
from dagster_slurm_launcher.slurm import JobInfo, JobState, SlurmClient, SlurmError, SubmittedJob
from dagster_slurm_launcher.slurm.client import OptionValue
from dagster_slurm_launcher.slurm.shared_status import StatusSource
from dagster_slurm_launcher.transport import TransportError
from dagster_slurm_launcher.transport.files import FileSlice, read_files

log = get_logger(__name__)

# A job that neither squeue nor sacct knows for this long is taken as lost.
UNKNOWN_GRACE_SECONDS = 120.0
# Seconds between journal reads while the journals show news, or a step was just submitted.
JOURNAL_INTERVAL = 1.0
# Seconds without news after which journals are read once per poll only.
QUIET_AFTER = 15.0


@dataclass
class TrackedStep:
    """One submission of a step, and how far its journal has been relayed."""

    step_key: str
    job: SubmittedJob
    folder: str
    options: dict[str, OptionValue] = field(default_factory=dict)
    """The sbatch options the job was submitted with (what it requested)."""
    journal_offset: int = 0
    relayed_seq: int = 0
    outcome: DagsterEventType | None = None
    info: JobInfo | None = None
    drained: bool = False
    reported_state: str | None = None
    """The message of the step's last engine event about its job's state."""
    log_file_key: str | None = None
    """The file key of the step's captured logs (from the worker's LOGS_CAPTURED event)."""
    logs: dict[ComputeIOType, Stream] = field(default_factory=dict)
    """How far the job's stdout and stderr were relayed to the step's captured logs."""
    output_sizes: tuple[int, int] | None = None
    """How long the job's stdout and stderr files are, as the worker's ``END`` line says."""
    already_stored: frozenset[tuple[float, str]] = frozenset()
    """(timestamp, message) of the step's events already in the instance, for a job adopted
    from a run worker that died: what it relayed before dying is not relayed again."""
    unknown_since: float | None = None
    ended_at: float | None = None
    """When the relay first saw the job ended (``time.monotonic()``)."""
    journal_ended: bool = False
    """The worker's last line (``END``) was read."""
    outputs: set[StepOutputHandle] = field(default_factory=set)
    """The step's outputs its journal reported (where an adopted step's outputs come from)."""
    ids: StepIds = field(default_factory=StepIds)
    """Where the step's asset events are in the instance, for events that point at them."""
    packed: bool = False
    """The job is a pack: it runs other steps too, and may go on after this step ended."""
    end_cause: str | None = None
    """Why a packed step ended without its outcome (or never started), from its ``END`` line."""

    @property
    def source_run_id(self) -> str:
        """The run that submitted the job: its step worker stored outputs under that run's id."""
        return run_id_of_step_folder(self.folder)

    @property
    def journal(self) -> str:
        return f"{self.folder}/{JOURNAL_FILE}"


@dataclass(frozen=True)
class Timing:
    """How often the relay looks, and how long it waits for what a shared filesystem shows late."""

    poll_interval: float
    """Seconds between polls of Slurm and the journals."""
    journal_grace: float
    """Seconds to keep reading an ended job's journal for its last lines."""
    read_failure_timeout: float
    """Seconds of failed journal reads after which the run fails."""


class Relay:
    """Tracks a run's steps in Slurm and relays their journals into ``instance`` exactly once.

    ``status`` answers the jobs' states (the client itself, or a snapshot shared by the run
    workers of this host); ``client`` reads the journals and cancels. Each relayed event is
    stored in ``instance`` and, if ``echo`` is given, also logged to it: the run's loggers (a
    terminal's console) show the steps' events as they would under the multiprocess executor,
    whose step processes log to them directly.
    """

    def __init__(
        self,
        client: SlurmClient,
        status: StatusSource,
        instance: DagsterInstance,
        run: DagsterRun,
        timing: Timing,
        echo: DagsterLogManager | None = None,
    ) -> None:
        self._client = client
        self._status = status
        self._instance = instance
        self._echo = echo
        self._run = run
        self.timing = timing
        self._failing_since: float | None = None
        self._last_poll = 0.0
        self._last_read = 0.0
        self._last_news = 0.0
        self.steps: dict[str, TrackedStep] = {}

    def track(self, step: TrackedStep) -> None:
        self.steps[step.step_key] = step  # a retry of a step replaces its earlier submission
        self._last_news = time.monotonic()

    def drain(self, timeout: float) -> None:
        """Keep polling until every step's job has ended and its journal was read to the end.

        A run ends when its last outcome is relayed; the job that reported it is usually still
        exiting. Draining reports its accounting and relays any last events. The run waits on
        this, so it looks soon and then less often, through the relay's status: with many runs
        ending every minute, each asking Slurm itself would load the controller in proportion to
        the number of runs, where the shared snapshot costs one query per interval for them all
        (and a run ends one to two intervals after its last job, not about a second).
        """
        deadline = time.monotonic() + timeout
        wait = JOURNAL_INTERVAL / 2
        while any(not s.drained for s in self.steps.values()) and time.monotonic() < deadline:
            time.sleep(wait)
            self.poll()
            wait = min(2 * wait, self.timing.poll_interval)

    def poll_if_due(self) -> None:
        """Poll if the poll interval has passed; else read the journals if due."""
        now = time.monotonic()
        if now - self._last_poll >= self.timing.poll_interval:
            self.poll()
        elif now - self._last_news < QUIET_AFTER and now - self._last_read >= JOURNAL_INTERVAL:
            # Pending jobs too: a short step may start and finish between two polls.
            active = [s for s in self.steps.values() if not s.drained]
            if active:
                self._read_journals(active, past_grace=set())

    def give_up(self, step: TrackedStep) -> None:
        """Stop relaying ``step``: cancel its job (it may still run) and ignore anything it writes."""
        step.drained = True
        try:
            self._client.cancel([step.job.job_id])
        except (SlurmError, TransportError) as exc:
            log.warning("could not cancel a lost step's job", job_id=step.job.job_id, error=str(exc))

    def poll(self) -> None:
        """Update every step's Slurm state and relay what their journals hold."""
        self._last_poll = time.monotonic()
        active = [s for s in self.steps.values() if not s.drained]
        if not active:
            return
        # A job squeue shows ended is asked about again until accounting has its record.
        waiting = [s for s in active if not _ended_in_accounting(s)]
        if waiting:
            states = self._status.poll([s.job for s in waiting])
            for step in waiting:
                self._update_state(step, states[step.job.job_id])
        now = time.monotonic()
        # Past the grace period, nothing more will become visible: damaged lines are passed over.
        past_grace = {
            s.step_key for s in active if s.ended_at is not None and now - s.ended_at >= self.timing.journal_grace
        }
        ended_before_read = [s for s in active if s.ended_at is not None]
        if not self._read_journals(active, past_grace):
            return  # nothing is drained until its journal was read after its job ended
        drained = [
            s
            for s in ended_before_read
            if (s.journal_ended and _ended_in_accounting(s) and relayed_all(s)) or s.step_key in past_grace
        ]
        for step in drained:
            step.drained = True
            self._report_accounting(step)
            step_logs.write_pending(self._instance, self._run.run_id, step)

    def _update_state(self, step: TrackedStep, info: JobInfo) -> None:
        if info.state == JobState.UNKNOWN and step.info is not None and step.info.is_terminal:
            return  # squeue forgot the job before accounting had it: it still ended as last seen
        step.info = info
        if info.state == JobState.UNKNOWN:
            step.unknown_since = step.unknown_since or time.monotonic()
            return
        step.unknown_since = None
        if info.is_terminal:
            step.ended_at = step.ended_at or time.monotonic()
            return
        step.ended_at = None  # running again (requeued)
        message, metadata = job_report.waiting_or_running(step.job.job_id, info)
        if message != step.reported_state:
            step.reported_state = message
            self._engine_event(step, message, metadata)

    def _read_journals(self, steps: list[TrackedStep], past_grace: set[str]) -> bool:
        """Relay every new record of ``steps``' journals; ``False`` if they could not be read.

        Raises:
            SlurmError: the journals could not be read for the whole read-failure timeout.
        """
        self._last_read = time.monotonic()
        journals = [FileSlice(s.journal, s.journal_offset) for s in steps]
        logs = log_slices(steps)
        try:
            reads = read_files(self._client.transport, [*journals, *(piece.file for piece in logs)])
        except TransportError as exc:
            now = time.monotonic()
            self._failing_since = self._failing_since or now
            if now - self._failing_since > self.timing.read_failure_timeout:
                raise SlurmError(
                    f"could not read the steps' journals for {now - self._failing_since:.0f}s: {exc}. "
                    "The steps' Slurm jobs keep running; a resumed or retried run picks them up."
                ) from exc
            log.warning("could not read journals; retrying at the next poll", error=str(exc))
            return False
        self._failing_since = None
        for step, read in zip(steps, reads[: len(steps)], strict=True):
            if read.data:
                self._last_news = time.monotonic()
                self._relay_records(step, read.data, final=step.step_key in past_grace)
        if append_logs(self._instance, self._run.run_id, logs, reads[len(steps) :]):
            self._last_news = time.monotonic()
        return True

    def _relay_records(self, step: TrackedStep, data: bytes, final: bool) -> None:
        parsed = parse_records(data, final=final)
        step.journal_offset += parsed.consumed
        if parsed.consumed:  # END counts only as the last line: a requeued job writes after it
            step.journal_ended = parsed.ended
            step.output_sizes = parsed.output_sizes
            step.end_cause = parsed.end_cause
        if parsed.skipped:
            log.warning(
                "skipped damaged journal lines", step_key=step.step_key, lines=parsed.skipped, journal=step.journal
            )
        for record in parsed.records:
            if record.seq <= step.relayed_seq:
                continue
            step.relayed_seq = record.seq
            entry = record.entry
            if entry.dagster_event_type in OUTCOMES and step.outcome is not None:
                # A second run of a finished step (a requeue by an older worker): one outcome counts.
                log.warning("ignored a second outcome", step_key=step.step_key, event=entry.dagster_event_type)
                continue
            if entry.run_id != self._run.run_id:
                # A job adopted from an earlier run of the lineage: its events belong to this run now.
                entry = changed(entry, run_id=self._run.run_id)
            entry = step.ids.rewrite(self._instance, entry)
            step.ids.remember(record.seq, entry)
            if (entry.timestamp, entry.user_message) not in step.already_stored:
                self._instance.handle_new_event(entry)
                self._echo_event(entry)
            if entry.dagster_event_type in OUTCOMES:
                step.outcome = entry.dagster_event_type
            elif entry.dagster_event_type == DagsterEventType.LOGS_CAPTURED:
                step.log_file_key = entry.get_dagster_event().logs_captured_data.file_key
                if step.already_stored:
                    step_logs.resume(self._instance, self._run.run_id, step)
            elif entry.dagster_event_type == DagsterEventType.STEP_OUTPUT:
                step.outputs.add(entry.get_dagster_event().step_output_data.step_output_handle)

    def _echo_event(self, entry: EventLogEntry) -> None:
        if self._echo is None:
            return
        try:
            if entry.dagster_event is not None:
                self._echo.log_dagster_event(entry.level, entry.user_message, entry.dagster_event)
            else:
                self._echo.with_tags(step_key=entry.step_key or "").log(entry.level, entry.user_message)
        except Exception as exc:  # a user's @logger must not stop the relay: the event is stored
            log.warning("a run logger failed on a relayed event", error=repr(exc))

    def _report_accounting(self, step: TrackedStep) -> None:
        assert step.info is not None
        message, metadata = job_report.ended(step.job.job_id, step.info, step.outcome)
        self._engine_event(step, message, metadata)

    def _engine_event(self, step: TrackedStep, message: str, metadata: dict) -> None:
        self._instance.report_engine_event(
            message, self._run, EngineEventData(metadata=metadata), step_key=step.step_key
        )


def _ended_in_accounting(step: TrackedStep) -> bool:
    """The step's job has ended, by a record that has its accounting (sacct's, or scontrol's
    where there is no accounting), not squeue's alone."""
    return step.info is not None and step.info.is_terminal and step.info.source != "squeue"
