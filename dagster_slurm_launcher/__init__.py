"""Run every Dagster step as a Slurm job."""

from importlib.metadata import version

from dagster_slurm_launcher.executor import SBATCH_TAG, SlurmConfigError, slurm_executor
from dagster_slurm_launcher.launcher import SlurmRunLauncher
from dagster_slurm_launcher.settings import SettingsError, SlurmSettings, load_settings
from dagster_slurm_launcher.unavailable import HISTORY_TAG, UnavailableOnComputeNode

__version__ = version("dagster-slurm-launcher")

__all__ = [
    "HISTORY_TAG",
    "SBATCH_TAG",
    "SettingsError",
    "SlurmConfigError",
    "SlurmRunLauncher",
    "SlurmSettings",
    "UnavailableOnComputeNode",
    "__version__",
    "load_settings",
    "slurm_executor",
]
