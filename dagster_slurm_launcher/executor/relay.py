"""The relay: brings each step's Slurm state and journal into the Dagster instance.

Every poll costs one Slurm status query for all steps (squeue, plus sacct for finished jobs)
and then one command that reads the new bytes of every journal. A job that has ended writes
nothing more, but a shared filesystem that caches (NFS) may show its last lines seconds later:
after a job ends, its journal is read until it shows the worker's ``END`` line, for at most
the journal grace period. Only then is the step *drained* and a missing outcome a failure.
"""

import time
from dataclasses import dataclass, field

from dagster import DagsterEventType, DagsterInstance, DagsterRun, MetadataValue

from dagster_slurm_launcher.dagster_internals import ComputeIOType, EngineEventData, StepOutputHandle, changed
from dagster_slurm_launcher.executor.step_ids import StepIds
from dagster_slurm_launcher.journal import JOURNAL_FILE, OUTCOMES, parse_records
from dagster_slurm_launcher.logs import get_logger
from dagster_slurm_launcher.naming import run_id_of_step_folder
from dagster_slurm_launcher.run_events import SLURM_JOB_ID
from dagster_slurm_launcher.slurm import JobInfo, JobState, SlurmClient, SlurmError, SubmittedJob
from dagster_slurm_launcher.slurm.client import OptionValue
from dagster_slurm_launcher.transport import TransportError
from dagster_slurm_launcher.transport.files import FileSlice, read_files

log = get_logger(__name__)

# The UI shows at most this much of a step's stdout and of its stderr (the end of each).
MAX_LOG_BYTES = 10 * 2**20
# A job that neither squeue nor sacct knows for this long is taken as lost.
UNKNOWN_GRACE_SECONDS = 120.0


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
    """The job's state as the step's last engine event about it reported it."""
    log_file_key: str | None = None
    """The file key of the step's captured logs (from the worker's LOGS_CAPTURED event)."""
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
    """Tracks a run's steps in Slurm and relays their journals into ``instance`` exactly once."""

    def __init__(self, client: SlurmClient, instance: DagsterInstance, run: DagsterRun, timing: Timing) -> None:
        self._client = client
        self._instance = instance
        self._run = run
        self.timing = timing
        self._failing_since: float | None = None
        self._last_poll = 0.0
        self.steps: dict[str, TrackedStep] = {}

    def track(self, step: TrackedStep) -> None:
        self.steps[step.step_key] = step  # a retry of a step replaces its earlier submission

    def drain(self, timeout: float) -> None:
        """Keep polling until every step's job has ended and its journal was read to the end.

        A run ends when its last outcome is relayed; the job that reported it is usually still
        exiting. Draining reports its accounting and relays any last events.
        """
        deadline = time.monotonic() + timeout
        while any(not s.drained for s in self.steps.values()) and time.monotonic() < deadline:
            time.sleep(max(0.0, self.timing.poll_interval - (time.monotonic() - self._last_poll)))
            self.poll()

    def poll_if_due(self) -> None:
        if time.monotonic() - self._last_poll >= self.timing.poll_interval:
            self.poll()

    def give_up(self, step: TrackedStep) -> None:
        """Stop relaying ``step``: cancel its job (it may still run) and ignore anything it writes."""
        step.drained = True
        try:
            self._client.cancel([step.job.job_id])
        except (SlurmError, TransportError) as exc:
            log.warning("could not cancel a lost step's job", job_id=step.job.job_id, error=str(exc))

    def poll(self) -> None:
        self._last_poll = time.monotonic()
        active = [s for s in self.steps.values() if not s.drained]
        if not active:
            return
        waiting = [s for s in active if not (s.info and s.info.is_terminal)]
        if waiting:
            states = self._client.poll([s.job for s in waiting])
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
        drained = [s for s in ended_before_read if s.journal_ended or s.step_key in past_grace]
        for step in drained:
            step.drained = True
            self._report_accounting(step)
        self._copy_logs(drained)

    def _update_state(self, step: TrackedStep, info: JobInfo) -> None:
        step.info = info
        if info.state == JobState.UNKNOWN:
            step.unknown_since = step.unknown_since or time.monotonic()
            return
        step.unknown_since = None
        if info.is_terminal:
            step.ended_at = time.monotonic()
        if info.state == JobState.PENDING:
            summary = f"PENDING ({info.reason})" if info.reason else "PENDING"
        elif info.state == JobState.RUNNING:
            summary = f"RUNNING on {info.node_list}"
        else:
            summary = info.state.value
        if summary != step.reported_state and not info.is_terminal:
            step.reported_state = summary
            self._engine_event(
                step, f"Slurm job {step.job.job_id} is {summary}", {"slurm_state": MetadataValue.text(summary)}
            )

    def _read_journals(self, steps: list[TrackedStep], past_grace: set[str]) -> bool:
        """Relay every new record of ``steps``' journals; ``False`` if they could not be read.

        Raises:
            SlurmError: the journals could not be read for the whole read-failure timeout.
        """
        slices = [FileSlice(s.journal, s.journal_offset) for s in steps]
        try:
            reads = read_files(self._client.transport, slices)
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
        for step, read in zip(steps, reads, strict=True):
            if read.data is not None:
                self._relay_records(step, read.data, final=step.step_key in past_grace)
        return True

    def _relay_records(self, step: TrackedStep, data: bytes, final: bool) -> None:
        parsed = parse_records(data, final=final)
        step.journal_offset += parsed.consumed
        if parsed.consumed:  # END counts only as the last line: a requeued job writes after it
            step.journal_ended = parsed.ended
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
            if entry.dagster_event_type in OUTCOMES:
                step.outcome = entry.dagster_event_type
            elif entry.dagster_event_type == DagsterEventType.LOGS_CAPTURED:
                step.log_file_key = entry.get_dagster_event().logs_captured_data.file_key
            elif entry.dagster_event_type == DagsterEventType.STEP_OUTPUT:
                step.outputs.add(entry.get_dagster_event().step_output_data.step_output_handle)

    def _copy_logs(self, steps: list[TrackedStep]) -> None:
        """Put finished jobs' stdout and stderr where the UI reads a step's logs."""
        steps = [s for s in steps if s.log_file_key]
        if not steps:
            return
        streams = [(s, io_type) for s in steps for io_type in (ComputeIOType.STDOUT, ComputeIOType.STDERR)]
        slices = [FileSlice(f"{s.folder}/{io_type.value}", limit=MAX_LOG_BYTES) for s, io_type in streams]
        try:
            reads = read_files(self._client.transport, slices)
        except TransportError as exc:
            log.warning("could not copy step logs; they stay in the step folders", error=str(exc))
            return
        manager = self._instance.compute_log_manager
        for (step, io_type), read in zip(streams, reads, strict=True):
            if not read.data:
                continue
            log_key = manager.build_log_key_for_run(self._run.run_id, step.log_file_key)  # type: ignore[arg-type]
            with manager.open_log_stream(log_key, io_type) as stream:
                if stream is not None:
                    cut = f"[first {read.start} bytes not shown; see {read.slice.path}]\n" if read.start else ""
                    # Output is the user's bytes: invalid UTF-8 shows as U+FFFD, never fails the run.
                    stream.write(cut + read.data.decode("utf-8", "replace"))

    def _report_accounting(self, step: TrackedStep) -> None:
        info = step.info
        assert info is not None
        metadata = {
            SLURM_JOB_ID: MetadataValue.text(step.job.job_id),
            "slurm_state": MetadataValue.text(info.state.value + (f" {info.reason}" if info.reason else "")),
            "exit_code": MetadataValue.text(":".join(map(str, info.exit_code)) if info.exit_code else "unknown"),
        }
        if info.elapsed is not None:
            metadata["elapsed_seconds"] = MetadataValue.float(info.elapsed.total_seconds())
        if info.max_rss_bytes is not None:
            metadata["max_rss_mib"] = MetadataValue.float(round(info.max_rss_bytes / 2**20, 1))
        if info.node_list:
            metadata["node_list"] = MetadataValue.text(info.node_list)
        if info.cpu_efficiency is not None:
            metadata["cpu_efficiency"] = MetadataValue.float(round(info.cpu_efficiency, 3))
        self._engine_event(step, f"Slurm job {step.job.job_id} ended {info.state.value}", metadata)

    def _engine_event(self, step: TrackedStep, message: str, metadata: dict) -> None:
        self._instance.report_engine_event(
            message, self._run, EngineEventData(metadata=metadata), step_key=step.step_key
        )
