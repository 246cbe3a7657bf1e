"""The Slurm executor: each step an sbatch job, events relayed through a journal.

``slurm_executor`` is imported on compute nodes too (by code locations the step workers load);
the executor and step handler behind it are imported when first used.
"""

from typing import TYPE_CHECKING, Any

from dagster_slurm_launcher.executor.config import SBATCH_TAG, SlurmConfigError
from dagster_slurm_launcher.executor.definition import slurm_executor

if TYPE_CHECKING:
    from dagster_slurm_launcher.executor.executor import SlurmExecutor
    from dagster_slurm_launcher.executor.step_handler import SlurmStepHandler

_ON_THE_HOST = {
    "SlurmExecutor": "dagster_slurm_launcher.executor.executor",
    "SlurmStepHandler": "dagster_slurm_launcher.executor.step_handler",
}


def __getattr__(name: str) -> Any:
    if name not in _ON_THE_HOST:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_ON_THE_HOST[name]), name)


__all__ = ["SBATCH_TAG", "SlurmConfigError", "SlurmExecutor", "SlurmStepHandler", "slurm_executor"]
