"""The demo: the lab as a site runs Dagster next to Slurm, left running for a person to open.

PostgreSQL storage, a gRPC code server, dagster-daemon and dagster-webserver, configured from
dagster.yaml.example as written; a backfill of a partitioned three-asset graph launched the way
the UI launches it (GraphQL); one Slurm job per step. Run by deploy/lab/demo with the lab's venv
and lab.env (and DAGSTER_PG_PASSWORD); deploy/lab/down stops what it started.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LAB_DIR = Path(os.environ["DAGSTER_SLURM_LAB_DIR"])
HOME = LAB_DIR / "demo"
CODE = Path(os.environ["DAGSTER_SLURM_LAB_SHARED_DIR"]) / "code" / "demo"
WEBSERVER = "http://127.0.0.1:3000"
CODE_SERVER_PORT = 4266
SACCT_FORMAT = "JobID,JobName,State,Elapsed,NodeList"

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions runs(limit: 1000) { runId status } }
  }
}"""


def main() -> int:
    write_home_and_code()
    env = {**os.environ, "DAGSTER_HOME": str(HOME)}
    port = str(CODE_SERVER_PORT)
    code_server = [BIN / "dagster", "code-server", "start", "-h", "127.0.0.1", "-p", port, "-f", "definitions.py"]
    start("demo-code-server", [*code_server, "--working-directory", CODE, "--location-name", "demo"], env)
    health = [BIN / "dagster", "api", "grpc-health-check", "-p", port]
    wait_for("the code server", lambda: subprocess.run(health, capture_output=True).returncode == 0)
    workspace = HOME / "workspace.yaml"
    start("demo-daemon", [BIN / "dagster-daemon", "run", "-w", workspace], env)
    start("demo-webserver", [BIN / "dagster-webserver", "-w", workspace, "-h", "127.0.0.1", "-p", "3000"], env)
    wait_for("the webserver", lambda: graphql("{ version }").get("version"))

    params = {"partitionNames": [f"region-{i:02d}" for i in range(1, 9)]}
    params["assetSelection"] = [{"path": [key]} for key in ("readings", "cleaned", "summary")]
    launched = graphql(LAUNCH, params=params)["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        print(f"the backfill was not launched: {launched}")
        return 1
    backfill_id = launched["backfillId"]
    print(f"launched backfill {backfill_id} of 8 partitions x 3 assets through {WEBSERVER}/graphql", flush=True)
    deadline = time.monotonic() + 1200
    while (backfill := graphql(STATUS, id=backfill_id)["partitionBackfillOrError"])["status"] in (
        "REQUESTED",
        "CANCELING",
        "FAILING",
    ):
        if time.monotonic() > deadline:
            break
        time.sleep(5)
    runs = backfill["runs"]
    print(
        f"backfill {backfill_id}: {backfill['status']}; runs: "
        + ", ".join(f"{n} {s}" for s, n in sorted(count(r["status"] for r in runs).items()))
    )
    print(f"its page: {WEBSERVER}/runs/b/{backfill_id}")
    print("Slurm jobs of its runs (sacct):")
    print(slurm_jobs([r["runId"] for r in runs]))
    print(f"The deployment keeps running (logs in {LAB_DIR / 'log'}): open {WEBSERVER}; `deploy/lab/down` stops it.")
    return 0 if backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS") else 1


def write_home_and_code() -> None:
    HOME.mkdir(mode=0o700, exist_ok=True)
    shutil.rmtree(CODE, ignore_errors=True)
    shutil.copytree(REPO / "deploy/lab/demo_code", CODE)
    for p in [CODE, *CODE.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    config = yaml.safe_load((REPO / "dagster.yaml.example").read_text())
    config["run_launcher"]["config"]["executor"] = {"poll_interval": 1.0, "time": "00:10:00"}
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    (HOME / "dagster.yaml").write_text(yaml.safe_dump(config))
    server = {"host": "127.0.0.1", "port": CODE_SERVER_PORT, "location_name": "demo"}
    (HOME / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [{"grpc_server": server}]}))


def start(name: str, argv: list, env: dict[str, str]) -> None:
    """Start ``name`` detached, with its pid where deploy/lab/down finds it."""
    # 0600, as run-worker logs: a deployment's logs name runs, hosts and paths.
    log = os.fdopen(os.open(LAB_DIR / "log" / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    process = subprocess.Popen(
        [str(a) for a in argv],
        env=env,
        cwd=CODE,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (LAB_DIR / "run" / f"{name}.pid").write_text(f"{process.pid}\n")
    print(f"started {name} (pid {process.pid}); its log: {LAB_DIR / 'log' / f'{name}.log'}", flush=True)


def wait_for(what: str, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not come up within {timeout:.0f}s; see {LAB_DIR / 'log'}")
        time.sleep(1)


def graphql(query: str, **variables: object) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"{WEBSERVER}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    if answer.get("errors"):
        raise SystemExit(f"GraphQL error: {answer['errors']}")
    return answer["data"]


def count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def slurm_jobs(run_ids: list[str]) -> str:
    out = subprocess.run(
        ["sacct", "--allusers", "-X", "-n", "-P", "-D", "--starttime=now-2hours", f"--format={SACCT_FORMAT}"],
        capture_output=True,
        text=True,
    ).stdout
    rows = [line for line in out.splitlines() if any(f"dagster-{run_id}-" in line for run_id in run_ids)]
    return "\n".join(rows) + f"\n({len(rows)} jobs for {len(run_ids)} runs)"


if __name__ == "__main__":
    sys.exit(main())
