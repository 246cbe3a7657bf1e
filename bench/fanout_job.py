"""A fan-out of trivial steps: one root, STEPS - 1 leaves that depend on it (each sleeping SLEEP
seconds), as jobs that differ only in their executor (the Slurm executor with and without
packing).

bench/fanout.py copies this file with STEPS set to the count it was asked for; bench/resume.py
with SLEEP set too, so that the leaves are still in Slurm when it kills the run worker.
"""

import time

from dagster import In, Nothing, Out, graph, multiprocess_executor, op

from dagster_slurm_launcher import slurm_executor

STEPS = 100
SLEEP = 0


@op(out=Out(Nothing))
def root() -> None:
    pass


def _leaf(i: int):
    @op(name=f"leaf_{i:04d}", ins={"start": In(Nothing)})
    def leaf() -> None:
        if SLEEP:
            time.sleep(SLEEP)

    return leaf


LEAVES = [_leaf(i) for i in range(STEPS - 1)]


@graph
def fanout_graph():
    started = root()
    for leaf in LEAVES:
        leaf(start=started)


fanout = fanout_graph.to_job(name="fanout", executor_def=slurm_executor.configured({"poll_interval": 1.0}))
# Two at a time: the lab's 2 cores (its node claims 32 CPUs, which raw sbatch's jobs all use).
fanout_packed = fanout_graph.to_job(
    name="fanout_packed",
    executor_def=slurm_executor.configured({"poll_interval": 1.0, "pack": {"max_steps": 1000, "cpus": 2}}),
)
fanout_multiprocess = fanout_graph.to_job(name="fanout_multiprocess", executor_def=multiprocess_executor)
# 32 at a time (the lab's node claims 32 CPUs): bench/resume.py's leaves are still in Slurm,
# running or waiting their turn, when it kills the run worker.
resume_packed = fanout_graph.to_job(
    name="resume_packed",
    executor_def=slurm_executor.configured({"poll_interval": 1.0, "pack": {"max_steps": 1000, "cpus": 32}}),
)
