"""Run every Dagster step as a Slurm job.

A code location that names ``slurm_executor`` is loaded by every step worker on the compute
nodes too: names are imported when first used, so that such a location does not bring the
launcher, the SSH stack or the settings loader there.
"""

from typing import TYPE_CHECKING, Any

from dagster_slurm_launcher.lazy import lazy_exports

if TYPE_CHECKING:
    from dagster_slurm_launcher.executor import PACK_TAG, SBATCH_TAG, SlurmConfigError, slurm_executor
    from dagster_slurm_launcher.launcher import SlurmRunLauncher
    from dagster_slurm_launcher.settings import SettingsError, SlurmSettings, load_settings
    from dagster_slurm_launcher.unavailable import HISTORY_TAG, UnavailableOnComputeNode

_exports = lazy_exports(
    __name__,
    {
        "HISTORY_TAG": "dagster_slurm_launcher.unavailable",
        "PACK_TAG": "dagster_slurm_launcher.executor",
        "SBATCH_TAG": "dagster_slurm_launcher.executor",
        "SettingsError": "dagster_slurm_launcher.settings",
        "SlurmConfigError": "dagster_slurm_launcher.executor",
        "SlurmRunLauncher": "dagster_slurm_launcher.launcher",
        "SlurmSettings": "dagster_slurm_launcher.settings",
        "UnavailableOnComputeNode": "dagster_slurm_launcher.unavailable",
        "load_settings": "dagster_slurm_launcher.settings",
        "slurm_executor": "dagster_slurm_launcher.executor",
    },
)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("dagster-slurm-launcher")
    return _exports(name)


__all__ = [
    "HISTORY_TAG",
    "PACK_TAG",
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
