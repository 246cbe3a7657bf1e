"""Benchmark: an N-step fan-out of trivial steps, four ways, from one run.

Run on the lab cluster (after `sudo deploy/lab/up` and `deploy/lab/python-env`):

    set -a; source deploy/lab/lab.env; set +a
    /opt/dagster-slurm-lab/venv/bin/python bench/fanout.py [STEPS]   # default 100
    /opt/dagster-slurm-lab/venv/bin/python bench/fanout.py STEPS --packed   # a and p only

Prints the wall time of
  a. N raw sbatch jobs of `python -c pass`, submitted over SSH, until all ended;
  b. N raw sbatch jobs of `python -c 'import dagster'`;
  c. the job under Dagster's multiprocess executor, no Slurm;
  d. the job under slurm_executor;
  p. the job under slurm_executor with packed steps (`pack: {cpus: 2}`), and its steps per second,
     the CPU it spends per step on the compute node and in the run worker, and the most steps per
     second this machine's cores could run at that cost;
and their ratios; e. the seconds to submit N held jobs (which never start) with raw sbatch and
through the executor's submission path; for d, how long the leaves (ready together) took to submit, the CPU per step
against b's (sacct's TotalCPU) and c's (c's whole process tree, per step), the run worker's
own CPU per step, Slurm RPCs per step (sdiag, all message types, the cluster
user), SSH logins (sshd's log), the run worker's peak RSS, and Slurm jobs per step.
"""

import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, instance_for_test
from dagster._serdes import serialize_value

from dagster_slurm_launcher import load_settings
from dagster_slurm_launcher.slurm import Claim, JobRequest, SlurmClient, SubmittedJob
from dagster_slurm_launcher.slurm.parse import parse_duration
from dagster_slurm_launcher.transport import make_transport

RUN_WORKER = """
import sys
from dagster import DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import deserialize_value

instance = DagsterInstance.from_ref(deserialize_value(sys.argv[1], InstanceRef))
execute_job(ReconstructableJob.for_file(sys.argv[2], sys.argv[3]), instance, raise_on_error=False)
"""


def rpcs_of(user: str) -> int:
    out = subprocess.run(["sdiag"], check=True, capture_output=True, text=True).stdout
    by_user = out.split("Remote Procedure Call statistics by user", 1)[1]
    match = re.search(rf"^\s*{re.escape(user)}\s+\(\s*\d+\)\s+count:(\d+)", by_user, re.M)
    return int(match.group(1)) if match else 0


def ssh_logins() -> int:
    return (Path(os.environ["DAGSTER_SLURM_LAB_DIR"]) / "log/sshd.log").read_text().count("Accepted publickey for")


def raw_sbatch(python: str, code: str, steps: int) -> tuple[float, str]:
    """Submit ``steps`` jobs of ``python -c CODE`` with plain sbatch over SSH and wait until all
    ended; the wall time and the jobs' name."""
    client = SlurmClient(make_transport(load_settings()))
    name = f"raw-{uuid.uuid4().hex[:8]}"
    wrap = shlex.quote(f"{python} -c {shlex.quote(code)}")
    submit = f"for i in $(seq {steps}); do sbatch --parsable --output=/dev/null --job-name={name} --wrap={wrap}; done"
    started = time.monotonic()
    result = client.transport.run(submit)
    assert result.ok, result.stderr
    while client.transport.run(f"squeue --noheader --name={name}").stdout.strip():
        time.sleep(0.5)
    return time.monotonic() - started, name


def held_submission(python: str, steps: int) -> tuple[float, float]:
    """Seconds to submit ``steps`` held jobs (they never start) with raw sbatch in one SSH
    command, and through the executor's path (SlurmClient.submit_all: a folder and a claim per
    job). On the lab the login node is the compute node: held, the jobs do not compete with
    their own submission for its 2 cores."""
    client = SlurmClient(make_transport(load_settings()))
    base = f"{load_settings().remote_base_dir}/bench/{uuid.uuid4().hex[:8]}"
    name = f"held-{uuid.uuid4().hex[:8]}"
    wrap = shlex.quote(f"{python} -c pass")
    raw = (
        f"for i in $(seq {steps}); do sbatch --hold --parsable --output=/dev/null --job-name={name} --wrap={wrap}; done"
    )
    started = time.monotonic()
    assert client.transport.run(raw).ok
    raw_seconds = time.monotonic() - started
    requests = [
        JobRequest(
            name=f"{name}-{i}",
            options={"hold": True, "output": f"{base}/{i}/stdout", "chdir": f"{base}/{i}"},
            claim=Claim(f"{base}/claims", frozenset()),
            folder=f"{base}/{i}",
            files={"job.sh": f"#!/bin/bash\n{python} -c pass\n".encode(), "step.json": b"{}" * 2000},
            script="job.sh",
            empty=("events.jsonl", "stdout", "stderr"),
        )
        for i in range(steps)
    ]
    started = time.monotonic()
    jobs = client.submit_all(requests)
    ours_seconds = time.monotonic() - started
    assert all(isinstance(job, SubmittedJob) for job in jobs), jobs
    client.transport.run(f"scancel --name={name}; rm -rf {base}")
    client.cancel([job.job_id for job in jobs])
    return raw_seconds, ours_seconds


def run_in_a_worker(instance: DagsterInstance, code: Path, job_name: str) -> tuple[float, int, str, float]:
    """Wall time of a run of ``job_name`` in a run worker process, its peak RSS in KiB, the run's
    id, and the CPU seconds of the run worker and every process it waited for (its steps' under
    the multiprocess executor)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    worker = subprocess.Popen(
        [sys.executable, "-c", RUN_WORKER, serialize_value(instance.get_ref()), str(code), job_name], cwd=code.parent
    )
    _, status, usage = os.wait4(worker.pid, 0)
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert os.waitstatus_to_exitcode(status) == 0
    run = next(r for r in instance.get_runs() if r.job_name == job_name)
    assert run.status == DagsterRunStatus.SUCCESS, run.status
    return elapsed, usage.ru_maxrss, run.run_id, cpu


def submission_seconds(instance: DagsterInstance, run_id: str) -> float:
    """From the root's success (on the compute node) to the last leaf's job submitted: the
    leaves become ready together. Includes the relay's latency, and on the lab the login node
    shares its 2 cores with the first leaves' jobs."""

    def entries(event_type: DagsterEventType) -> list:
        return [r.event_log_entry for r in instance.get_records_for_run(run_id, of_type=event_type).records]

    root_done = next(e.timestamp for e in entries(DagsterEventType.STEP_SUCCESS) if e.step_key == "root")
    last_submitted = max(e.timestamp for e in entries(DagsterEventType.STEP_WORKER_STARTING) if e.step_key != "root")
    return last_submitted - root_done


def accounting(name_prefix: str) -> tuple[Counter, list[float]]:
    """Jobs per name and each job's TotalCPU in seconds, from sacct, for names starting with
    ``name_prefix``."""
    out = subprocess.run(
        ["sacct", "--allusers", "-n", "-P", "-D", "--starttime=now-1days", "--format=JobName%80,TotalCPU"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line.split("|") for line in out.splitlines() if line.startswith(name_prefix)]
    return Counter(name for name, _ in lines), [
        (parse_duration(cpu) or timedelta()).total_seconds() for _, cpu in lines
    ]


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else float("nan")


def print_packed_cpu(steps: int, run_id: str, worker_cpu: float) -> None:
    """The CPU a packed run spends per step, on the compute node (its jobs' TotalCPU, the packs'
    forked steps included) and in the run worker (relay, submission, Dagster's executor), and so
    the most steps per second this machine's cores could run, were they given to nothing else."""
    jobs, cpu = accounting(f"dagster-{run_id}-")
    node, worker = sum(cpu) / steps, worker_cpu / steps
    cores = os.cpu_count() or 1
    print(f"p: Slurm jobs                           {sum(jobs.values()):8d}")
    print(f"p: CPU per step, jobs (sacct)           {node:8.3f} s")
    print(f"p: CPU per step, run worker             {worker:8.3f} s")
    print(f"p: at most, on {cores} cores               {cores / (node + worker):8.1f} steps/s")


def packed_only(steps: int, code: Path, python: str) -> None:
    a, _ = raw_sbatch(python, "pass", steps)
    with tempfile.TemporaryDirectory() as home, instance_for_test(temp_dir=home) as instance:
        p, _, run_id, worker_cpu = run_in_a_worker(instance, code, "fanout_packed")
    time.sleep(15)
    print(f"steps                                   {steps}")
    print(f"a. raw sbatch, python -c pass           {a:8.1f} s")
    print(f"p. slurm_executor, packed               {p:8.1f} s   p/a {p / a:.2f}   {steps / p:.1f} steps/s")
    print_packed_cpu(steps, run_id, worker_cpu)


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    settings = load_settings()
    user = os.environ["DAGSTER_SLURM_LAB_USER"]
    code_dir = Path(os.environ["DAGSTER_SLURM_LAB_SHARED_DIR"]) / "code" / f"bench-{uuid.uuid4().hex[:8]}"
    code_dir.mkdir(mode=0o755)
    source = Path(__file__).with_name("fanout_job.py").read_text()
    code = code_dir / "fanout_job.py"
    code.write_text(source.replace("\nSTEPS = 100\n", f"\nSTEPS = {steps}\n"))
    code.chmod(0o644)
    if "--packed" in sys.argv:
        try:
            packed_only(steps, code, settings.python)
        finally:
            shutil.rmtree(code_dir)
        return
    try:
        held_raw, held_ours = held_submission(settings.python, steps)
        a, _ = raw_sbatch(settings.python, "pass", steps)
        b, b_name = raw_sbatch(settings.python, "import dagster", steps)
        with tempfile.TemporaryDirectory() as home, instance_for_test(temp_dir=home) as instance:
            c, _, _, c_cpu = run_in_a_worker(instance, code, "fanout_multiprocess")
            rpcs, logins = rpcs_of(user), ssh_logins()
            d, peak_kib, run_id, d_worker_cpu = run_in_a_worker(instance, code, "fanout")
            rpcs, logins = rpcs_of(user) - rpcs, ssh_logins() - logins
            submitted = submission_seconds(instance, run_id)
            p, _, p_run_id, p_worker_cpu = run_in_a_worker(instance, code, "fanout_packed")
    finally:
        shutil.rmtree(code_dir)
    time.sleep(15)  # the last jobs reach accounting
    per_step, d_cpu = accounting(f"dagster-{run_id}-")
    _, b_cpu = accounting(b_name)
    print(f"steps                                   {steps}")
    print(f"a. raw sbatch, python -c pass           {a:8.1f} s")
    print(f"b. raw sbatch, python -c 'import dagster' {b:6.1f} s")
    print(f"c. multiprocess_executor, no Slurm      {c:8.1f} s")
    print(f"d. slurm_executor                       {d:8.1f} s")
    print(f"d/a  d/b  d/c                           {d / a:8.2f} {d / b:5.2f} {d / c:5.2f}")
    print(f"p. slurm_executor, packed               {p:8.1f} s   p/a {p / a:.2f}   {steps / p:.1f} steps/s")
    print_packed_cpu(steps, p_run_id, p_worker_cpu)
    print(f"d: {steps - 1} leaves submitted, after the root {submitted:6.1f} s")
    print(
        f"d: CPU per step (median TotalCPU)       {median(d_cpu):8.2f} s   against b's {median(b_cpu):.2f} s: "
        f"{median(d_cpu) / median(b_cpu):.2f}x"
    )
    print(f"e. {steps} held jobs submitted: raw sbatch  {held_raw:6.1f} s,  the executor's path {held_ours:.1f} s")
    print(f"c: CPU per step (run worker and steps)  {c_cpu / steps:8.2f} s")
    print(f"d: run worker CPU per step              {d_worker_cpu / steps:8.2f} s")
    print(f"d: Slurm RPCs per step                  {rpcs / steps:8.2f}   ({rpcs} RPCs by {user}, sdiag)")
    print(f"d: SSH logins for the run               {logins:8d}")
    print(f"d: run worker peak RSS                  {peak_kib / 1024:8.0f} MiB")
    fewest, most = min(per_step.values(), default=0), max(per_step.values(), default=0)
    print(
        f"d: Slurm jobs per step                  {fewest}..{most}"
        f"   ({len(per_step)} steps with a job, {sum(per_step.values())} jobs)"
    )


if __name__ == "__main__":
    main()
