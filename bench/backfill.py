"""Benchmark: a daemon-driven backfill on PostgreSQL, Slurm executor against multiprocess executor.

A backfill of every partition of a three-asset partitioned graph, through the queued run
coordinator, as a persistent deployment runs it (dagster.yaml.example, its own PostgreSQL
database). Run on the lab cluster, as root (after `sudo deploy/lab/up` and
`sudo deploy/lab/python-env`):

    set -a; source deploy/lab/lab.env; set +a
    /opt/dagster-slurm-lab/venv/bin/python bench/backfill.py [PARTITIONS] [CONCURRENT]   # 200 20

Prints, from one run of each: the Slurm deployment's controller status RPCs per minute
(squeue and scontrol: REQUEST_JOB_[USER_]INFO, sdiag) with 1 run at a time and with CONCURRENT runs at a time, and their
ratio; wall times of the backfill on Slurm and with the multiprocess executor and the default
run launcher; Slurm jobs per step; failed runs; SSH logins; peak memory of the run workers and of
all Dagster processes on the host (daemon, code server, run workers; the steps' processes too
under the multiprocess executor).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg2
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DONE = {BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED}


def main(partitions: int, concurrent: int) -> None:
    os.environ["DAGSTER_PG_PASSWORD"] = Path(os.environ["DAGSTER_PG_PASSWORD_FILE"]).read_text().strip()
    code = Path(os.environ["DAGSTER_SLURM_LAB_SHARED_DIR"]) / "code" / f"bench-{uuid.uuid4().hex[:8]}"
    code.mkdir(mode=0o755)
    source = (
        (REPO / "bench/backfill_job.py").read_text().replace("\nPARTITIONS = 200\n", f"\nPARTITIONS = {partitions}\n")
    )
    (code / "backfill_job.py").write_text(source)
    (code / "backfill_job.py").chmod(0o644)
    try:
        # Controller load with one run at a time, over the first minutes of a backfill.
        one = backfill(code, partitions, concurrent=1, slurm=True, window=180)
        print(f"1 run at a time, first {one['seconds']:.0f} s: {one}", flush=True)
        many = backfill(code, partitions, concurrent=concurrent, slurm=True)
        print(f"{concurrent} runs at a time, on Slurm: {many}", flush=True)
        local = backfill(code, partitions, concurrent=concurrent, slurm=False)
        print(f"{concurrent} runs at a time, multiprocess: {local}", flush=True)
    finally:
        shutil.rmtree(code)
    print(f"backfill of {partitions} partitions x 3 assets, {concurrent} runs at a time, PostgreSQL, one run each")
    print(f"status RPCs/min, 1 run at a time        {one['rpm']:8.1f}")
    print(f"status RPCs/min, {concurrent} runs at a time       {many['rpm']:8.1f}")
    print(f"ratio                                   {many['rpm'] / one['rpm']:8.2f}")
    print(f"wall time, slurm_executor               {many['seconds']:8.1f} s")
    print(f"wall time, multiprocess executor        {local['seconds']:8.1f} s")
    print(f"ratio (slurm / multiprocess)            {many['seconds'] / local['seconds']:8.2f}")
    print(f"Slurm jobs per step                     {many['jobs_per_step']}")
    print(f"runs not successful (slurm / local)     {many['failed']} / {local['failed']}")
    print(f"SSH logins for the backfill             {many['logins']:8d}")
    print(f"run worker peak RSS, largest            {many['worker_peak_mib']:8.0f} MiB")
    print(f"run workers' RSS together, peak         {many['workers_peak_mib']:8.0f} MiB")
    print(f"Dagster host's processes, peak RSS      {many['host_peak_mib']:8.0f} MiB")
    print(f"  the same, multiprocess executor       {local['host_peak_mib']:8.0f} MiB")


def backfill(code: Path, partitions: int, concurrent: int, slurm: bool, window: float | None = None) -> dict:
    """Run one backfill in a fresh deployment; its figures. With ``window``, stop after that many
    seconds (for the controller's load alone)."""
    with database() as name, tempfile.TemporaryDirectory() as home:
        Path(home).chmod(0o700)
        config = yaml.safe_load((REPO / "dagster.yaml.example").read_text())
        config["storage"]["postgres"]["postgres_db"]["db_name"] = name
        config["run_launcher"]["config"]["executor"] = {"time": "00:10:00", "mem": "500M"}
        config["run_coordinator"]["config"].update(max_concurrent_runs=concurrent, dequeue_interval_seconds=1)
        if not slurm:
            del config["run_launcher"]  # the default launcher, and the multiprocess executor
            config["run_monitoring"]["max_resume_run_attempts"] = 0  # it cannot resume runs
        (Path(home) / "dagster.yaml").write_text(yaml.safe_dump(config))
        workspace = code / f"workspace-{name}.yaml"
        location = {"python_file": {"relative_path": "backfill_job.py", "working_directory": str(code)}}
        workspace.write_text(yaml.safe_dump({"load_from": [location]}))
        env = {**os.environ, "DAGSTER_HOME": home}
        with DagsterInstance.from_config(home) as instance:
            daemon = subprocess.Popen(
                [BIN / "dagster-daemon", "run", "-w", workspace],
                env=env,
                cwd=code,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            memory = MemorySampler()
            try:
                rpcs, logins, started = job_info_rpcs(), ssh_logins(), time.monotonic()
                backfill_id = request(instance, code, partitions)
                while instance.get_backfill(backfill_id).status not in DONE:
                    if window is not None and time.monotonic() - started > window:
                        break
                    time.sleep(2)
                seconds = time.monotonic() - started
                rpcs, logins = job_info_rpcs() - rpcs, ssh_logins() - logins
                if window is not None:
                    stop_runs(instance)
            finally:
                memory.stop()
                daemon.terminate()
                daemon.wait(timeout=120)
            runs = instance.get_runs()
            failed = sum(r.status != DagsterRunStatus.SUCCESS for r in runs if r.is_finished)
            per_step = jobs_per_step([r.run_id for r in runs]) if slurm else Counter()
        return {
            "rpm": rpcs / (seconds / 60),
            "seconds": seconds,
            "logins": logins,
            "failed": failed,
            "jobs_per_step": f"{min(per_step.values(), default=0)}..{max(per_step.values(), default=0)} "
            f"({sum(per_step.values())} jobs for {len(per_step)} steps)",
            "worker_peak_mib": memory.largest / 1024,
            "workers_peak_mib": memory.total / 1024,
            "host_peak_mib": memory.host / 1024,
        }


def request(instance: DagsterInstance, code: Path, partitions: int) -> str:
    """What the UI's "Materialize all" on the partitioned assets does: a backfill for the daemon."""
    sys.path.insert(0, str(code))
    try:
        import backfill_job
    finally:
        sys.path.remove(str(code))
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=backfill_job.defs.resolve_asset_graph(),
        partition_names=None,
        asset_selection=[AssetKey("raw"), AssetKey("clean"), AssetKey("report")],
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=True,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def stop_runs(instance: DagsterInstance) -> None:
    """Terminate the backfill's runs (and cancel its queued ones), as the UI's Terminate does."""
    for backfill in instance.get_backfills():
        instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELED))
    for run in instance.get_runs():
        if run.status == DagsterRunStatus.QUEUED:
            instance.report_run_canceled(run)
        elif not run.is_finished:
            instance.run_launcher.terminate(run.run_id)
    deadline = time.monotonic() + 120
    while any(not r.is_finished for r in instance.get_runs()) and time.monotonic() < deadline:
        time.sleep(2)


class MemorySampler:
    """Peak RSS of run workers (each, and all together), sampled every second."""

    def __init__(self) -> None:
        self.largest = self.total = self.host = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            out = subprocess.run(["ps", "-eo", "rss=,user=,args="], capture_output=True, text=True).stdout
            rows = [line.split(maxsplit=2) for line in out.splitlines()]
            sizes = [int(rss) for rss, _, args in rows if "launcher.run_worker" in args]
            self.largest = max(self.largest, max(sizes, default=0))
            self.total = max(self.total, sum(sizes))
            # The Dagster host's side: daemon, its code server, run workers (or, without
            # Slurm, the steps' processes); not the steps on the cluster (the cluster user's).
            host = [
                int(rss) for rss, user, args in rows if user == "root" and "dagster" in args and __file__ not in args
            ]
            self.host = max(self.host, sum(host))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class database:
    """A fresh database on the lab's PostgreSQL, dropped afterwards."""

    def __enter__(self) -> str:
        self.name = f"bench_{uuid.uuid4().hex[:12]}"
        self.conn = psycopg2.connect(
            host=os.environ["DAGSTER_PG_HOST"],
            user=os.environ["DAGSTER_PG_USER"],
            password=os.environ["DAGSTER_PG_PASSWORD"],
            dbname="dagster",
        )
        self.conn.autocommit = True
        with self.conn.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{self.name}"')
        return self.name

    def __exit__(self, *exc: object) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.conn.close()


def job_info_rpcs() -> int:
    out = subprocess.run(["sdiag"], check=True, capture_output=True, text=True).stdout
    return sum(int(n) for n in re.findall(r"REQUEST_JOB_(?:USER_)?INFO(?:_SINGLE)?\s+\(\s*\d+\)\s+count:(\d+)", out))


def ssh_logins() -> int:
    return (Path(os.environ["DAGSTER_SLURM_LAB_DIR"]) / "log/sshd.log").read_text().count("Accepted publickey for")


def jobs_per_step(run_ids: list[str]) -> Counter:
    time.sleep(15)  # the last jobs reach accounting
    out = subprocess.run(
        ["sacct", "--allusers", "-X", "-n", "-P", "-D", "--starttime=now-1days", "--format=JobName%80"],
        capture_output=True,
        text=True,
    ).stdout
    prefixes = tuple(f"dagster-{run_id}-" for run_id in run_ids)
    return Counter(name for name in out.split() if name.startswith(prefixes))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
