"""Every name this package takes from Dagster's private modules (``dagster._...``), in one place.

Dagster does not export these, and may move or change them in any release; checked with
dagster 1.13.27 and 1.13.29 (``tests/test_dagster_internals.py`` imports this module, so a release that
moves one fails there first). What the package relies on, by use:

- Running a run and a step the way ``dagster api execute_run`` / ``resume_run`` /
  ``execute_step`` do, in our own process: the ``_*_command_body`` functions, ``ExecuteStepArgs``.
- The step executor: ``StepDelegatingExecutor`` and the step-handler interface (what
  ``dagster_k8s`` builds on), the plan and orchestration contexts, retry configuration, and
  ``KnownExecutionState``/``PastExecutionState`` (which steps a retried run treats as done).
- The run launcher interface (``RunLauncher``, its contexts and health results) and
  ``ConfigurableClass`` for ``dagster.yaml``.
- The step worker's private instance: the in-memory storages, artifact storage, run
  coordinator and launcher it is built from, ``InstanceType``.
- Event and storage records the executor reads and writes (engine event data, asset records,
  event-log cursors, compute-log IO types, the local compute log manager, whose
  ``open_log_stream`` appends), and the tag names and thresholds of Dagster's
  data-version (provenance) code. Changing a field of any of them goes through ``changed``
  below, which knows how each kind is copied.
- Shipping a code location: ``JobPythonOrigin`` (whose code pointer is moved to the shipped
  copy) and ``recon_job_from_origin``, which loads a job from one as ``execute_step`` does.
- Interrupt handling: ``capture_interrupts``, ``send_interrupt``.
- A run's step keys from its stored execution plan snapshot
  (``DagsterInstance.get_execution_plan_snapshot``, not marked public): ``plan_step_keys``.
- The run's loggers (its ``@logger``s, or the default console logger) inside a
  ``DagsterLogManager``: ``run_loggers`` below.
- ``StepDelegatingExecutor._pop_events``, overridden by ``PollingStepDelegatingExecutor``
  below so that the Slurm executor submits launched steps and relays journals just before
  Dagster reads new events, and its ``_sleep_seconds``, skipped while launched steps wait.
- Three module-level swaps, done by the functions below: the default executor of jobs that name
  none, the SIGTERM re-mapping of Dagster's interrupt handling, and, while a step's in-memory
  storages are built, their alembic stamp (``stamp_alembic_rev`` as the in-memory storages'
  modules import it).
"""

import logging
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from dagster import (
    DagsterEvent,
    DagsterInstance,
    DagsterLogManager,
    DagsterRun,
    ExecutorDefinition,
    multi_or_in_process_executor,
)
from dagster._cli.api import _execute_run_command_body as execute_run_command_body
from dagster._cli.api import _execute_step_command_body as execute_step_command_body
from dagster._cli.api import _resume_run_command_body as resume_run_command_body
from dagster._core.definitions import job_definition
from dagster._core.definitions.data_version import (
    DATA_VERSION_TAG,
    INPUT_EVENT_POINTER_TAG_PREFIX,
    SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD,
)
from dagster._core.event_api import EventLogCursor
from dagster._core.events import EngineEventData
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
from dagster._core.execution.plan.outputs import StepOutputHandle
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.state import KnownExecutionState, PastExecutionState
from dagster._core.execution.plan.step import ExecutionStep
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.step_delegating import StepDelegatingExecutor
from dagster._core.executor.step_delegating.step_handler.base import (
    CheckStepHealthResult,
    StepHandler,
    StepHandlerContext,
)
from dagster._core.instance import InstanceType
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, ResumeRunContext, RunLauncher, WorkerStatus
from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
from dagster._core.origin import JobPythonOrigin
from dagster._core.run_coordinator import DefaultRunCoordinator
from dagster._core.snap import ExecutionPlanSnapshot
from dagster._core.storage.compute_log_manager import ComputeIOType
from dagster._core.storage.event_log import InMemoryEventLogStorage
from dagster._core.storage.event_log import in_memory as in_memory_event_log
from dagster._core.storage.event_log.base import AssetEntry, AssetRecord, EventLogStorage
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
from dagster._core.storage.root import LocalArtifactStorage
from dagster._core.storage.runs import InMemoryRunStorage
from dagster._core.storage.runs import in_memory as in_memory_runs
from dagster._core.storage.runs.base import RunStorage
from dagster._grpc.types import ExecuteStepArgs
from dagster._record import copy, is_record
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster._utils import interrupts, send_interrupt
from dagster._utils.hosted_user_process import recon_job_from_origin
from dagster._utils.interrupts import capture_interrupts


class PollingStepDelegatingExecutor(StepDelegatingExecutor):
    """Dagster's StepDelegatingExecutor, with a hook that runs each time it reads the run's new
    events: ``StepDelegatingExecutor.execute`` calls its private ``_pop_events`` once per loop
    iteration while steps are in flight, which is overridden here.

    Each iteration ends by launching the steps that became ready, then sleeping
    ``self._sleep_seconds``; while launched steps wait for the hook (to be submitted together),
    that sleep is skipped, so a step in a chain is not held back by it.
    """

    @abstractmethod
    def before_reading_events(self) -> None:
        """Runs just before each read of the run's new events from the event log."""

    @abstractmethod
    def launches_waiting(self) -> bool:
        """Whether steps launched since the last :meth:`before_reading_events` wait for it."""

    @property
    def _sleep_seconds(self) -> float:
        return 0.0 if self.launches_waiting() else self._idle_sleep_seconds

    @_sleep_seconds.setter
    def _sleep_seconds(self, seconds: float) -> None:  # StepDelegatingExecutor.__init__ sets it
        self._idle_sleep_seconds = seconds

    def _pop_events(self, instance: DagsterInstance, run_id: str, seen_storage_ids: set[int]) -> Sequence[DagsterEvent]:
        self.before_reading_events()
        return super()._pop_events(instance, run_id, seen_storage_ids)


T = TypeVar("T")


def changed(value: T, **fields: Any) -> T:
    """``value`` with ``fields`` changed.

    Dagster's events and records come in two kinds: NamedTuples (``EventLogEntry``,
    ``DagsterEvent``, ``AssetMaterialization``, ``KnownExecutionState``), copied with
    ``_replace``, and ``@record`` classes (``DagsterRun``, ``ExecuteStepArgs``,
    ``AssetCheckEvaluation``, ``AssetRecord``), copied through their constructor by
    ``dagster._record.copy`` so that their checks run.
    """
    if is_record(value):
        return copy(value, **fields)
    return value._replace(**fields)  # type: ignore[attr-defined]


def run_loggers(log: DagsterLogManager) -> Sequence[logging.Logger]:
    """The loggers a run's log manager passes each record to (the run's ``@logger``s, or the
    console logger), without its handlers (the instance's, which stores events):
    ``DagsterLogHandler._loggers`` of dagster/_core/log_manager.py."""
    return list(log._dagster_handler._loggers)


def replace_default_executor(executor_def: ExecutorDefinition) -> None:
    """Give jobs that name no executor ``executor_def``, in this process only.

    A job's executor is ``JobDefinition.executor_def``: the one the job or its ``Definitions``
    names, else the module-level ``DEFAULT_EXECUTOR_DEF`` of dagster/_core/definitions/
    job_definition.py, which is what is replaced here.
    """
    if job_definition.DEFAULT_EXECUTOR_DEF is not multi_or_in_process_executor:
        raise RuntimeError("this Dagster release chooses default executors differently: upgrade dagster-slurm-launcher")
    job_definition.DEFAULT_EXECUTOR_DEF = executor_def  # type: ignore[attr-defined]


def stop_sigterm_remapping() -> None:
    """Keep Dagster from turning SIGTERM into an interrupt: each time it swaps its SIGINT handler,
    ``dagster._utils.interrupts._replace_interrupt_signal`` re-maps SIGTERM onto it through
    ``setup_interrupt_handlers``, which is disabled here."""
    interrupts.setup_interrupt_handlers = lambda: None


@contextmanager
def unstamped_in_memory_storages() -> Iterator[None]:
    """Build in-memory storages without stamping their schema's alembic revision.

    ``InMemoryEventLogStorage.__init__`` and ``InMemoryRunStorage.__init__`` create their
    tables at the newest schema, then stamp it with ``stamp_alembic_rev``, which loads every
    migration script: about 0.15 s of CPU, a tenth of a trivial step's. A step's storages
    live for one step and are never migrated; only ``DagsterInstance.schema_str`` would read
    the stamp (and show no revision).
    """
    modules = (in_memory_event_log, in_memory_runs)
    stamps = [module.stamp_alembic_rev for module in modules]
    for module in modules:
        module.stamp_alembic_rev = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        yield
    finally:
        for module, stamp in zip(modules, stamps, strict=True):
            module.stamp_alembic_rev = stamp  # type: ignore[assignment]


def plan_step_keys(instance: DagsterInstance, run: DagsterRun) -> list[str]:
    """The keys of every step in ``run``'s execution plan (none if it has no stored plan)."""
    if run.execution_plan_snapshot_id is None:
        return []
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    return [step.key for step in snapshot.steps]


__all__ = [
    "DATA_VERSION_TAG",
    "INPUT_EVENT_POINTER_TAG_PREFIX",
    "SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD",
    "AssetEntry",
    "AssetRecord",
    "CheckRunHealthResult",
    "CheckStepHealthResult",
    "ComputeIOType",
    "ConfigurableClass",
    "ConfigurableClassData",
    "DefaultRunCoordinator",
    "EngineEventData",
    "EventLogCursor",
    "EventLogStorage",
    "ExecuteStepArgs",
    "ExecutionPlan",
    "ExecutionPlanSnapshot",
    "ExecutionStep",
    "InMemoryEventLogStorage",
    "InMemoryRunStorage",
    "InstanceRef",
    "InstanceType",
    "JobPythonOrigin",
    "KnownExecutionState",
    "LaunchRunContext",
    "LocalArtifactStorage",
    "LocalComputeLogManager",
    "NoOpComputeLogManager",
    "PastExecutionState",
    "PlanExecutionContext",
    "PlanOrchestrationContext",
    "PollingStepDelegatingExecutor",
    "ResumeRunContext",
    "RetryMode",
    "RunLauncher",
    "RunStorage",
    "StepDelegatingExecutor",
    "StepHandler",
    "StepHandlerContext",
    "StepOutputHandle",
    "SyncInMemoryRunLauncher",
    "WorkerStatus",
    "capture_interrupts",
    "changed",
    "execute_run_command_body",
    "execute_step_command_body",
    "get_retries_config",
    "plan_step_keys",
    "recon_job_from_origin",
    "replace_default_executor",
    "resume_run_command_body",
    "run_loggers",
    "send_interrupt",
    "stop_sigterm_remapping",
    "unstamped_in_memory_storages",
]
