"""Static and dynamic partitioned assets on the Slurm executor."""

from dagster import (
    AssetExecutionContext,
    Definitions,
    DynamicPartitionsDefinition,
    StaticPartitionsDefinition,
    asset,
    define_asset_job,
)

from dagster_slurm_launcher import slurm_executor

regions = StaticPartitionsDefinition(["eu", "us"])
samples = DynamicPartitionsDefinition(name="samples")


@asset(partitions_def=regions)
def by_region(context: AssetExecutionContext) -> str:
    return context.partition_key


@asset(partitions_def=samples)
def by_sample(context: AssetExecutionContext) -> str:
    context.log.info(f"sample {context.partition_key}")
    return context.partition_key


defs = Definitions(
    assets=[by_region, by_sample],
    jobs=[define_asset_job("regions_job", [by_region]), define_asset_job("samples_job", [by_sample])],
    executor=slurm_executor.configured({"poll_interval": 1.0}),
)
regions_job = defs.resolve_job_def("regions_job")
samples_job = defs.resolve_job_def("samples_job")
