"""A run worker for tests, in a process of its own: ``python tests/run_worker.py INSTANCE_REF FILE JOB MODE``.

MODE is ``run:``, ``resume:<run id>`` (as ``dagster api resume_run`` does), ``reexecute:<run id>``
(from failure) or ``reexecute-all:<run id>``. ``LAB_SUBMIT_HOOK`` wraps the Slurm client's real
submission (see :func:`tests.lab.start_run_worker`).
"""

import dataclasses
import os
import signal
import subprocess
import sys
import time

from dagster import DagsterInstance, ReexecutionOptions, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.execution.api import execute_run_iterator
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import deserialize_value

from dagster_slurm_launcher.executor import step_handler
from dagster_slurm_launcher.slurm import SlurmClient, SubmissionUncertain, SubmittedJob

hook = os.environ["LAB_SUBMIT_HOOK"]
real_submit_all = SlurmClient.submit_all


def submit_all(self, requests):
    if hook.startswith("barrier:"):
        _, path, n = hook.split(":")
        open(os.path.join(path, str(os.getpid())), "w").close()
        while len(os.listdir(path)) < int(n):
            time.sleep(0.05)
    outcomes = real_submit_all(self, requests)
    jobs = [o for o in outcomes if isinstance(o, SubmittedJob)]
    if hook == "kill" and jobs:
        os.kill(os.getpid(), signal.SIGKILL)
    if hook == "uncertain":  # the connection broke after sbatch ran: its answer is lost
        return [
            SubmissionUncertain("connection lost after sbatch was sent", o.name) if isinstance(o, SubmittedJob) else o
            for o in outcomes
        ]
    if hook == "phantom":  # the controller lost the job (its state wiped): no query knows the id
        if jobs:
            subprocess.run(["scancel", *(job.job_id for job in jobs)], check=True)
        step_handler.UNKNOWN_GRACE_SECONDS = 5.0
        return [
            dataclasses.replace(o, job_id=str(int(o.job_id) + 1000000)) if isinstance(o, SubmittedJob) else o
            for o in outcomes
        ]
    return outcomes


def main() -> None:
    SlurmClient.submit_all = submit_all
    instance = DagsterInstance.from_ref(deserialize_value(sys.argv[1], InstanceRef))
    job = ReconstructableJob.for_file(sys.argv[2], sys.argv[3])
    mode, _, run_id = sys.argv[4].partition(":")
    if mode == "resume":  # as `dagster api resume_run` does
        for _ in execute_run_iterator(job, instance.get_run_by_id(run_id), instance, resume_from_failure=True):
            pass
    elif mode == "reexecute":
        execute_job(
            job, instance, reexecution_options=ReexecutionOptions.from_failure(run_id, instance), raise_on_error=False
        )
    elif mode == "reexecute-all":
        execute_job(job, instance, reexecution_options=ReexecutionOptions(parent_run_id=run_id), raise_on_error=False)
    else:
        execute_job(job, instance, raise_on_error=False)


if __name__ == "__main__":
    main()
