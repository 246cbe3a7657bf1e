"""The demo's code location: a partitioned graph of three assets, no executor named, so each step
runs as its own Slurm job through the SlurmRunLauncher's default executor."""

import socket

from dagster import (
    AssetExecutionContext,
    Definitions,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
    define_asset_job,
)

REGIONS = StaticPartitionsDefinition([f"region-{i:02d}" for i in range(1, 9)])


@asset(partitions_def=REGIONS)
def readings(context: AssetExecutionContext) -> list[int]:
    seed = int(context.partition_key.split("-")[1])
    return [seed * n for n in range(100)]


@asset(partitions_def=REGIONS, op_tags={"dagster-slurm/sbatch": {"mem": "300M", "time": "00:05:00"}})
def cleaned(readings: list[int]) -> list[int]:
    return [r for r in readings if r % 3]


@asset(partitions_def=REGIONS)
def summary(context: AssetExecutionContext, cleaned: list[int]) -> MaterializeResult:
    print(f"summarising {context.partition_key} on {socket.gethostname()}")
    context.log.info(f"computed on {socket.gethostname()}")
    return MaterializeResult(metadata={"count": len(cleaned), "total": sum(cleaned)})


defs = Definitions(assets=[readings, cleaned, summary], jobs=[define_asset_job("regions", "*", partitions_def=REGIONS)])
