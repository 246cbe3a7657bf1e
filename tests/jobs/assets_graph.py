"""Six assets with fan-out and fan-in, on the Slurm executor (default IO manager)."""

from dagster import AssetExecutionContext, Definitions, MaterializeResult, asset, define_asset_job

from dagster_slurm_launcher import slurm_executor


@asset
def source() -> int:
    return 1


@asset
def left(source: int) -> int:
    return source + 1


@asset
def middle(source: int) -> int:
    return source + 2


@asset
def right(source: int) -> int:
    return source + 3


@asset
def joined(left: int, middle: int, right: int) -> int:
    return left + middle + right


@asset
def report(context: AssetExecutionContext, joined: int) -> MaterializeResult:
    context.log.info(f"total is {joined} — ünïcødé")
    print(f"report printed {joined} to stdout")
    return MaterializeResult(metadata={"total": joined})


defs = Definitions(
    assets=[source, left, middle, right, joined, report],
    jobs=[define_asset_job("all_assets")],
    executor=slurm_executor.configured({"poll_interval": 1.0, "time": "00:10:00"}),
)
all_assets = defs.resolve_job_def("all_assets")
