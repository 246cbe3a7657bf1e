"""Benchmark: an N-step fan-out job on the Slurm executor against N raw sbatch jobs.

Run on the lab cluster (after `sudo deploy/lab/up` and `deploy/lab/python-env`):

    set -a; source deploy/lab/lab.env; set +a
    /opt/dagster-slurm-lab/venv/bin/python bench/fanout.py [STEPS]   # default 100

Prints, from one run: wall time of each and their ratio, Slurm RPCs per step (sdiag, all
message types, counted for the cluster user), SSH logins (sshd's log), and the run
worker's peak RSS.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, instance_for_test
from dagster._serdes import serialize_value

from dagster_slurm_launcher import load_settings
from dagster_slurm_launcher.slurm import SlurmClient
from dagster_slurm_launcher.transport import make_transport

RUN_WORKER = """
import sys
from dagster import DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import deserialize_value

instance = DagsterInstance.from_ref(deserialize_value(sys.argv[1], InstanceRef))
execute_job(ReconstructableJob.for_file(sys.argv[2], "fanout"), instance, raise_on_error=False)
"""


def rpcs_of(user: str) -> int:
    out = subprocess.run(["sdiag"], check=True, capture_output=True, text=True).stdout
    by_user = out.split("Remote Procedure Call statistics by user", 1)[1]
    match = re.search(rf"^\s*{re.escape(user)}\s+\(\s*\d+\)\s+count:(\d+)", by_user, re.M)
    return int(match.group(1)) if match else 0


def ssh_logins() -> int:
    return (Path(os.environ["DAGSTER_SLURM_LAB_DIR"]) / "log/sshd.log").read_text().count("Accepted publickey for")


def raw_sbatch(python: str, steps: int) -> float:
    """Submit ``steps`` trivial Python jobs with plain sbatch over SSH and wait until all ended."""
    client = SlurmClient(make_transport(load_settings()))
    name = f"raw-{uuid.uuid4().hex[:8]}"
    wrap = shlex.quote(python + " -c pass")
    submit = f"for i in $(seq {steps}); do sbatch --parsable --output=/dev/null --job-name={name} --wrap={wrap}; done"
    started = time.monotonic()
    result = client.transport.run(submit)
    assert result.ok, result.stderr
    while client.transport.run(f"squeue --noheader --name={name}").stdout.strip():
        time.sleep(0.5)
    return time.monotonic() - started


def slurm_executor_run(instance: DagsterInstance, code: Path) -> tuple[float, int, str]:
    """Wall time of the fan-out run, the run worker's peak RSS in KiB, and the run's id."""
    started = time.monotonic()
    worker = subprocess.Popen(
        [sys.executable, "-c", RUN_WORKER, serialize_value(instance.get_ref()), str(code)], cwd=code.parent
    )
    _, status, usage = os.wait4(worker.pid, 0)
    elapsed = time.monotonic() - started
    assert os.waitstatus_to_exitcode(status) == 0
    (run,) = instance.get_runs()
    assert run.status == DagsterRunStatus.SUCCESS, run.status
    return elapsed, usage.ru_maxrss, run.run_id


def jobs_per_step(run_id: str) -> Counter:
    """How many Slurm jobs each step of the run had (sacct): 1 for every step, or a step ran twice."""
    out = subprocess.run(
        ["sacct", "--allusers", "-X", "-n", "-P", "-D", "--starttime=now-1days", "--format=JobName%80"],
        capture_output=True,
        text=True,
    ).stdout
    return Counter(name for name in out.split() if name.startswith(f"dagster-{run_id}-"))


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    settings = load_settings()
    user = os.environ["DAGSTER_SLURM_LAB_USER"]
    code_dir = Path(os.environ["DAGSTER_SLURM_LAB_SHARED_DIR"]) / "code" / f"bench-{uuid.uuid4().hex[:8]}"
    code_dir.mkdir(mode=0o755)
    source = Path(__file__).with_name("fanout_job.py").read_text()
    (code_dir / "fanout_job.py").write_text(source.replace("\nSTEPS = 100\n", f"\nSTEPS = {steps}\n"))
    os.chmod(code_dir / "fanout_job.py", 0o644)
    try:
        raw_seconds = raw_sbatch(settings.python, steps)
        rpcs, logins = rpcs_of(user), ssh_logins()
        with tempfile.TemporaryDirectory() as home, instance_for_test(temp_dir=home) as instance:
            ours_seconds, peak_kib, run_id = slurm_executor_run(instance, code_dir / "fanout_job.py")
        rpcs, logins = rpcs_of(user) - rpcs, ssh_logins() - logins
    finally:
        shutil.rmtree(code_dir)
    time.sleep(15)  # the last jobs reach accounting
    per_step = jobs_per_step(run_id)
    print(f"steps                          {steps}")
    print(
        f"Slurm jobs per step            {min(per_step.values(), default=0)}..{max(per_step.values(), default=0)}"
        f"   ({len(per_step)} steps with a job, {sum(per_step.values())} jobs)"
    )
    print(f"raw sbatch, submit and wait    {raw_seconds:7.1f} s")
    print(f"slurm_executor run             {ours_seconds:7.1f} s")
    print(f"ratio (ours / raw sbatch)      {ours_seconds / raw_seconds:7.2f}")
    print(f"Slurm RPCs per step            {rpcs / steps:7.2f}   ({rpcs} RPCs by {user}, sdiag)")
    print(f"SSH logins for the run         {logins:7d}")
    print(f"run worker peak RSS            {peak_kib / 1024:7.0f} MiB")


if __name__ == "__main__":
    main()
