"""The Slurm executor: each step an sbatch job, events relayed through a journal."""

from dagster_slurm_launcher.executor.config import SBATCH_TAG, SlurmConfigError
from dagster_slurm_launcher.executor.executor import SlurmExecutor, slurm_executor
from dagster_slurm_launcher.executor.step_handler import SlurmStepHandler

__all__ = ["SBATCH_TAG", "SlurmConfigError", "SlurmExecutor", "SlurmStepHandler", "slurm_executor"]
