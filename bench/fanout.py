"""Benchmark: a 100-step fan-out job on the Slurm executor against 100 raw sbatch jobs.

Run on the lab cluster (after `sudo deploy/lab/up` and `deploy/lab/python-env`):

    set -a; source deploy/lab/lab.env; set +a
    /opt/dagster-slurm-lab/venv/bin/python bench/fanout.py

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
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, instance_for_test
from dagster._serdes import serialize_value

from dagster_slurm_launcher import load_settings
from dagster_slurm_launcher.slurm import SlurmClient
from dagster_slurm_launcher.transport import make_transport

STEPS = 100
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


def raw_sbatch(python: str) -> float:
    """Submit STEPS trivial Python jobs with plain sbatch over SSH and wait until all ended."""
    client = SlurmClient(make_transport(load_settings()))
    name = f"raw-{uuid.uuid4().hex[:8]}"
    submit = f"for i in $(seq {STEPS}); do sbatch --parsable --output=/dev/null --job-name={name} --wrap={shlex.quote(python + ' -c pass')}; done"
    started = time.monotonic()
    result = client.transport.run(submit)
    assert result.ok, result.stderr
    while client.transport.run(f"squeue --noheader --name={name}").stdout.strip():
        time.sleep(0.5)
    return time.monotonic() - started


def slurm_executor_run(instance: DagsterInstance, code: Path) -> tuple[float, int]:
    """Wall time of the fan-out run and the run worker's peak RSS in KiB."""
    started = time.monotonic()
    worker = subprocess.Popen([sys.executable, "-c", RUN_WORKER, serialize_value(instance.get_ref()), str(code)], cwd=code.parent)
    _, status, usage = os.wait4(worker.pid, 0)
    elapsed = time.monotonic() - started
    assert os.waitstatus_to_exitcode(status) == 0
    (run,) = instance.get_runs()
    assert run.status == DagsterRunStatus.SUCCESS, run.status
    return elapsed, usage.ru_maxrss


def main() -> None:
    settings = load_settings()
    user = os.environ["DAGSTER_SLURM_LAB_USER"]
    code_dir = Path(os.environ["DAGSTER_SLURM_LAB_SHARED_DIR"]) / "code" / f"bench-{uuid.uuid4().hex[:8]}"
    code_dir.mkdir(mode=0o755)
    shutil.copy(Path(__file__).with_name("fanout_job.py"), code_dir)
    os.chmod(code_dir / "fanout_job.py", 0o644)
    try:
        raw_seconds = raw_sbatch(settings.python)
        rpcs, logins = rpcs_of(user), ssh_logins()
        with tempfile.TemporaryDirectory() as home, instance_for_test(temp_dir=home) as instance:
            ours_seconds, peak_kib = slurm_executor_run(instance, code_dir / "fanout_job.py")
        rpcs, logins = rpcs_of(user) - rpcs, ssh_logins() - logins
    finally:
        shutil.rmtree(code_dir)
    print(f"steps                          {STEPS}")
    print(f"raw sbatch, submit and wait    {raw_seconds:7.1f} s")
    print(f"slurm_executor run             {ours_seconds:7.1f} s")
    print(f"ratio (ours / raw sbatch)      {ours_seconds / raw_seconds:7.2f}")
    print(f"Slurm RPCs per step            {rpcs / STEPS:7.2f}   ({rpcs} RPCs by {user}, sdiag)")
    print(f"SSH logins for the run         {logins:7d}")
    print(f"run worker peak RSS            {peak_kib / 1024:7.0f} MiB")


if __name__ == "__main__":
    main()
