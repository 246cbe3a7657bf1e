"""The demo: a persistent deployment (dagster-daemon, SlurmRunLauncher, configured from
dagster.yaml.example) runs a four-asset job on the lab cluster, one Slurm job per step.

Run by deploy/lab/demo with the lab's venv and lab.env; prints what a user would check.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from dagster import AssetKey, DagsterInstance

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="dagster-slurm-demo-"))
    code = Path(os.environ["DAGSTER_SLURM_LAB_SHARED_DIR"]) / "code" / f"demo-{home.name}"
    shutil.copytree(REPO / "deploy/lab/demo_code", code)
    for p in [code, *code.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    config = yaml.safe_load((REPO / "dagster.yaml.example").read_text())
    del config["storage"]  # SQLite under DAGSTER_HOME, as on a laptop
    config["run_launcher"]["config"]["executor"] = {"poll_interval": 1.0, "time": "00:10:00"}
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    workspace = code / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {"load_from": [{"python_file": {"relative_path": "definitions.py", "working_directory": str(code)}}]}
        )
    )
    env = {**os.environ, "DAGSTER_HOME": str(home)}

    print(f"DAGSTER_HOME={home}; code location {code}")
    DagsterInstance.from_config(str(home)).dispose()  # creates the storage before two processes race to
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", "-w", workspace],
        env=env,
        stdout=open(home / "daemon.log", "w"),  # noqa: SIM115 - the daemon writes it until the demo ends
        stderr=subprocess.STDOUT,
    )
    try:
        subprocess.run(
            [BIN / "dagster", "job", "launch", "-j", "demo_job", "-w", workspace],
            env=env,
            check=True,
            capture_output=True,
        )
        with DagsterInstance.from_config(str(home)) as instance:
            run = instance.get_runs(limit=1)[0]
            print(f"launched run {run.run_id}; waiting for it", flush=True)
            deadline = time.monotonic() + 600
            while not instance.get_run_by_id(run.run_id).is_finished:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    print(f"the daemon stopped or the run took too long; see {home / 'daemon.log'}")
                    return 1
                time.sleep(2)
            run = instance.get_run_by_id(run.run_id)
            print(f"run {run.run_id}: {run.status.value}")
            print(
                f"run worker: pid {run.tags.get('dagster-slurm/run-worker-pid')}, "
                f"log {run.tags.get('dagster-slurm/run-worker-log')}"
            )
            for key in ("numbers", "squares", "cubes", "summary"):
                record = instance.get_latest_materialization_event(AssetKey(key))
                meta = record.asset_materialization.metadata if record and record.asset_materialization else {}
                print(
                    f"  asset {key}: {'materialized' if record else 'MISSING'} "
                    f"{({k: v.value for k, v in meta.items()}) or ''}"
                )
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    sacct = subprocess.run(
        [
            "sacct",
            "--allusers",
            "-X",
            "-n",
            "-D",
            "--starttime=now-1hours",
            "--format=JobID,JobName%70,State,Elapsed,NodeList",
            f"--name={','.join(_job_names(run.run_id))}",
        ],
        capture_output=True,
        text=True,
    ).stdout
    print("Slurm jobs of the run (sacct):\n" + sacct)
    return 0 if run.status.value == "SUCCESS" else 1


def _job_names(run_id: str) -> list[str]:
    from dagster_slurm_launcher.naming import job_name

    return [job_name(run_id, step) for step in ("numbers", "squares", "cubes", "summary")]


if __name__ == "__main__":
    sys.exit(main())
