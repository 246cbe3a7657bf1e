"""Jobs that exercise what a step can record, each on the multiprocess executor and on the Slurm
executor: dynamic outputs, failures of every kind, retries, many log lines, a large output,
rich metadata, a multi-asset, a blocking asset check, static and dynamic partitions, assets and
a check that read what the same step recorded."""

import ctypes
import math

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    ConfigurableResource,
    Definitions,
    DynamicOut,
    DynamicOutput,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    StaticPartitionsDefinition,
    asset,
    asset_check,
    define_asset_job,
    graph,
    multi_asset,
    multiprocess_executor,
    op,
)

from dagster_slurm_launcher import slurm_executor

SLURM = slurm_executor.configured({"poll_interval": 1.0, "time": "00:10:00"}, name="slurm_parity")
EXECUTORS = {"multiprocess": multiprocess_executor, "slurm": SLURM}


@op(out=DynamicOut(int))
def fan() -> object:
    for i in range(3):
        yield DynamicOutput(i, mapping_key=f"k{i}")


@op
def double(x: int) -> int:
    return 2 * x


@op
def total(xs: list[int]) -> int:
    return sum(xs)


@graph
def dynamic():
    total(fan().map(double).collect())


@op
def fails_with_metadata() -> None:
    raise Failure("the input was bad", metadata={"rows": 3, "file": MetadataValue.path("/data/in.csv")})


@op
def raises() -> None:
    raise ValueError("boom")


@op
def segfaults() -> None:
    ctypes.string_at(0)


class Broken(ConfigurableResource):
    def setup_for_execution(self, context: object) -> None:
        raise RuntimeError("cannot reach the service")


@op
def needs_broken(broken: Broken) -> None: ...


@op(out=Out(int))
def wrong_type() -> object:
    return "not an int"


@op(retry_policy=RetryPolicy(max_retries=1))
def flaky(context: OpExecutionContext) -> int:
    if context.retry_number == 0:
        raise RuntimeError("the first attempt fails")
    return 1


@op
def chatty(context: OpExecutionContext) -> None:
    for i in range(50):
        context.log.debug(f"debug {i}")
        context.log.info(f"info {i} ✓")
        context.log.warning(f"warning {i}")
        context.log.error(f"error {i}")


@op
def big() -> bytes:
    return bytes(30 * 2**20)


@op
def measures(data: bytes) -> Output:
    return Output(len(data), metadata={"bytes": len(data)})


@graph
def failures():
    fails_with_metadata()
    raises()
    needs_broken()
    wrong_type()


@graph
def crash():
    segfaults()


@graph
def busy():
    flaky()
    chatty()
    measures(big())


@asset(code_version="1")
def rich() -> MaterializeResult:
    return MaterializeResult(
        metadata={
            "nan": math.nan,
            "big": 2**70,
            "text": "ünïcødé",
            "md": MetadataValue.md("# Title\n*x*"),
            "path": MetadataValue.path("/data/out.parquet"),
            "url": MetadataValue.url("https://example.com/report"),
            "json": MetadataValue.json({"a": [1, 2]}),
            "float": 0.1,
        }
    )


@multi_asset(outs={"left": AssetOut(code_version="1"), "right": AssetOut(code_version="1")})
def pair() -> tuple[int, int]:
    return 1, 2


@asset(code_version="1")
def checked() -> int:
    return -1


@asset_check(asset=checked, blocking=True)
def checked_is_positive(checked: int) -> AssetCheckResult:
    return AssetCheckResult(passed=checked > 0, metadata={"value": checked})


@asset(code_version="1")
def after_checked(checked: int) -> int:
    return checked


# Within one step: `second`'s input pointer and the check's target are materializations the
# step itself recorded a moment earlier.
@multi_asset(
    outs={"first": AssetOut(code_version="1"), "second": AssetOut(code_version="1")},
    internal_asset_deps={"first": set(), "second": {AssetKey("first")}},
)
def chained_pair() -> tuple[int, int]:
    return 1, 2


@asset(code_version="1", check_specs=[AssetCheckSpec("is_positive", asset="self_checked")])
def self_checked() -> object:
    yield Output(3)
    yield AssetCheckResult(passed=True, metadata={"value": 3})


static = StaticPartitionsDefinition(["a", "b"])
regions = DynamicPartitionsDefinition(name="regions")


@asset(code_version="1", partitions_def=static)
def per_letter(context: AssetExecutionContext) -> str:
    return context.partition_key


@asset(code_version="1", partitions_def=regions)
def per_region(context: AssetExecutionContext) -> str:
    return context.partition_key


@asset(code_version="1", partitions_def=regions)
def per_region_downstream(per_region: str) -> str:
    return per_region.upper()


def _jobs() -> list:
    jobs = []
    for suffix, executor in EXECUTORS.items():
        jobs += [
            g.to_job(name=f"{g.name}_{suffix}", executor_def=executor, resource_defs={"broken": Broken()})
            for g in (dynamic, failures, crash, busy)
        ]
        jobs += [
            define_asset_job(f"assets_{suffix}", selection=["rich", "left", "right"], executor_def=executor),
            define_asset_job(f"checked_{suffix}", selection=["checked", "after_checked"], executor_def=executor),
            define_asset_job(
                f"same_step_{suffix}", selection=["first", "second", "self_checked"], executor_def=executor
            ),
            define_asset_job(f"per_letter_{suffix}", selection=["per_letter"], executor_def=executor),
            define_asset_job(
                f"per_region_{suffix}", selection=["per_region", "per_region_downstream"], executor_def=executor
            ),
        ]
    return jobs


defs = Definitions(
    assets=[
        rich,
        pair,
        checked,
        after_checked,
        chained_pair,
        self_checked,
        per_letter,
        per_region,
        per_region_downstream,
    ],
    asset_checks=[checked_is_positive],
    jobs=_jobs(),
)

# ReconstructableJob.for_file (how the tests and the step worker load a job) finds a job by its
# name at module scope.
globals().update({job.name: defs.resolve_job_def(job.name) for job in defs.jobs})
