"""Benchmark: resuming a run with many steps in flight, as run monitoring does after its run
worker died.

Run on the lab cluster (after `sudo deploy/lab/up` and `deploy/lab/python-env`):

    set -a; source deploy/lab/lab.env; set +a
    /opt/dagster-slurm-lab/venv/bin/python bench/resume.py [STEPS]   # default 300

Starts a fan-out of STEPS steps (bench/fanout_job.py: the leaves sleep 10 s, packed, 32 at a
time), SIGKILLs the run worker once every leaf was submitted, and resumes the run in a new
worker (``execute_run_iterator`` with ``resume_from_failure``, what ``dagster api resume_run``
does). Prints how long the resumed worker took to take over every leaf's job (from its start to
its last "Adopted" event), its CPU, the SSH commands it sent, and checks that each leaf ran once.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, instance_for_test
from dagster._serdes import serialize_value

RUN_WORKER = """
import sys
from dagster import DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.execution.api import execute_run_iterator
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import deserialize_value

from dagster_slurm_launcher.transport.ssh import SSHTransport

# Counts the commands this worker sends to the login node.
commands = 0
real_run = SSHTransport.run


def run(self, *args, **kwargs):
    global commands
    commands += 1
    return real_run(self, *args, **kwargs)


SSHTransport.run = run
instance = DagsterInstance.from_ref(deserialize_value(sys.argv[1], InstanceRef))
job = ReconstructableJob.for_file(sys.argv[2], sys.argv[3])
if len(sys.argv) > 4:
    for _ in execute_run_iterator(job, instance.get_run_by_id(sys.argv[4]), instance, resume_from_failure=True):
        pass
else:
    execute_job(job, instance, raise_on_error=False)
with open(sys.argv[5] if len(sys.argv) > 5 else "/dev/null", "w") as f:
    f.write(str(commands))
"""


def worker(instance: DagsterInstance, code: Path, job_name: str, *resume: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_WORKER, serialize_value(instance.get_ref()), str(code), job_name, *resume],
        cwd=code.parent,
    )


def count(instance: DagsterInstance, run_id: str, event_type: DagsterEventType) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in instance.get_records_for_run(run_id, of_type=event_type).records:
        key = record.event_log_entry.step_key
        counts[key] = counts.get(key, 0) + 1
    return counts


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    job_name = "resume_packed"
    code_dir = Path(os.environ["DAGSTER_SLURM_LAB_SHARED_DIR"]) / "code" / f"bench-{uuid.uuid4().hex[:8]}"
    code_dir.mkdir(mode=0o755)
    code = code_dir / "fanout_job.py"
    source = Path(__file__).with_name("fanout_job.py").read_text()
    source = source.replace("\nSTEPS = 100\nSLEEP = 0\n", f"\nSTEPS = {steps}\nSLEEP = 10\n")
    code.write_text(source)
    code.chmod(0o644)
    try:
        with tempfile.TemporaryDirectory() as home, instance_for_test(temp_dir=home) as instance:
            first = worker(instance, code, job_name)
            deadline = time.monotonic() + 900
            run_id = None
            while time.monotonic() < deadline:
                runs = instance.get_runs()
                if runs:
                    run_id = runs[0].run_id
                    if len(count(instance, run_id, DagsterEventType.STEP_WORKER_STARTING)) == steps:
                        break
                time.sleep(1)
            assert run_id is not None, "no run"
            first.send_signal(signal.SIGKILL)
            first.wait()
            started, started_wall = time.monotonic(), time.time()
            count_file = code_dir / "commands"
            usage = os.wait4(worker(instance, code, job_name, run_id, str(count_file)).pid, 0)[2]
            resumed = time.monotonic() - started
            commands = int(count_file.read_text())
            adopted = [
                r.event_log_entry.timestamp
                for r in instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
                if (r.event_log_entry.dagster_event.message or "").startswith("Adopted Slurm job")
            ]
            assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
            starts = count(instance, run_id, DagsterEventType.STEP_START)
            assert len(starts) == steps and set(starts.values()) == {1}, starts
    finally:
        shutil.rmtree(code_dir)
    print(f"steps                                   {steps} (packed, leaves sleep 10 s)")
    print(f"steps adopted by the resumed worker     {len(adopted):8d}")
    print(f"from its start to its last adoption     {max(adopted) - started_wall:8.1f} s")
    print(f"resumed worker: wall, CPU               {resumed:8.1f} s   {usage.ru_utime + usage.ru_stime:.1f} s")
    print(f"SSH commands of the resumed worker      {commands:8d}")
    print("each step started once                       yes")


if __name__ == "__main__":
    main()
