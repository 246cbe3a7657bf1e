"""Assets with code versions and readers of asset history, each as two jobs: on the
multiprocess executor and on the Slurm executor, so that a test can compare what they record."""

from dagster import (
    AllPartitionMapping,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    DailyPartitionsDefinition,
    DataVersion,
    Definitions,
    MaterializeResult,
    StaticPartitionsDefinition,
    TimeWindowPartitionMapping,
    asset,
    define_asset_job,
    multiprocess_executor,
    observable_source_asset,
)

from dagster_slurm_launcher import slurm_executor

SLURM = slurm_executor.configured({"poll_interval": 1.0, "time": "00:10:00"}, name="slurm_parity")
days = StaticPartitionsDefinition(["d1", "d2", "d3"])
# A wide upstream: 2,000 days, read all at once or the last 99 days at a time (Dagster's provenance
# code reads each partition's data version below 100 partitions per input, and none from 100 on).
wide = DailyPartitionsDefinition(start_date="2020-01-01", end_date="2025-06-23")


@asset(code_version="1")
def upstream() -> int:
    return 1


@asset(code_version="1")
def downstream(upstream: int) -> int:
    return upstream + 1


@asset(code_version="1", deps=[upstream])
def reads_history(context: AssetExecutionContext) -> MaterializeResult:
    """What user code sees of an upstream's history: its latest materialization, and the record
    of its data version."""
    event = context.instance.get_latest_materialization_event(AssetKey("upstream"))
    record = context.instance.get_latest_data_version_record(AssetKey("upstream"))
    return MaterializeResult(
        metadata={
            "upstream_run": event.run_id if event else "none",
            "upstream_data_version": record.asset_materialization.tags["dagster/data_version"] if record else "none",
        }
    )


@asset(code_version="1", partitions_def=days)
def daily(context: AssetExecutionContext) -> str:
    return context.partition_key


@asset(code_version="1", partitions_def=days)
def daily_downstream(daily: str) -> str:
    return daily + "!"


@asset(code_version="1", ins={"daily": AssetIn(partition_mapping=AllPartitionMapping())})
def daily_total(daily: dict[str, str]) -> str:
    """Unpartitioned, reads every partition of `daily`: provenance takes each one's data version."""
    return ",".join(sorted(daily))


@asset(partitions_def=wide)
def wide_upstream(context: AssetExecutionContext) -> str:
    return context.partition_key


@asset(code_version="1", ins={"wide_upstream": AssetIn(partition_mapping=AllPartitionMapping())})
def reads_all_of_wide(wide_upstream: dict[str, str]) -> int:
    return len(wide_upstream)


@asset(
    code_version="1",
    partitions_def=wide,
    ins={"wide_upstream": AssetIn(partition_mapping=TimeWindowPartitionMapping(start_offset=-98))},
)
def reads_99_of_wide(wide_upstream: dict[str, str]) -> int:
    return len(wide_upstream)


@observable_source_asset
def source() -> DataVersion:
    return DataVersion("s1")


@asset(code_version="1", deps=[source])
def from_source() -> None:
    """Its provenance takes the source's latest observation."""


@asset(code_version="1", op_tags={"dagster-slurm/asset-history": "downstream, daily"})
def reads_tagged_history(context: AssetExecutionContext) -> None:
    """Reads the history of assets it does not depend on, named in its tag."""
    for key in ("downstream", "daily"):
        event = context.instance.get_latest_materialization_event(AssetKey(key))
        version = event.asset_materialization.tags.get("dagster/data_version") if event else None
        context.log.info(f"{key}: latest data version {version}")


@asset(code_version="1", deps=[upstream])
def reads_unshipped_history(context: AssetExecutionContext) -> None:
    """Reads an asset it neither depends on nor names in its tag."""
    context.instance.get_latest_materialization_event(AssetKey("daily"))


def both(name: str, selection: list[str]) -> list:
    return [
        define_asset_job(f"{name}_{suffix}", selection=selection, executor_def=executor)
        for suffix, executor in (("multiprocess", multiprocess_executor), ("slurm", SLURM))
    ]


defs = Definitions(
    assets=[
        upstream,
        downstream,
        reads_history,
        daily,
        daily_downstream,
        daily_total,
        source,
        from_source,
        wide_upstream,
        reads_all_of_wide,
        reads_99_of_wide,
        reads_tagged_history,
        reads_unshipped_history,
    ],
    jobs=[
        *both("upstream", ["upstream"]),
        *both("downstream", ["downstream", "reads_history"]),
        *both("chain", ["upstream", "downstream", "reads_history"]),
        *both("daily", ["daily"]),
        *both("daily_downstream", ["daily_downstream"]),
        *both("daily_total", ["daily_total"]),
        *both("observe", ["source"]),
        *both("wide", ["reads_all_of_wide", "reads_99_of_wide"]),
        *both("from_source", ["from_source"]),
        *both("unshipped", ["reads_unshipped_history"]),
        *both("tagged", ["reads_tagged_history"]),
    ],
)

# ReconstructableJob.for_file (how the tests and the step worker load a job) finds a job by its
# name at module scope.
globals().update({job.name: defs.resolve_job_def(job.name) for job in defs.jobs})
