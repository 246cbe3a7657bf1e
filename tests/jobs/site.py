"""Jobs that behave as users' code and sites do: non-ASCII output and progress bars, a journal
damaged under the worker, a step Slurm requeues, a slow step, secrets in the environment."""

import os
import sys
import time
from pathlib import Path

from dagster import In, Nothing, OpExecutionContext, Out, job, op

from dagster_slurm_launcher import slurm_executor

SHARED = os.environ.get("DAGSTER_SLURM_LAB_SHARED_DIR", "/tmp")
EXECUTOR = slurm_executor.configured(
    # Jobs get the cluster user's login environment: what the steps need of ours is named.
    {"poll_interval": 1.0, "time": "00:10:00", "env_vars": ["DAGSTER_SLURM_LAB_SHARED_DIR"]},
    name="slurm_site",
)
TEXT = "ünïcødé ✓ 漢字 😀"


@op
def noisy(context: OpExecutionContext) -> None:
    print(f"stdout: {TEXT}", flush=True)
    print(f"stderr: {TEXT}", file=sys.stderr, flush=True)
    for percent in (10, 50, 100):  # what tqdm writes: carriage returns and block characters
        sys.stderr.write(f"\r{percent:3d}%|{'█' * (percent // 10):<10}| {percent}/100")
    sys.stderr.write("\n")
    sys.stdout.buffer.write(b"invalid UTF-8: \xff\xfe end\n")
    sys.stdout.flush()
    context.log.info(f"log: {TEXT}")


@job(executor_def=EXECUTOR)
def noisy_job():
    for i in range(4):
        noisy.alias(f"noisy_{i}")()


@op
def damages_its_journal(context: OpExecutionContext) -> None:
    """Appends what a SIGKILLed writer leaves behind once the next writer went on, then goes on
    logging."""
    journal = Path(sys.argv[-1]) / "events.jsonl"  # the worker's argument is its step folder
    with journal.open("ab") as f:
        f.write(b'99 {"__class__": "EventLogEntry", "cut sh\n')
    context.log.info("logged after the damage")


@job(executor_def=EXECUTOR)
def damaged_journal_job():
    damages_its_journal()


def _runs_file(context: OpExecutionContext) -> Path:
    return Path(SHARED) / "markers" / f"runs-{context.run_id}-{context.op.name}"


@op(out=Out(Nothing), tags={"dagster-slurm/sbatch": {"requeue": True}})
def counted(context: OpExecutionContext) -> None:
    """Counts its executions in a file on the shared filesystem."""
    path = _runs_file(context)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("ran\n")


@op(ins={"start": In(Nothing)})
def waits(context: OpExecutionContext) -> None:
    """Keeps the run going until the test has seen what it waits for (a file it writes), or 5 minutes."""
    release = Path(SHARED) / "markers" / f"release-{context.run_id}"
    deadline = time.monotonic() + 300
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(1)


@job(executor_def=EXECUTOR)
def requeue_job():
    counted()
    waits()


@op
def slow(context: OpExecutionContext) -> int:
    time.sleep(25)
    context.log.info("slow step done")
    return 7


@op
def after(context: OpExecutionContext, value: int) -> None:
    context.log.info(f"after got {value}")


@job(executor_def=EXECUTOR)
def slow_job():
    after(slow())


@op
def reports_secrets(context: OpExecutionContext) -> None:
    for name in ("DAGSTER_PG_PASSWORD", "WAREHOUSE_DSN"):
        context.log.info(f"{name} in environment: {name in os.environ}")
    context.log.info(f"STEP_SETTING={os.environ.get('STEP_SETTING')}")


@job(executor_def=slurm_executor.configured({"poll_interval": 1.0, "env_vars": ["STEP_SETTING"]}, name="slurm_env"))
def secrets_job():
    reports_secrets()


@op
def talks_while_it_works(context: OpExecutionContext) -> None:
    """Prints a line (without flushing: the worker runs unbuffered), then works until the test has
    seen the line in the UI (or 5 minutes)."""
    print(f"working on it: {TEXT}")
    release = Path(SHARED) / "markers" / f"release-{context.run_id}"
    deadline = time.monotonic() + 300
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(1)
    print("finished working", flush=True)


@op
def floods(context: OpExecutionContext) -> None:
    """Prints 100 MB as fast as it can, then one last line."""
    line = b"x" * 1023 + b"\n"
    for _ in range(100 * 1024):
        sys.stdout.buffer.write(line)
    print("flood done", flush=True)


@job(executor_def=EXECUTOR)
def live_logs_job():
    talks_while_it_works()
    floods()
