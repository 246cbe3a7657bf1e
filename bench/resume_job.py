"""A fan-out whose leaves sleep: one root, STEPS - 1 leaves that depend on it, each sleeping
SLEEP seconds, packed.

bench/resume.py copies this file with STEPS and SLEEP set to what it was asked for.
"""

import time

from dagster import In, Nothing, Out, graph, op

from dagster_slurm_launcher import slurm_executor

STEPS = 100
SLEEP = 10


@op(out=Out(Nothing))
def root() -> None:
    pass


def _leaf(i: int):
    @op(name=f"leaf_{i:04d}", ins={"start": In(Nothing)})
    def leaf() -> None:
        time.sleep(SLEEP)

    return leaf


LEAVES = [_leaf(i) for i in range(STEPS - 1)]


@graph
def resume_graph():
    started = root()
    for leaf in LEAVES:
        leaf(start=started)


# 32 at a time (the lab's node claims 32 CPUs): the leaves are still in Slurm, running or
# waiting their turn, when bench/resume.py kills the run worker.
resume_packed = resume_graph.to_job(
    name="resume_packed",
    executor_def=slurm_executor.configured({"poll_interval": 1.0, "pack": {"max_steps": 1000, "cpus": 32}}),
)
