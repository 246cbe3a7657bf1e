"""The demo's code location: four assets, no executor named, so each step runs as its own
Slurm job through the SlurmRunLauncher's default executor."""

import socket

from dagster import AssetExecutionContext, Definitions, MaterializeResult, asset, define_asset_job


@asset
def numbers() -> list[int]:
    return list(range(10))


@asset
def squares(numbers: list[int]) -> list[int]:
    return [n * n for n in numbers]


@asset(op_tags={"dagster-slurm/sbatch": {"mem": "300M", "time": "00:05:00"}})
def cubes(numbers: list[int]) -> list[int]:
    return [n**3 for n in numbers]


@asset
def summary(context: AssetExecutionContext, squares: list[int], cubes: list[int]) -> MaterializeResult:
    context.log.info(f"computed on {socket.gethostname()}")
    return MaterializeResult(metadata={"sum_of_squares": sum(squares), "sum_of_cubes": sum(cubes)})


defs = Definitions(assets=[numbers, squares, cubes, summary], jobs=[define_asset_job("demo_job", "*")])
