"""A run worker's heartbeat: how a daemon on another host tells that the worker is alive.

A daemon can inspect a process only on its own host. A worker started elsewhere (by a webserver
on another machine, or by a daemon whose container was since replaced) rewrites a run tag
every interval; the launcher takes a worker whose tag stops changing for its timeout as dead,
and run monitoring resumes the run. The worker also reads the run's tags each beat: once they
name another worker, the run was resumed without it, and it stops at once rather than run the
run twice.
"""

import os
import threading

from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from dagster_slurm_launcher.launcher.process import WorkerProcess, heartbeat
from dagster_slurm_launcher.logs import get_logger

log = get_logger(__name__)

# Exit status of a worker that found its run resumed by another worker.
REPLACED = 75


def interval_for(timeout: float) -> float:
    """How often a worker beats, for a launcher that waits ``timeout`` seconds: several beats
    fit in the timeout, so one slow database write does not get a live worker doubled."""
    return timeout / 5


def start_heartbeat(instance_ref: InstanceRef, run_id: str, me: WorkerProcess, interval: float) -> threading.Event:
    """Beat for ``run_id`` in a daemon thread until the returned event is set."""
    stop = threading.Event()
    threading.Thread(target=_beat, args=(instance_ref, run_id, me, interval, stop), name="heartbeat", daemon=True).start()
    return stop


def _beat(instance_ref: InstanceRef, run_id: str, me: WorkerProcess, interval: float, stop: threading.Event) -> None:
    # An instance of its own: the run's thread uses its instance without expecting company.
    with DagsterInstance.from_ref(instance_ref) as instance:
        while not stop.wait(interval):
            try:
                run = instance.get_run_by_id(run_id)
                if run is None or run.is_finished:
                    return
                named = WorkerProcess.from_tags(run.tags)
                if named != me:
                    log.error("run resumed by another run worker; stopping", run_id=run_id, other=named)
                    # Not sys.exit: the run belongs to the other worker now, and nothing here
                    # may report on it. The other worker skips events this one stored.
                    os._exit(REPLACED)
                instance.add_run_tags(run_id, heartbeat())
            except Exception:  # a missed beat is survivable; the timeout allows for several
                log.warning("could not record the run worker's heartbeat", run_id=run_id, exc_info=True)
