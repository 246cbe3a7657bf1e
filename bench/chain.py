"""Benchmark: a chain of four trivial assets on the Slurm executor against the multiprocess executor.

Each step waits for the one before, so this measures the latency from a step's end to its
successor's start, which a fan-out hides. Run on the lab cluster (after `sudo deploy/lab/up`
and `sudo deploy/lab/python-env`), with the default poll interval unless DAGSTER_SLURM_POLL_INTERVAL
is set:

    set -a; source deploy/lab/lab.env; set +a
    /opt/dagster-slurm-lab/venv/bin/python bench/chain.py [ROUNDS]   # default 3

Prints the wall time of each run under both executors and the ratio of their medians.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from dagster import DagsterInstance, execute_job, instance_for_test
from dagster._core.definitions.reconstruct import ReconstructableJob


def timed(instance: DagsterInstance, code: Path, job_name: str) -> float:
    started = time.monotonic()
    result = execute_job(ReconstructableJob.for_file(str(code), job_name), instance)
    elapsed = time.monotonic() - started
    assert result.success, job_name
    return elapsed


def main(rounds: int) -> None:
    # The code location is on the shared filesystem, readable by the cluster user.
    code_dir = Path(os.environ["DAGSTER_SLURM_LAB_SHARED_DIR"]) / "code" / f"bench-{uuid.uuid4().hex[:8]}"
    code_dir.mkdir(mode=0o755)
    code = code_dir / "chain_job.py"
    shutil.copy(Path(__file__).with_name("chain_job.py"), code)
    code.chmod(0o644)
    os.chdir(code_dir)
    times: dict[str, list[float]] = {"on_slurm": [], "multiprocess": []}
    try:
        with tempfile.TemporaryDirectory() as home, instance_for_test(temp_dir=home) as instance:
            for _ in range(rounds):
                for job_name in times:
                    times[job_name].append(timed(instance, code, job_name))
    finally:
        shutil.rmtree(code_dir)
    slurm, multi = (statistics.median(times[k]) for k in ("on_slurm", "multiprocess"))
    print(f"4-asset chain, {rounds} rounds, one run of each per round, same machine")
    for job_name, values in times.items():
        print(f"  {job_name:<13} " + "  ".join(f"{v:5.1f}s" for v in values))
    print(f"  median: slurm_executor {slurm:.1f}s, multiprocess {multi:.1f}s, ratio {slurm / multi:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
