"""SlurmRunLauncher: run workers as detached processes on the Dagster host, steps on Slurm."""

import os
import signal
import time
from collections.abc import Mapping
from typing import Any

from dagster import DagsterEventType, DagsterRun, Field, Float, MetadataValue, Shape, StringSource

from dagster_slurm_launcher.connect import Cluster, connect, settings_from
from dagster_slurm_launcher.dagster_internals import (
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    EngineEventData,
    LaunchRunContext,
    ResumeRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster_slurm_launcher.executor.config import CONFIG_SCHEMA
from dagster_slurm_launcher.executor.lineage import root_run_id
from dagster_slurm_launcher.launcher.heartbeat import beat, interval_for, last_beat
from dagster_slurm_launcher.launcher.process import LOG_TAG, WorkerProcess, prune_logs, reap, spawn_detached
from dagster_slurm_launcher.launcher.run_worker import EXECUTE, RESUME, orders
from dagster_slurm_launcher.naming import JOB_NAME_PREFIX, run_folder
from dagster_slurm_launcher.run_events import SLURM_JOB_ID, metadata_values, report_cancelled
from dagster_slurm_launcher.slurm import JobInfo

_FORGET_AFTER_SECONDS = 86400.0


class SlurmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run's worker as a detached process on this host; its steps run on Slurm.

    The worker outlives the daemon or webserver that launched it, and is recorded in the run's
    tags (host, pid, start time, log file) so that run monitoring can tell when it died and
    resume the run with a new worker. Jobs that name no executor run with the Slurm executor,
    configured by ``executor`` (the ``slurm_executor`` config schema).

    Example ``dagster.yaml``:

    .. code-block:: yaml

        run_launcher:
          module: dagster_slurm_launcher
          class: SlurmRunLauncher
          config:
            executor:
              partition: debug
              time: "01:00:00"
    """

    def __init__(
        self,
        executor: Mapping[str, Any] | None = None,
        log_dir: str | None = None,
        log_retention_days: float = 30.0,
        worker_heartbeat_timeout: float = 300.0,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        if worker_heartbeat_timeout <= 0:
            raise ValueError(
                f"worker_heartbeat_timeout must be a positive number of seconds, not {worker_heartbeat_timeout}"
            )
        self._inst_data = inst_data
        self._executor_config = dict(executor or {})
        self._log_dir = log_dir
        self._log_retention_days = log_retention_days
        self._heartbeat_timeout = worker_heartbeat_timeout
        self._connected: Cluster | None = None
        self._spawned: list[int] = []
        # run id -> (last heartbeat value seen, when this process first saw it, when it last looked),
        # times by time.monotonic()
        self._heartbeats: dict[str, tuple[str, float, float]] = {}
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "executor": Field(
                Shape(CONFIG_SCHEMA),
                is_required=False,
                description="Slurm executor config for jobs that name no executor (and where to "
                "cancel jobs of terminated runs). Name an executor on a job or its Definitions to opt out.",
            ),
            "log_dir": Field(
                StringSource,
                is_required=False,
                description="Where run workers' logs go (default: run-workers/ under the instance directory).",
            ),
            "log_retention_days": Field(
                Float,
                is_required=False,
                default_value=30.0,
                description="Run workers' logs older than this are removed when a run is launched.",
            ),
            "worker_heartbeat_timeout": Field(
                Float,
                is_required=False,
                default_value=300.0,
                description="Seconds after which a run worker on another host (started by a webserver "
                "or a daemon elsewhere) whose heartbeat stopped is taken for dead, so that run "
                "monitoring resumes its run. Workers on this host are checked directly.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> "SlurmRunLauncher":
        return cls(inst_data=inst_data, **config_value)

    # Launching and resuming

    def launch_run(self, context: LaunchRunContext) -> None:
        self._start_worker(context.dagster_run, EXECUTE)

    @property
    def supports_resume_run(self) -> bool:
        return True

    def resume_run(self, context: ResumeRunContext) -> None:
        self._start_worker(context.dagster_run, RESUME)

    def _start_worker(self, run: DagsterRun, mode: str) -> None:
        origin = run.job_code_origin
        if origin is None:
            raise ValueError(f"run {run.run_id} has no code origin: it was not launched from a code location")
        self._spawned = reap(self._spawned)
        log_dir = self._log_dir or os.path.join(self._instance.root_directory, "run-workers")
        os.makedirs(log_dir, mode=0o700, exist_ok=True)
        prune_logs(log_dir, self._log_retention_days)
        log_path = os.path.join(log_dir, f"{run.run_id}.log")
        worker = spawn_detached(
            [origin.executable_path, "-m", "dagster_slurm_launcher.launcher.run_worker"],
            orders(
                mode,
                run.run_id,
                self._instance.get_ref(),
                self._executor_config,
                log_path,
                interval_for(self._heartbeat_timeout),
            ),
            log_path,
            cwd=origin.repository_origin.code_pointer.working_directory,
            env=os.environ,
        )
        self._spawned.append(worker.pid)
        beat(self._instance, run.run_id)  # from now on, this run's worker is judged by its heartbeat
        # Recorded before returning: run monitoring must never judge a resumed run by the tags
        # of the worker that died (the new worker records the same tags when it starts).
        tags = worker.tags(log_path)
        self._instance.add_run_tags(run.run_id, tags)
        self._instance.report_engine_event(
            f"{'Resumed' if mode == RESUME else 'Started'} run worker (pid {worker.pid} on {worker.host}); "
            f"its log is {log_path}",
            run,
            EngineEventData(metadata={k.split("/")[-1]: MetadataValue.text(v) for k, v in tags.items()}),
            cls=self.__class__,
        )

    # Health

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        self._spawned = reap(self._spawned)
        worker = WorkerProcess.from_tags(run.tags)
        if worker is None:
            return CheckRunHealthResult(
                WorkerStatus.UNKNOWN, "the run has no run worker tags: its launch did not finish"
            )
        state = worker.state()
        if state == "running":
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(worker.pid))
        if state == "elsewhere":
            silent = self._silent_for(run)
            if silent is None or silent < self._heartbeat_timeout:
                # Anything but RUNNING makes run monitoring resume the run: a worker that still
                # beats must not be doubled.
                return CheckRunHealthResult(
                    WorkerStatus.RUNNING,
                    f"run worker runs on {worker.host}; judged by its heartbeat",
                    run_worker_id=str(worker.pid),
                )
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"run worker pid {worker.pid} on {worker.host} has not reported for {silent:.0f}s: its host may be "
                f"gone; its log is {run.tags.get(LOG_TAG)} on that host",
                run_worker_id=str(worker.pid),
            )
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker pid {worker.pid} on {worker.host} is gone; its log is {run.tags.get(LOG_TAG)}",
            run_worker_id=str(worker.pid),
        )

    def _silent_for(self, run: DagsterRun) -> float | None:
        """Seconds this process has seen the run's heartbeat unchanged; ``None`` for a worker
        started by an earlier release, which does not beat.

        Measured on this process's monotonic clock from the first time it saw the value, never
        by comparing the worker host's clock with ours: a restarted daemon waits a full timeout.
        """
        value = last_beat(self._instance, run.run_id)
        if value is None:
            return None
        now = time.monotonic()
        # Finished runs are no longer checked: forget those not looked at for a day (however
        # far apart run monitoring's passes are, a run it still checks is never forgotten).
        self._heartbeats = {k: v for k, v in self._heartbeats.items() if now - v[2] < _FORGET_AFTER_SECONDS}
        seen, since, _ = self._heartbeats.get(run.run_id, (None, now, now))
        if seen != value:
            since = now
        self._heartbeats[run.run_id] = (value, since, now)
        return now - since

    def get_run_worker_debug_info(self, run: DagsterRun, include_container_logs: bool | None = True) -> str | None:
        worker = WorkerProcess.from_tags(run.tags)
        described = "none recorded" if worker is None else f"pid {worker.pid} on {worker.host}, {worker.state()}"
        lines = [f"run worker: {described}"]
        log_path = run.tags.get(LOG_TAG)
        if log_path:
            lines.append(f"log: {log_path}")
            if include_container_logs and os.path.exists(log_path):
                with open(log_path, "rb") as f:
                    f.seek(max(0, os.path.getsize(log_path) - 4000))
                    lines.append(f.read().decode(errors="replace"))
        try:
            jobs = self._slurm_jobs(run)
        except Exception as exc:  # debug info must not fail run monitoring
            lines.append(f"Slurm jobs: could not be listed ({exc})")
        else:
            lines.append(
                "Slurm jobs: " + (", ".join(f"{j.job_id} {j.state.value}" for j in jobs) or "none in the queue")
            )
        return "\n".join(lines)

    # Termination

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        worker = WorkerProcess.from_tags(run.tags)
        # The worker first, so that it submits nothing more, whatever becomes of the scancel.
        # It sees the run CANCELING and reports it CANCELED; without one, nobody else will. A
        # worker on another host sees CANCELING at its next heartbeat and interrupts itself.
        signalled = worker is not None and (
            worker.signal(signal.SIGTERM)
            or (worker.state() == "elsewhere" and last_beat(self._instance, run_id) is not None)
        )
        try:
            jobs = [info.job_id for info in self._slurm_jobs(run) if not info.is_terminal]
            if jobs:
                self._cluster().client.cancel(jobs)
                report_cancelled(self._instance, run, jobs, cls=self.__class__)
        finally:
            if not signalled:
                self._instance.report_run_canceled(run, message="Run terminated; its run worker was not running.")
        return True

    def _slurm_jobs(self, run: DagsterRun) -> list[JobInfo]:
        """The run's jobs still in the controller: submitted from the run's folder, or adopted
        by it from an earlier run of its lineage."""
        root = root_run_id(run)
        cluster = self._cluster()
        folder = run_folder(cluster.remote_base_dir, root, run.run_id) + "/"
        events = (DagsterEventType.STEP_WORKER_STARTING, DagsterEventType.ENGINE_EVENT)
        tracked = {job_id for _, job_id in metadata_values(self._instance, run.run_id, events, SLURM_JOB_ID)}
        return [
            info
            for info in cluster.client.queued_with_prefix(f"{JOB_NAME_PREFIX}-{root}-")
            if info.job_id in tracked or (info.work_dir or "").startswith(folder)
        ]

    def _cluster(self) -> Cluster:
        # Connected on first use: launching runs needs no connection to the cluster.
        if self._connected is None:
            self._connected = connect(settings_from(self._executor_config))
        return self._connected

    def dispose(self) -> None:
        if self._connected is not None:
            self._connected.client.transport.close()
