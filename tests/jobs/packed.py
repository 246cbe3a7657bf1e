"""Jobs whose steps run packed: many steps in one Slurm allocation, each in a forked process."""

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

from dagster import FilesystemIOManager, OpExecutionContext, job, op

from dagster_slurm_launcher import slurm_executor

SHARED = os.environ.get("DAGSTER_SLURM_LAB_SHARED_DIR", "/tmp")
# Each step's share: a forked step counts the pages it shares with the packed worker (about
# 150 MB of Dagster), as Slurm's accounting does.
PACKED = slurm_executor.configured(
    {
        "poll_interval": 1.0,
        "time": "00:10:00",
        "mem": "600M",
        "env_vars": ["DAGSTER_SLURM_LAB_SHARED_DIR"],
        "pack": {"max_steps": 20, "cpus": 2},
        # Run folders stay: the tests count each step's STEP_START in its journals there.
        "debug_mode": True,
    },
    name="slurm_packed",
)
# One step at a time: the steps of a pack start in turn.
ONE_AT_A_TIME = slurm_executor.configured(
    {
        "poll_interval": 1.0,
        "time": "00:10:00",
        "env_vars": ["DAGSTER_SLURM_LAB_SHARED_DIR"],
        "pack": {"max_steps": 20, "cpus": 1},
        "debug_mode": True,
    },
    name="slurm_packed_one_at_a_time",
)
# sbatch takes UNLIMITED: pack.time sizes the pack, and its steps have no limit of their own.
UNLIMITED_STEPS = slurm_executor.configured(
    {
        "poll_interval": 1.0,
        "time": "UNLIMITED",
        "env_vars": ["DAGSTER_SLURM_LAB_SHARED_DIR"],
        "pack": {"max_steps": 20, "cpus": 2, "time": "00:05:00"},
    },
    name="slurm_packed_unlimited",
)
SLOW_SECONDS = 12
IO = {"io_manager": FilesystemIOManager(base_dir=f"{SHARED}/io")}


def _fine(name: str):
    @op(name=name)
    def fine(context: OpExecutionContext) -> str:
        print(f"{name} printed this to stdout")
        context.log.info(f"{name} logged this")
        return name

    return fine


@op
def fails() -> None:
    raise ValueError("a packed step's own error")


@op
def segfaults() -> None:
    time.sleep(1)
    ctypes.string_at(0)  # reads address 0: SIGSEGV


@op
def hogs_memory() -> None:
    hog = []
    for _ in range(100):  # up to 2.5 GB, 25 MB at a time: the packed worker looks every 0.25 s
        hog.append(bytearray(25 * 1024**2))
        time.sleep(0.05)


# Steps whose own time is 10 s: a pack of their own (Slurm gives it a minute, its granularity).
TEN_SECONDS = {"dagster-slurm/sbatch": {"time": "0:10"}}


@op(tags=TEN_SECONDS)
def overruns(context: OpExecutionContext) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the pack's worker must then SIGKILL it
    # A process of its own, which the kill must reach too: the test looks for it by its pid.
    started = subprocess.Popen(["sleep", "300"])
    (Path(SHARED) / "markers" / f"overruns-{context.run_id}.pid").write_text(str(started.pid))
    time.sleep(300)


@op(tags=TEN_SECONDS)
def overruns_a_child(context: OpExecutionContext) -> None:
    # Leaves on SIGTERM, as a step does; what it started ignores SIGTERM and must not outlive it.
    started = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 300"])
    (Path(SHARED) / "markers" / f"overruns_a_child-{context.run_id}.pid").write_text(str(started.pid))
    time.sleep(300)


@op(tags=TEN_SECONDS)
def in_time() -> None:
    pass


@op(tags={"dagster-slurm/pack": "false"})
def alone() -> str:
    return "alone"


fine_a, fine_b = _fine("fine_a"), _fine("fine_b")


@job(executor_def=PACKED, resource_defs=IO)
def packed_failures_job():
    fine_a()
    fine_b()
    fails()
    segfaults()
    hogs_memory()
    overruns()
    overruns_a_child()
    in_time()
    alone()


@op
def slow_packed() -> int:
    time.sleep(SLOW_SECONDS)
    return 42


@op
def quick_packed() -> int:
    return 1


@op
def after_packed(context: OpExecutionContext, slow: int, quick: int) -> None:
    context.log.info(f"after_packed got {slow + quick}")


@job(executor_def=PACKED, resource_defs=IO)
def packed_resumable_job():
    after_packed(slow_packed(), quick_packed())


def _sleeper(name: str):
    @op(name=name)
    def sleeper() -> None:
        time.sleep(6)

    return sleeper


@job(executor_def=ONE_AT_A_TIME, resource_defs=IO)
def packed_in_turn_job():
    for i in range(3):
        _sleeper(f"sleeper_{i}")()


@op(tags={"dagster-slurm/sbatch": {"mem": "lots"}})
def vague_memory() -> None:
    pass


@job(executor_def=PACKED)
def vague_memory_job():
    vague_memory()


@job(executor_def=UNLIMITED_STEPS, resource_defs=IO)
def unlimited_time_job():
    _fine("fine_c")()
    _fine("fine_d")()
