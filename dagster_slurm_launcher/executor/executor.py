"""The Slurm executor of a run: Dagster's step-delegating executor with a Slurm step handler.

Imported on the Dagster host only, when a run's executor is created (see executor.definition).
"""

from collections.abc import Iterator
from typing import Any

from dagster import DagsterEvent, DagsterExecutionInterruptedError, Executor, InitExecutorContext

from dagster_slurm_launcher.connect import Cluster, connect, settings_from
from dagster_slurm_launcher.dagster_internals import (
    ExecutionPlan,
    PlanOrchestrationContext,
    PollingStepDelegatingExecutor,
    RetryMode,
)
from dagster_slurm_launcher.executor.config import (
    SBATCH_TAG,
    PackConfig,
    SbatchOptions,
    parse_sbatch_tag,
    refuse_shell_from_run_config,
    ship_config,
    step_environment,
)
from dagster_slurm_launcher.executor.relay import Timing
from dagster_slurm_launcher.executor.step_handler import SlurmStepHandler
from dagster_slurm_launcher.logs import get_logger
from dagster_slurm_launcher.slurm import SlurmError
from dagster_slurm_launcher.slurm.shared_status import SharedStatus
from dagster_slurm_launcher.transport import TransportError

log = get_logger(__name__)


# How long a finished run waits, beyond the journal grace period, for its last jobs to exit
# and their journals to end, to report their accounting.
DRAIN_SECONDS = 60.0


class SlurmExecutor(PollingStepDelegatingExecutor):
    """Runs each step as a Slurm job and relays the steps' journals into the instance."""

    def __init__(self, step_handler: SlurmStepHandler, debug_mode: bool, **kwargs: Any) -> None:
        super().__init__(step_handler, **kwargs)
        self._step_handler = step_handler
        self._debug_mode = debug_mode

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        # Every step's tag is checked before the first job is submitted.
        for step in execution_plan.steps:
            if SBATCH_TAG in step.tags:
                parse_sbatch_tag(step.key, step.tags[SBATCH_TAG])
        self._step_handler.start(plan_context)
        failed = False
        try:
            for event in super().execute(plan_context, execution_plan):
                failed = failed or event.is_step_failure
                yield event
        except DagsterExecutionInterruptedError:
            # With run monitoring on, StepDelegatingExecutor.execute does not terminate steps
            # when interrupted (instance.run_will_resume), even for a run the user terminated:
            # the launcher's scancel is then the only one, and it may have failed.
            self._step_handler.stop_jobs(plan_context.instance, plan_context.dagster_run)
            raise
        try:
            self._step_handler.relay.drain(timeout=self._step_handler.timing.journal_grace + DRAIN_SECONDS)
        except (SlurmError, TransportError) as exc:
            # Every outcome is recorded; only the last accounting and logs are missing.
            log.warning("could not drain the run's last jobs", error=str(exc))
        if not failed and not self._debug_mode:
            self._step_handler.remove_run_folder(plan_context.dagster_run)

    def before_reading_events(self) -> None:
        # StepDelegatingExecutor.execute launches every ready step, then reads events: the
        # steps launched since the last read are submitted together here. Relaying the
        # journals just before Dagster reads the run's new events keeps the whole run worker
        # single-threaded.
        self._step_handler.submit_launched()
        self._step_handler.relay.poll_if_due()

    def launches_waiting(self) -> bool:
        return self._step_handler.launches_waiting


def shared_status(cluster: Cluster) -> SharedStatus:
    """The status snapshot this host's run workers share for ``cluster``."""
    # Younger than the interval: a worker's own last query must be stale by its next poll.
    max_age = 0.8 * cluster.settings.poll_interval
    return SharedStatus(cluster.client, cluster.settings.ssh_control_dir, cluster.key, max_age=max_age)


def create_executor(init_context: InitExecutorContext, *, unconfigured: bool) -> Executor:
    """The executor :func:`~dagster_slurm_launcher.slurm_executor` creates for a run.

    Args:
        unconfigured: the job names ``slurm_executor`` itself, so its config is the run's.
    """
    config = init_context.executor_config
    settings = settings_from(config)
    if unconfigured:
        refuse_shell_from_run_config(config, trusted=settings.trust_run_config)
    cluster = connect(settings)
    handler = SlurmStepHandler(
        client=cluster.client,
        sbatch_options=SbatchOptions.from_config(config),
        remote_base_dir=cluster.remote_base_dir,
        python=settings.python,
        setup=config["setup"],
        env=step_environment(config["env_vars"]),
        status=shared_status(cluster),
        timing=Timing(settings.poll_interval, settings.journal_grace, read_failure_timeout=settings.reconnect_timeout),
        ship=ship_config(config),
        pack=PackConfig.from_config(config),
    )
    return SlurmExecutor(
        handler,
        debug_mode=config["debug_mode"],
        retries=RetryMode.from_config(config["retries"]),
        max_concurrent=config.get("max_concurrent"),
        sleep_seconds=min(0.5, settings.poll_interval),
        check_step_health_interval_seconds=max(1, int(settings.poll_interval)),
    )
