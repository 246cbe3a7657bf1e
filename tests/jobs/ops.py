"""Op jobs: outputs through a shared-filesystem IO manager, dynamic outputs, failures, limits."""

import os
import time
from pathlib import Path

from dagster import (
    DynamicOut,
    DynamicOutput,
    FilesystemIOManager,
    In,
    Nothing,
    OpExecutionContext,
    RetryPolicy,
    job,
    op,
)

from dagster_slurm_launcher import slurm_executor

SHARED = os.environ.get("DAGSTER_SLURM_LAB_SHARED_DIR", "/tmp")
EXECUTOR = slurm_executor.configured(
    # Jobs get the cluster user's login environment: what the steps need of ours is named.
    {"poll_interval": 1.0, "time": "00:10:00", "env_vars": ["DAGSTER_SLURM_LAB_SHARED_DIR"]},
    name="slurm_test",
)
# Run-scoped: files land under <base_dir>/<run id>/<step>/<output>.
IO = {"io_manager": FilesystemIOManager(base_dir=f"{SHARED}/io")}


@op(out=DynamicOut(int))
def fan_out():
    for i in range(3):
        yield DynamicOutput(i * 10, mapping_key=f"chunk_{i}")


@op
def square(x: int) -> int:
    return x * x


@op
def total(values: list[int]) -> int:
    return sum(values)


@op
def check_total(context: OpExecutionContext, value: int) -> None:
    context.log.info(f"total={value}")
    assert value == 0 + 100 + 400


@job(executor_def=EXECUTOR, resource_defs=IO)
def dynamic_job():
    check_total(total(fan_out().map(square).collect()))


@op
def hello() -> str:
    return "hello"


@job(executor_def=EXECUTOR)
def hello_job():
    hello()


@op
def explode() -> None:
    raise ValueError("the user's own error message")


@job(executor_def=EXECUTOR)
def failing_job():
    explode()


@op(retry_policy=RetryPolicy(max_retries=2))
def flaky(context: OpExecutionContext) -> None:
    marker = Path(SHARED) / "markers" / context.run_id
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("first attempt failed")
        raise RuntimeError("first attempt fails")


@job(executor_def=EXECUTOR)
def flaky_job():
    flaky()


@op(tags={"dagster-slurm/sbatch": {"time": "00:01:00"}})
def too_slow() -> None:
    time.sleep(600)


@job(executor_def=EXECUTOR)
def timeout_job():
    too_slow()


@op(tags={"dagster-slurm/sbatch": {"mem": "300M"}})
def too_big() -> None:
    hog = bytearray(2 * 1024**3)
    time.sleep(30)
    del hog


@job(executor_def=EXECUTOR)
def oom_job():
    too_big()


@op(tags={"dagster-slurm/sbatch": {"cpus_per_task": 2, "mem": "700M", "time": "00:07:00", "partition": "batch"}})
def tagged(context: OpExecutionContext) -> None:
    context.log.info(f"SLURM_CPUS_PER_TASK={os.environ.get('SLURM_CPUS_PER_TASK')}")


@job(executor_def=EXECUTOR)
def tagged_job():
    tagged()


@op
def sleeper() -> None:
    time.sleep(600)


@job(executor_def=EXECUTOR)
def sleeping_job():
    sleeper()


@op(ins={"start": In(Nothing)})
def echo_env(context: OpExecutionContext) -> None:
    context.log.info(f"HOSTILE_ENV={os.environ['HOSTILE_ENV']}")
    context.log.info(f"FROM_SETUP={os.environ.get('FROM_SETUP')}")


@job(executor_def=slurm_executor)
def configurable_job():
    echo_env()


@op
def slow_step() -> int:
    time.sleep(int(os.environ.get("SLOW_STEP_SECONDS", "20")))
    return 42


@op
def after_slow(context: OpExecutionContext, value: int) -> None:
    context.log.info(f"after_slow got {value}")
    assert value == 42


@job(executor_def=EXECUTOR)
def resumable_job():
    after_slow(slow_step())


def _leaf(name: str, seconds: int, released: bool):
    @op(name=name)
    def leaf(context: OpExecutionContext, value: int) -> int:
        release = Path(SHARED) / "markers" / f"release-{context.run_id}"
        while released and not release.exists():
            time.sleep(0.2)
        time.sleep(seconds)
        return value

    return leaf


# The test kills the run worker while every leaf runs, then releases the quick leaves: they
# finish while no worker is alive; the slow ones still run when the run resumes; the last step
# was never submitted.
QUICK_LEAVES = [_leaf(f"quick_{i}", 1, released=True) for i in range(4)]
SLOW_LEAVES = [_leaf(f"slow_{i}", 25, released=False) for i in range(4)]


@op
def fan_root() -> int:
    return 1


@op
def gather(context: OpExecutionContext, values: list[int]) -> None:
    context.log.info(f"gather got {sum(values)}")


@job(executor_def=EXECUTOR, resource_defs=IO)
def resumable_fanout_job():
    value = fan_root()
    gather([leaf(value) for leaf in [*QUICK_LEAVES, *SLOW_LEAVES]])


@op
def fails_once_per_lineage(context: OpExecutionContext, value: int) -> None:
    """Fails the first time it runs in a lineage (a root run and its retries)."""
    marker = Path(SHARED) / "markers" / f"lineage-{context.run.root_run_id or context.run_id}"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("failed once")
        raise RuntimeError("fails once per lineage")
    context.log.info(f"fails_once_per_lineage got {value}")


@job(executor_def=EXECUTOR)
def adopt_then_fail_job():
    fails_once_per_lineage(slow_step())
