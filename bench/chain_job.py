"""A chain of four trivial assets, each depending on the one before: bench/chain.py runs it."""

from dagster import AssetExecutionContext, Definitions, asset, define_asset_job, multiprocess_executor

from dagster_slurm_launcher import slurm_executor


@asset
def first(context: AssetExecutionContext) -> int:
    return 1


@asset
def second(first: int) -> int:
    return first + 1


@asset
def third(second: int) -> int:
    return second + 1


@asset
def fourth(third: int) -> int:
    return third + 1


ASSETS = [first, second, third, fourth]
defs = Definitions(
    assets=ASSETS,
    jobs=[
        define_asset_job("on_slurm", ASSETS, executor_def=slurm_executor),
        define_asset_job("multiprocess", ASSETS, executor_def=multiprocess_executor),
    ],
)
on_slurm = defs.resolve_job_def("on_slurm")
multiprocess = defs.resolve_job_def("multiprocess")
