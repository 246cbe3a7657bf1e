"""A run worker's heartbeat: how a daemon on another host tells that the worker is alive.

A daemon can inspect a process only on its own host. A worker started elsewhere (by a webserver
on another machine, or by a daemon whose container was since replaced) rewrites a value in the
instance's key-value store every interval; the launcher takes a worker whose value stops
changing for its timeout as dead, and run monitoring resumes (or fails) the run. Not a run tag:
``add_run_tags`` rewrites the whole run record, and a beat racing the run's own updates could
undo them.

Each beat also reads the run. A worker whose run's tags name another worker was taken for dead
and replaced: it stops at once, without touching the run. A worker whose run was terminated
(CANCELING, or already CANCELED by run monitoring: the launcher could not signal a worker on
another host) interrupts itself, as
Dagster's own cancellation does, and cancels its jobs. A worker whose run another process
finished (failed by run monitoring) stops.
"""

import os
import threading
import time

from dagster import DagsterInstance, DagsterRunStatus

from dagster_slurm_launcher.dagster_internals import InstanceRef, send_interrupt
from dagster_slurm_launcher.launcher.process import WorkerProcess
from dagster_slurm_launcher.logs import get_logger

log = get_logger(__name__)

# Exit status of a worker that found its run resumed by another worker, or finished without it.
REPLACED = 75
DEFAULT_INTERVAL = 60.0


def interval_for(timeout: float) -> float:
    """How often a worker beats, for a launcher that waits ``timeout`` seconds: several beats
    fit in the timeout, so that a few failed writes do not get a live worker doubled."""
    return timeout / 5


def _key(run_id: str) -> str:
    return f"dagster-slurm/run-worker-heartbeat/{run_id}"


def beat(instance: DagsterInstance, run_id: str) -> None:
    """Record that the run's worker is alive. Only the value's changing matters: it is never
    compared with another host's clock."""
    instance.run_storage.set_cursor_values({_key(run_id): f"{time.time():.3f}"})


def last_beat(instance: DagsterInstance, run_id: str) -> str | None:
    """The run's worker's latest heartbeat; ``None`` for a worker of an earlier release."""
    return instance.run_storage.get_cursor_values({_key(run_id)}).get(_key(run_id))


def start_heartbeat(instance_ref: InstanceRef, run_id: str, me: WorkerProcess, interval: float) -> threading.Event:
    """Beat for ``run_id`` in a daemon thread until the returned event is set."""
    stop = threading.Event()
    threading.Thread(
        target=_beat, args=(instance_ref, run_id, me, interval, stop), name="heartbeat", daemon=True
    ).start()
    return stop


def _beat(instance_ref: InstanceRef, run_id: str, me: WorkerProcess, interval: float, stop: threading.Event) -> None:
    # An instance of its own: the run's thread uses its instance without expecting company.
    with DagsterInstance.from_ref(instance_ref) as instance:
        interrupted, finished_beats = False, 0
        while not stop.wait(interval):
            try:
                run = instance.get_run_by_id(run_id)
                if run is None:
                    return
                if WorkerProcess.from_tags(run.tags) != me:
                    log.error("run resumed by another run worker; stopping", run_id=run_id)
                    # Not sys.exit: the run belongs to the other worker now, and nothing here
                    # may report on it. The other worker skips events this one stored.
                    os._exit(REPLACED)
                if run.status in (DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED) and not interrupted:
                    # CANCELED too: run monitoring may have given up waiting for this worker.
                    log.warning("run is being terminated; interrupting the run worker", run_id=run_id)
                    interrupted = True
                    send_interrupt()
                    continue
                if run.is_finished:
                    # This worker finishes its run moments before it exits; still here two
                    # beats later, the run was finished by someone else (run monitoring).
                    finished_beats += 1
                    if finished_beats >= 2:
                        log.error("run finished by another process; stopping", run_id=run_id, status=run.status.value)
                        os._exit(REPLACED)
                    continue
                beat(instance, run_id)
            except Exception:  # a missed beat is survivable; the timeout allows for several
                log.warning("could not record the run worker's heartbeat", run_id=run_id, exc_info=True)
