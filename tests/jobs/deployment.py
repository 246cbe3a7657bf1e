"""A code location as a deployment writes it: no executor named, so the SlurmRunLauncher's
default (the Slurm executor) runs every job, except the one that opts out."""

import time

from dagster import Definitions, StaticPartitionsDefinition, asset, in_process_executor, job, op
from ops import after_slow, slow_step

days = StaticPartitionsDefinition([f"day-{i:02d}" for i in range(20)])


@job
def resumable():
    after_slow(slow_step())


@op
def long_step() -> None:
    time.sleep(180)


@job
def long_running():
    long_step()


@op
def where() -> None:
    print("ran in the run worker")


@job(executor_def=in_process_executor)
def opted_out():
    where()


@asset(partitions_def=days)
def daily(context) -> str:
    return context.partition_key


defs = Definitions(jobs=[resumable, long_running, opted_out], assets=[daily])
