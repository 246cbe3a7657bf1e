"""SlurmStepHandler: Dagster's StepHandler for Slurm. Each step is one sbatch job."""

import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import (
    DagsterEvent,
    DagsterInstance,
    DagsterLogManager,
    DagsterRun,
    DagsterRunStatus,
    DynamicPartitionsDefinition,
    JobDefinition,
    MetadataValue,
    MultiPartitionsDefinition,
)

from dagster_slurm_launcher.asset_history import AssetHistory, StepView
from dagster_slurm_launcher.asset_history import collect as collect_asset_history
from dagster_slurm_launcher.dagster_internals import (
    CheckStepHealthResult,
    EngineEventData,
    PlanOrchestrationContext,
    StepHandler,
    StepHandlerContext,
    changed,
    run_loggers,
)
from dagster_slurm_launcher.executor import job_report
from dagster_slurm_launcher.executor.adoption import Adoption, created
from dagster_slurm_launcher.executor.config import (
    NO_EXPORT,
    PackConfig,
    SbatchOptions,
    SlurmConfigError,
    format_time,
    memory_bytes,
    needs_own_job,
    packable,
    time_seconds,
)
from dagster_slurm_launcher.executor.failures import explain_missing_outcome, explain_packed_end
from dagster_slurm_launcher.executor.lineage import root_run_id
from dagster_slurm_launcher.executor.output_sources import Adoptions, earlier_adoptions, point_inputs_at_their_runs
from dagster_slurm_launcher.executor.relay import UNKNOWN_GRACE_SECONDS, Relay, Timing, TrackedStep
from dagster_slurm_launcher.executor.script import ENV_FILE, META_FILE, SCRIPT_FILE, render_env_file, render_script
from dagster_slurm_launcher.journal import JOURNAL_FILE
from dagster_slurm_launcher.logs import get_logger
from dagster_slurm_launcher.naming import (
    CLAIMS_DIR,
    claims_folder,
    job_name,
    lineage_folder,
    pack_folder,
    pack_job_name,
    packed_step_folder,
    run_folder,
    step_folder,
)
from dagster_slurm_launcher.packed_worker import SPEC_FILE, UNSTARTED
from dagster_slurm_launcher.payload import PAYLOAD_FILE, StepPayload
from dagster_slurm_launcher.run_events import SLURM_JOB_ID, SLURM_JOB_IDS, report_cancelled
from dagster_slurm_launcher.ship.shipping import ShipConfig, Shipment, ship, shipped_before
from dagster_slurm_launcher.slurm import (
    AlreadySubmitted,
    Claim,
    JobRequest,
    PackMember,
    SlurmClient,
    SlurmError,
    SubmissionUncertain,
    SubmittedJob,
)
from dagster_slurm_launcher.slurm.client import OptionValue
from dagster_slurm_launcher.slurm.shared_status import StatusSource
from dagster_slurm_launcher.transport import TransportError
from dagster_slurm_launcher.transport.programs import command

log = get_logger(__name__)

# Submissions of one step that lost a race or their answer, before the step fails.
_SUBMIT_ATTEMPTS = 3


class SlurmStepHandler(StepHandler):
    """Submits each step as an sbatch job and relays its events back through its journal.

    Args:
        client: the Slurm client (and, through it, the transport to the login node).
        sbatch_options: the executor's sbatch options; a step's ``dagster-slurm/sbatch`` tag overrides them.
        remote_base_dir: absolute run-folder root on the cluster's shared filesystem.
        python: the Python executable on the compute nodes.
        setup: shell lines run before each step.
        env: environment variables exported to each step.
        status: answers the jobs' states (shared by the run workers of this host).
        timing: how often the relay polls, and how long it waits for late journal lines.
        ship: what to ship to the cluster before the first step (``None``: nothing; the cluster
            sees the code location and ``python`` as they are).
        pack: how steps ready together are packed into one allocation (``None``: a job each).
    """

    def __init__(
        self,
        *,
        client: SlurmClient,
        sbatch_options: SbatchOptions,
        remote_base_dir: str,
        python: str,
        setup: Sequence[str],
        env: Mapping[str, str],
        status: StatusSource,
        timing: Timing,
        ship: ShipConfig | None = None,
        pack: PackConfig | None = None,
    ) -> None:
        self._client = client
        self._ship = ship
        self._pack = pack
        self._shipment: Shipment | None = None
        self._status = status
        self._sbatch_options = sbatch_options
        self._remote_base_dir = remote_base_dir
        self._python = python
        self._setup = list(setup)
        self._env = dict(env)
        self.timing = timing
        self._relay: Relay | None = None
        self._adoption: Adoption | None = None
        self._dynamic_partitions: set[str] = set()
        self._job_def: JobDefinition | None = None
        self._cancelled = False
        self._plan_step_keys: list[str] = []
        self._earlier_adoptions: Adoptions = {}
        self._launched: list[_Launched] = []
        # Steps that could not be submitted, with why: they fail at their next health check.
        self._unsubmittable: dict[str, str] = {}
        # How many packs in a row stopped before starting each step.
        self._unstarted: dict[str, int] = {}

    @property
    def name(self) -> str:
        return "SlurmStepHandler"

    def start(self, plan_context: PlanOrchestrationContext) -> None:
        """Begin a run: called by the executor before the first step is launched."""
        self._relay = Relay(
            self._client,
            self._status,
            plan_context.instance,
            plan_context.dagster_run,
            self.timing,
            echo=DagsterLogManager.create(loggers=run_loggers(plan_context.log), dagster_run=plan_context.dagster_run),
        )
        self._job_def = plan_context.reconstructable_job.get_definition()
        self._dynamic_partitions = _dynamic_partitions(self._job_def)
        run = plan_context.dagster_run
        continues = plan_context.resume_from_failure or run.parent_run_id is not None
        self._adoption = Adoption(self._client, self._relay, self._remote_base_dir, continues)
        self._plan_step_keys = [step.key for step in plan_context.execution_plan.steps]
        if self._pack is not None:
            # A packed step's memory and time size its pack's: they must be a size and a time
            # (checked before the first job is submitted).
            for plan_step in plan_context.execution_plan.steps:
                options = self._sbatch_options.for_step(plan_step.key, plan_step.tags)
                if packable(plan_step.key, plan_step.tags) and not needs_own_job(options):
                    checks = [(memory_bytes, "mem", "")]
                    if self._pack.time is None:
                        checks.append((time_seconds, "time", ", set the executor's pack.time"))
                    for check, key, or_pack_time in checks:
                        try:
                            check(options.get(key))
                        except SlurmConfigError as exc:
                            raise SlurmConfigError(
                                f"step {plan_step.key!r} cannot be packed: {exc}. Change it in the executor config "
                                f"or the step's dagster-slurm/sbatch tag{or_pack_time}, or tag the step "
                                "dagster-slurm/pack: 'false'; nothing was submitted"
                            ) from None
        if run.parent_run_id is not None:
            self._earlier_adoptions = earlier_adoptions(plan_context.instance, run)
        if self._ship is not None:
            self._shipment = self._ship_to_cluster(plan_context)

    def _ship_to_cluster(self, plan_context: PlanOrchestrationContext) -> Shipment:
        """Ship the code and environment (see ``ship``); raises before any step is submitted."""
        instance, run = plan_context.instance, plan_context.dagster_run
        assert self._ship is not None and run.job_code_origin is not None

        def report(message: str, metadata: Mapping[str, Any]) -> None:
            data = {k: MetadataValue.text(str(v)) for k, v in metadata.items()}
            instance.report_engine_event(message, run, EngineEventData(metadata=data))

        shipment = None
        if plan_context.resume_from_failure:
            # Its adopted steps run what the run's first worker shipped; so do the others.
            shipment = shipped_before(
                self._ship,
                self._client.transport,
                self._remote_base_dir,
                run.job_code_origin,
                self._python,
                run.run_id,
                run.tags,
                report,
            )
        if shipment is None:
            shipment = ship(
                self._ship,
                self._client.transport,
                self._remote_base_dir,
                run.job_code_origin,
                self._python,
                self._setup,
                self._env,
                report,
                run.run_id,
            )
        instance.add_run_tags(run.run_id, dict(shipment.tags))
        return shipment

    @property
    def relay(self) -> Relay:
        assert self._relay is not None, "SlurmStepHandler.start was not called"
        return self._relay

    @property
    def adoption(self) -> Adoption:
        assert self._adoption is not None, "SlurmStepHandler.start was not called"
        return self._adoption

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        """Queue the step: :meth:`submit_launched` adopts its earlier job or submits it, with the
        others launched since its last call (the executor launches every ready step in one pass)."""
        self._launched.append(_Launched(step_handler_context, _single_step_key(step_handler_context), frozenset()))
        yield from ()

    @property
    def launches_waiting(self) -> bool:
        """Whether launched steps wait for :meth:`submit_launched`."""
        return bool(self._launched)

    def submit_launched(self) -> None:
        """Submit the steps launched since the last call, in one command for all of them, and
        report each one's job.

        A step whose job another worker submitted meanwhile has that job adopted; one whose
        submission's answer was lost is looked up by name and folder before it is sent again.
        A step that cannot be submitted (sbatch rejected it, or three attempts failed) fails
        at its next health check, with the reason; the others go on.
        """
        launched, self._launched = self._launched, []
        submitted: list[tuple[_Launched, TrackedStep]] = []
        try:
            self._submit(self._not_adopted(launched), submitted)
        finally:
            # Reported last: a report writes to the instance, which can fail, and every job
            # that exists is tracked first.
            steps_per_job = Counter(tracked.job.job_id for _, tracked in submitted)
            for step, tracked in submitted:
                pack_size = steps_per_job[tracked.job.job_id] if tracked.packed else 1
                message, metadata = job_report.submission(tracked.job, tracked.options, tracked.folder, pack_size)
                DagsterEvent.step_worker_starting(
                    step.context.get_step_context(step.step_key), message, metadata=metadata
                )

    def _not_adopted(self, launched: list["_Launched"]) -> list["_Launched"]:
        """The launched steps left to submit, each knowing the jobs a submission must not
        duplicate. A run that continues earlier work (resumed, retried, re-executed) may find a
        step's job already in Slurm, submitted by a worker that died before recording its
        outcome: that job is adopted instead."""
        if not launched:
            return []
        lineages = self.adoption.at_launch(launched[0].context, [step.step_key for step in launched])
        left = []
        for step in launched:
            lineage = lineages[step.step_key]
            if lineage is None:
                continue
            # What the step already knew (the pack that never started it), and what was found.
            known = set(step.known) | {job.job_id for job in lineage}
            if step.step_key in self.relay.steps:
                known.add(self.relay.steps[step.step_key].job.job_id)
            left.append(_Launched(step.context, step.step_key, frozenset(known)))
        return left

    def _submit(self, launched: list["_Launched"], submitted: list[tuple["_Launched", TrackedStep]]) -> None:
        """Submit ``launched``, tracking each job as soon as it is known and adding its steps to
        ``submitted``; steps that cannot be submitted go to ``_unsubmittable``."""
        last_error: dict[str, SlurmError] = {}
        for _ in range(_SUBMIT_ATTEMPTS):
            if not launched:
                return
            jobs = self._jobs(launched)
            outcomes = list(zip(jobs, self._client.submit_all([j.request for j in jobs]), strict=True))
            for job, outcome in outcomes:
                if isinstance(outcome, SubmittedJob):
                    self._track(job, outcome, submitted)
            again: list[_Launched] = []
            for job, outcome in outcomes:
                if not isinstance(outcome, SlurmError):
                    continue
                last_error.update((step.step_key, outcome) for step in job.steps)
                if isinstance(outcome, AlreadySubmitted):
                    # Another worker submitted one of these steps since the look-up: that job
                    # is the step's, unless it has already ended without an outcome to take.
                    again += [
                        step.knowing(outcome.job_id)
                        for step in job.steps
                        if not self.adoption.after_lost_race(step.context, step.step_key)
                    ]
                elif not isinstance(outcome, SubmissionUncertain):
                    self._unsubmittable.update((step.step_key, str(outcome)) for step in job.steps)
            uncertain = [job for job, outcome in outcomes if isinstance(outcome, SubmissionUncertain)]
            found = self._find_uncertain_submissions(uncertain)
            for job in uncertain:
                if job.request.name in found:
                    self._track(job, found[job.request.name], submitted)
                else:
                    # Its sbatch never got through; submitting again under the claim cannot
                    # make a twin of a job the claim recorded.
                    again += job.steps
            launched = again
        for step in launched:
            self._unsubmittable[step.step_key] = (
                f"could not submit Slurm job {job_name(root_run_id(step.context.dagster_run), step.step_key)!r} "
                f"in {_SUBMIT_ATTEMPTS} attempts; the last attempt: "
                f"{last_error.get(step.step_key, 'another submitter held the job name')}"
            )

    def _track(
        self, job: "_Job", submitted_job: SubmittedJob, submitted: list[tuple["_Launched", TrackedStep]]
    ) -> None:
        for step in job.steps:
            tracked = TrackedStep(
                step_key=step.step_key,
                job=submitted_job,
                folder=job.folders[step.step_key],
                options=dict(job.step_options),
                packed=job.request.folder != job.folders[step.step_key],
            )
            self.relay.track(tracked)
            submitted.append((step, tracked))

    def _jobs(self, launched: Sequence["_Launched"]) -> list["_Job"]:
        """The jobs that run ``launched``: a pack for each group of packable steps that share
        sbatch options, a job of its own for every other step."""
        groups: dict[str, list[tuple[_Launched, dict[str, OptionValue]]]] = {}
        jobs = []
        for step in launched:
            tags = step.context.step_tags[step.step_key]
            options = self._sbatch_options.for_step(step.step_key, tags)
            if self._pack is None or not packable(step.step_key, tags) or needs_own_job(options):
                jobs.append(self._job_of_its_own(step, options))
            else:
                groups.setdefault(json.dumps(options, sort_keys=True), []).append((step, options))
        assert self._pack is not None or not groups
        for group in groups.values():
            for i in range(0, len(group), self._pack.max_steps):
                chunk = group[i : i + self._pack.max_steps]
                jobs.append(self._job_of_its_own(*chunk[0]) if len(chunk) == 1 else self._packed_job(chunk))
        return jobs

    def _job_of_its_own(self, step: "_Launched", options: dict[str, OptionValue]) -> "_Job":
        run = step.context.dagster_run
        root = root_run_id(run)
        attempt = _attempt(step)
        folder = step_folder(self._remote_base_dir, root, run.run_id, step.step_key, attempt, uuid.uuid4().hex[:8])
        files = {**self._step_files(step, folder, attempt), **self._script_files(run, folder, packed=False)}
        request = JobRequest(
            name=job_name(root, step.step_key),
            options=_with_folder(options, folder),
            claim=Claim(claims_folder(self._remote_base_dir, root), step.known),
            folder=folder,
            files=files,
            script=SCRIPT_FILE,
            empty=_STEP_OUTPUTS,
        )
        return _Job([step], request, {step.step_key: folder}, request.options)

    def _packed_job(self, group: Sequence[tuple["_Launched", dict[str, OptionValue]]]) -> "_Job":
        """One allocation for steps that share ``options``: each step gets its cpus_per_task and
        mem, ``pack.cpus`` of them at once; the packed worker runs them (see packed_worker)."""
        assert self._pack is not None
        steps = [step for step, _ in group]
        step_options = group[0][1]
        options = dict(step_options)
        run = steps[0].context.dagster_run
        root = root_run_id(run)
        pack = pack_folder(self._remote_base_dir, root, run.run_id, uuid.uuid4().hex[:8])
        step_cpus = int(options.get("cpus-per-task") or 1)
        slots = max(1, self._pack.cpus // step_cpus)
        memory = memory_bytes(options.get("mem"))
        options["cpus-per-task"] = max(self._pack.cpus, step_cpus)
        if memory is not None:
            options["mem"] = f"{-(-memory * slots // 2**20)}M"
        step_time = None
        if self._pack.time is not None:
            # The steps' own limit, enforced inside the pack where it is a time (sbatch also
            # takes UNLIMITED, which start() lets through here: pack.time sizes the pack).
            with contextlib.suppress(SlurmConfigError):
                step_time = time_seconds(options.get("time"))
            options["time"] = self._pack.time
        elif (step_time := time_seconds(options.get("time"))) is not None:
            # Its steps in turn, each given its own time.
            options["time"] = format_time(step_time * -(-len(steps) // slots))
        # A requeued pack would start nothing new (its steps' journals are not empty) while its
        # unstarted steps are submitted again: it is never requeued.
        options.pop("requeue", None)
        options["no-requeue"] = True
        attempts = {step.step_key: _attempt(step) for step in steps}
        folders = {key: packed_step_folder(pack, key, attempt) for key, attempt in attempts.items()}
        # Each step's folder by its name inside the pack's, as the archive and pack.json hold it.
        names = {key: folder.rsplit("/", 1)[-1] for key, folder in folders.items()}
        files = dict(self._script_files(run, pack, packed=True))
        for step in steps:
            for file, data in self._step_files(step, folders[step.step_key], attempts[step.step_key]).items():
                files[f"{names[step.step_key]}/{file}"] = data
        spec = {"steps": list(names.values()), "slots": slots, "memory_per_step": memory, "time_per_step": step_time}
        files[SPEC_FILE] = json.dumps(spec).encode()
        members = [PackMember(job_name(root, s.step_key), s.known, folders[s.step_key]) for s in steps]
        request = JobRequest(
            name=pack_job_name(root, pack),
            options=_with_folder(options, pack),
            claim=Claim(claims_folder(self._remote_base_dir, root), frozenset(), members),
            folder=pack,
            files=files,
            script=SCRIPT_FILE,
            empty=[f"{name}/{output}" for name in names.values() for output in _STEP_OUTPUTS],
        )
        return _Job(steps, request, folders, step_options)

    def _step_files(self, step: "_Launched", folder: str, attempt: int) -> dict[str, bytes]:
        """The step's own files: its payload and what identifies it."""
        run = step.context.dagster_run
        instance = step.context.instance
        history = collect_asset_history(
            StepView(self._job_def, step.context.get_step_context(step.step_key).step, run, instance), instance
        )
        payload = _payload(
            step.context,
            self._remote_base_dir,
            self._dynamic_partitions,
            self.relay.steps.values(),
            self._earlier_adoptions,
            self._plan_step_keys,
            history,
            self._shipment,
        )
        root = root_run_id(run)
        meta = {
            "step_key": step.step_key,
            "run_id": run.run_id,
            "root_run_id": root,
            "job_name": job_name(root, step.step_key),
            "attempt": attempt,
        }
        return {PAYLOAD_FILE: payload.to_json().encode(), META_FILE: json.dumps(meta).encode()}

    def _script_files(self, run: DagsterRun, folder: str, packed: bool) -> dict[str, bytes]:
        """The batch script of the job whose folder is ``folder``, and the environment it reads."""
        env = dict(self._env)
        python = self._python
        origin = run.job_code_origin
        working_directory = origin.repository_origin.code_pointer.working_directory if origin else None
        if self._shipment is not None and origin is not None:
            python = self._shipment.python
            working_directory = self._shipment.working_directory(origin)
            env = self._shipment.step_environment(env)
        script = render_script(
            setup=self._setup, working_directory=working_directory, python=python, step_folder=folder, packed=packed
        )
        return {ENV_FILE: render_env_file(env).encode(), SCRIPT_FILE: script.encode()}

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        step_key = _single_step_key(step_handler_context)
        if step_key in self._unsubmittable:
            return CheckStepHealthResult.unhealthy(self._unsubmittable.pop(step_key))
        step = self.relay.steps.get(step_key)
        if step is None:
            # Asked about a step this worker did not submit: the run is resuming after its
            # previous worker died (StepDelegatingExecutor.execute, resume_from_failure). An
            # adopted job is tracked from now on: the next health checks answer from its state.
            if not self.adoption.at_health_check(step_handler_context, step_key):
                return CheckStepHealthResult.unhealthy("the step has no Slurm job to wait for: it is submitted again")
            return CheckStepHealthResult.healthy()
        if step.outcome is not None:
            return CheckStepHealthResult.healthy()
        if (packed := self._packed_step_ended(step_handler_context, step)) is not None:
            return packed
        if step.drained:
            if _terminated(step_handler_context.instance, step_handler_context.dagster_run):
                # The launcher cancels a terminated run's jobs before this worker hears of it
                # (a signal, or its heartbeat from another host), and it then ends the run
                # CANCELED: a step failure now would misname a user's termination.
                return CheckStepHealthResult.healthy()
            return CheckStepHealthResult.unhealthy(
                explain_missing_outcome(step, self._client.transport, self.timing.journal_grace)
            )
        if step.unknown_since is not None and time.monotonic() - step.unknown_since > UNKNOWN_GRACE_SECONDS:
            # The job may still run somewhere: cancel it, so that it cannot report an outcome
            # after the executor has failed the step.
            self.relay.give_up(step)
            return CheckStepHealthResult.unhealthy(
                f"Slurm job {step.job.job_id} is neither in squeue nor in sacct after {UNKNOWN_GRACE_SECONDS:.0f}s; "
                "it was cancelled and nothing more of it is relayed"
            )
        return CheckStepHealthResult.healthy()

    def _packed_step_ended(self, context: StepHandlerContext, step: TrackedStep) -> CheckStepHealthResult | None:
        """The health of a packed step that ended without its outcome, or that its pack never
        started (the pack may still run its other steps); ``None`` for any other step."""
        if not step.packed or step.outcome is not None:
            return None
        if step.journal_ended and step.end_cause is not None and step.end_cause != UNSTARTED:
            return CheckStepHealthResult.unhealthy(explain_packed_end(step, self._client.transport))
        if (step.journal_ended and step.end_cause == UNSTARTED) or (step.drained and step.journal_offset == 0):
            # Never started: the pack said so, or it ended, killed outright, with nothing in the
            # step's journal.
            return self._submit_again(context, step)
        return None

    def _submit_again(self, context: StepHandlerContext, step: TrackedStep) -> CheckStepHealthResult:
        """Submit again a step its pack never started (and never will: it stopped starting steps,
        or it has ended; packs are never requeued)."""
        if self._cancelled or _terminated(context.instance, context.dagster_run):
            return CheckStepHealthResult.healthy()  # the user's termination stopped the pack
        # Never started, and the pack's worker has stopped starting steps: submitted again,
        # under a claim that knows the pack (the step's last job); not forever.
        del self.relay.steps[step.step_key]
        self._unstarted[step.step_key] = self._unstarted.get(step.step_key, 0) + 1
        if self._unstarted[step.step_key] > _SUBMIT_ATTEMPTS:
            return CheckStepHealthResult.unhealthy(
                f"{_SUBMIT_ATTEMPTS + 1} packs in a row stopped before starting step {step.step_key} (the last: Slurm "
                f"job {step.job.job_id}); see its stderr in its folder. Raise the executor's pack.time (or the "
                "steps' time), lower pack.max_steps, or tag the step dagster-slurm/pack: 'false'."
            )
        context.instance.report_engine_event(
            f"Slurm job {step.job.job_id} stopped starting steps (its time limit, a signal, or it was killed) "
            f"before step {step.step_key}; nothing of the step ran, and it is submitted again.",
            context.dagster_run,
            EngineEventData(metadata={SLURM_JOB_ID: MetadataValue.text(step.job.job_id)}),
            step_key=step.step_key,
        )
        self._launched.append(_Launched(context, step.step_key, frozenset({step.job.job_id})))
        return CheckStepHealthResult.healthy()

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        # The executor terminates running steps one call each; one scancel covers all of them.
        self.stop_jobs(step_handler_context.instance, step_handler_context.dagster_run)
        yield from ()

    def stop_jobs(self, instance: DagsterInstance, dagster_run: DagsterRun) -> None:
        """The run worker is stopping with steps in flight: cancel their jobs if the user
        terminated the run, and leave them running for a resume or retry otherwise."""
        if self._cancelled or self._relay is None:
            return
        self._cancelled = True
        # A pack's id once, however many of its steps are in flight.
        jobs = list(dict.fromkeys(s.job.job_id for s in self._relay.steps.values() if not s.drained))
        if not _terminated(instance, dagster_run):
            # SIGTERM to the run worker (a deploy, a restart, a closed laptop) or an error in it
            # is not the user's termination: the steps' jobs go on, for a resumed or retried run.
            instance.report_engine_event(
                f"The run worker stopped without the run being terminated; Slurm jobs {', '.join(jobs) or '(none)'} "
                "keep running and a resumed or retried run picks them up.",
                dagster_run,
                EngineEventData(metadata={SLURM_JOB_IDS: MetadataValue.text(" ".join(jobs))}),
            )
            return
        if jobs:
            self._client.cancel(jobs)
            report_cancelled(instance, dagster_run, jobs)

    def _find_uncertain_submissions(self, jobs: Sequence["_Job"]) -> dict[str, SubmittedJob]:
        """The jobs that submissions whose answer was lost created, by job name, where they
        exist: found by name and folder (which no other submission uses), in one look-up."""
        if not jobs:
            return {}
        context = jobs[0].steps[0].context
        since = created(context.instance, root_run_id(context.dagster_run))
        by_name = self._client.find_by_name([job.request.name for job in jobs], since)
        found = {}
        for job in jobs:
            matches = [j for j in by_name.get(job.request.name, []) if j.work_dir == job.request.folder]
            if matches:
                found[job.request.name] = SubmittedJob(
                    matches[0].job_id, matches[0].name, matches[0].submit_time or since
                )
        log.warning(
            "submissions uncertain; looked the jobs up by name",
            jobs=[job.request.name for job in jobs],
            found={name: job.job_id for name, job in found.items()},
        )
        return found

    def remove_run_folder(self, run: DagsterRun) -> None:
        """Remove the run's folder on the cluster, in the background there."""
        root = root_run_id(run)
        folder = run_folder(self._remote_base_dir, root, run.run_id)
        try:
            program = command("remove_run_folder", folder, lineage_folder(self._remote_base_dir, root), CLAIMS_DIR)
            self._client.transport.run(f"nohup {program} >/dev/null 2>&1 &")
        except TransportError as exc:
            log.warning("could not remove the run folder", folder=folder, error=str(exc))


@dataclass(frozen=True)
class _Launched:
    """A step launched and not yet submitted, and its jobs a submission must not duplicate."""

    context: StepHandlerContext
    step_key: str
    known: frozenset[str]

    def knowing(self, job_id: str) -> "_Launched":
        """This step, to be submitted again under a claim that also knows ``job_id``."""
        return _Launched(self.context, self.step_key, self.known | {job_id})


@dataclass(frozen=True)
class _Job:
    """A job to submit for ``steps``: one step's own, or a pack; each step's folder by key."""

    steps: list[_Launched]
    request: JobRequest
    folders: dict[str, str]
    step_options: Mapping[str, OptionValue]
    """What each step requested (a pack's allocation is larger)."""


# A step's output files, created before its job exists: a login node whose shared filesystem
# caches lookups (NFS, negative entries for up to acdirmax) never caches them as missing.
_STEP_OUTPUTS = (JOURNAL_FILE, "stdout", "stderr")


def _attempt(step: _Launched) -> int:
    known_state = step.context.execute_step_args.known_state
    return known_state.get_retry_state().get_attempt_count(step.step_key) if known_state else 0


def _with_folder(options: Mapping[str, OptionValue], folder: str) -> dict[str, OptionValue]:
    # The executor's own options go last: sbatch takes the last of repeated options.
    return {**options, "output": f"{folder}/stdout", "error": f"{folder}/stderr", "chdir": folder, **NO_EXPORT}


def _single_step_key(step_handler_context: StepHandlerContext) -> str:
    keys = step_handler_context.execute_step_args.step_keys_to_execute
    assert keys is not None and len(keys) == 1, "the Slurm step handler launches one step per job"
    return keys[0]


def _payload(
    step_handler_context: StepHandlerContext,
    remote_base_dir: str,
    dynamic_partitions: set[str],
    tracked: Iterable[TrackedStep],
    earlier: Adoptions,
    plan_step_keys: Sequence[str],
    history: AssetHistory,
    shipment: Shipment | None,
) -> StepPayload:
    run = step_handler_context.dagster_run
    instance = step_handler_context.instance
    # The instance ref can hold database credentials; the worker never uses it.
    args = changed(step_handler_context.execute_step_args, instance_ref=None)
    run, args = point_inputs_at_their_runs(run, args, tracked, earlier, plan_step_keys)
    if shipment is not None and run.job_code_origin is not None:
        # The step loads its job from the run's origin (_execute_step_command_body): the shipped copy.
        origin = shipment.origin(run.job_code_origin)
        run, args = changed(run, job_code_origin=origin), changed(args, job_origin=origin)
    plan_snapshot = None
    if run.has_repository_load_data and run.execution_plan_snapshot_id:
        plan_snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    return StepPayload(
        args=args,
        run=run,
        remote_base_dir=remote_base_dir,
        dynamic_partitions={name: list(instance.get_dynamic_partitions(name)) for name in dynamic_partitions},
        asset_history=history,
        execution_plan_snapshot=plan_snapshot,
    )


def _dynamic_partitions(job_def: JobDefinition) -> set[str]:
    """Names of the dynamic partition sets a job's assets use (compute nodes cannot query them)."""
    defs = [job_def.partitions_def] + [node.partitions_def for node in job_def.asset_layer.asset_graph.asset_nodes]
    names = set()
    for partitions_def in defs:
        dims = (
            [d.partitions_def for d in partitions_def.partitions_defs]
            if isinstance(partitions_def, MultiPartitionsDefinition)
            else [partitions_def]
        )
        names.update(d.name for d in dims if isinstance(d, DynamicPartitionsDefinition) and d.name)
    return names


def _terminated(instance: DagsterInstance, dagster_run: DagsterRun) -> bool:
    """Whether the user terminated the run (it is CANCELING or CANCELED in the instance)."""
    run = instance.get_run_by_id(dagster_run.run_id)
    return run is not None and run.status in (DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED)
