"""The Slurm executor: each step an sbatch job, events relayed through a journal.

``slurm_executor`` is imported on compute nodes too (by code locations the step workers load);
the executor and step handler behind it are imported when first used.
"""

from typing import TYPE_CHECKING

from dagster_slurm_launcher.executor.config import PACK_TAG, SBATCH_TAG, SlurmConfigError
from dagster_slurm_launcher.executor.definition import slurm_executor
from dagster_slurm_launcher.lazy import lazy_exports

if TYPE_CHECKING:
    from dagster_slurm_launcher.executor.executor import SlurmExecutor
    from dagster_slurm_launcher.executor.step_handler import SlurmStepHandler

__getattr__ = lazy_exports(
    __name__,
    {
        "SlurmExecutor": "dagster_slurm_launcher.executor.executor",
        "SlurmStepHandler": "dagster_slurm_launcher.executor.step_handler",
    },
)


__all__ = ["PACK_TAG", "SBATCH_TAG", "SlurmConfigError", "SlurmExecutor", "SlurmStepHandler", "slurm_executor"]
