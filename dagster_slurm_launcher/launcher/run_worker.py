"""The run worker the SlurmRunLauncher starts: ``python -m dagster_slurm_launcher.launcher.run_worker``.

It reads its orders from stdin (never argv: the instance's config may hold credentials, and
argv is world-readable in ``ps``), detaches from the launcher, and executes or resumes one run
exactly as ``dagster api execute_run`` / ``dagster api resume_run`` do.
"""

import json
import sys
from typing import Any

from dagster import DagsterInstance, deserialize_value, serialize_value

from dagster_slurm_launcher.dagster_internals import (
    InstanceRef,
    capture_interrupts,
    execute_run_command_body,
    replace_default_executor,
    resume_run_command_body,
)
from dagster_slurm_launcher.executor import slurm_executor
from dagster_slurm_launcher.launcher.heartbeat import DEFAULT_INTERVAL, beat, start_heartbeat
from dagster_slurm_launcher.launcher.process import WorkerProcess, detach

EXECUTE = "execute"
RESUME = "resume"


def orders(
    mode: str,
    run_id: str,
    instance_ref: InstanceRef,
    default_executor: dict[str, Any],
    log_path: str,
    heartbeat_interval: float,
) -> bytes:
    """What :func:`main` reads on stdin."""
    return json.dumps(
        {
            "mode": mode,
            "run_id": run_id,
            "instance_ref": serialize_value(instance_ref),
            "default_executor": default_executor,
            "log_path": log_path,
            "heartbeat_interval": heartbeat_interval,
        }
    ).encode()


def make_slurm_the_default_executor(run_config: dict[str, Any], executor_config: dict[str, Any]) -> None:
    """Give jobs that name no executor the Slurm executor, in this process only. A run whose
    config configures Dagster's default executor (an ``execution`` section) asked for it, and
    keeps it."""
    if "execution" in run_config:
        return
    replace_default_executor(slurm_executor.configured(executor_config, name="slurm"))


def main() -> int:
    order = json.loads(sys.stdin.buffer.read())
    detach()
    body = {EXECUTE: execute_run_command_body, RESUME: resume_run_command_body}[order["mode"]]
    instance_ref = deserialize_value(order["instance_ref"], InstanceRef)
    me = WorkerProcess.current()
    with capture_interrupts(), DagsterInstance.from_ref(instance_ref) as instance:
        # Before the run is marked STARTED: a started run always names its live worker, even
        # if the launcher died right after starting it.
        instance.add_run_tags(order["run_id"], me.tags(order["log_path"]))
        beat(instance, order["run_id"])
        # .get: the launcher may be of an earlier release than this worker (another interpreter).
        interval = order.get("heartbeat_interval", DEFAULT_INTERVAL)
        stop_beating = start_heartbeat(instance_ref, order["run_id"], me, interval)
        try:
            run = instance.get_run_by_id(order["run_id"])
            if run is not None:
                make_slurm_the_default_executor(dict(run.run_config), order["default_executor"])
            return body(order["run_id"], instance, lambda _event: None, set_exit_code_on_failure=True)
        finally:
            stop_beating.set()


if __name__ == "__main__":
    sys.exit(main())
