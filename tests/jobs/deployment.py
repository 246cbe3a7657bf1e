"""A code location as a deployment writes it: no executor named, so the SlurmRunLauncher's
default (the Slurm executor) runs every job, except the one that opts out."""

import time

from dagster import Definitions, In, Nothing, Out, StaticPartitionsDefinition, asset, in_process_executor, job, op
from ops import after_slow, slow_step
from packed import packed_resumable_job

# 12: with 4 runs at once, a daemon restarted after 3 finished finds runs in flight and runs queued.
days = StaticPartitionsDefinition([f"day-{i:02d}" for i in range(12)])


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


@op
def train() -> None:
    # A training step's progress, one line every 2 s for 10 minutes: what a user watches live.
    for epoch in range(1, 301):
        print(f"epoch {epoch}/300: loss {1 / epoch:.3f}")
        time.sleep(2)


@job
def training():
    train()


@op(out=Out(Nothing))
def prepare() -> None:
    print("prepared the input table")


@op(ins={"start": In(Nothing)})
def load() -> None:
    raise ValueError("the input table is empty")


@job
def prepare_then_fail():
    load(start=prepare())


@asset(partitions_def=days)
def daily(context) -> str:
    return context.partition_key


defs = Definitions(
    jobs=[resumable, long_running, opted_out, training, prepare_then_fail, packed_resumable_job], assets=[daily]
)
