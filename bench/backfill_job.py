"""A partitioned graph of three trivial assets, no executor named: bench/backfill.py backfills it.

bench/backfill.py copies this file with PARTITIONS set to the count it was asked for.
"""

from dagster import AssetExecutionContext, Definitions, StaticPartitionsDefinition, asset

PARTITIONS = 200
parts = StaticPartitionsDefinition([f"p{i:04d}" for i in range(PARTITIONS)])


@asset(partitions_def=parts)
def raw(context: AssetExecutionContext) -> int:
    return int(context.partition_key[1:])


@asset(partitions_def=parts)
def clean(raw: int) -> int:
    return raw * 2


@asset(partitions_def=parts)
def report(clean: int) -> int:
    return clean + 1


defs = Definitions(assets=[raw, clean, report])
