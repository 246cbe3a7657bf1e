"""A 100-step fan-out of trivial steps: one root, 99 leaves that depend on it."""

from dagster import In, Nothing, Out, job, op

from dagster_slurm_launcher import slurm_executor


@op(out=Out(Nothing))
def root() -> None:
    pass


def _leaf(i: int):  # noqa: ANN202
    @op(name=f"leaf_{i:02d}", ins={"start": In(Nothing)})
    def leaf() -> None:
        pass

    return leaf


LEAVES = [_leaf(i) for i in range(99)]


@job(executor_def=slurm_executor.configured({"poll_interval": 1.0}))
def fanout():
    started = root()
    for leaf in LEAVES:
        leaf(start=started)
