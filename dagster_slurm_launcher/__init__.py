"""Run every Dagster step as a Slurm job."""

from dagster_slurm_launcher.settings import SettingsError, SlurmSettings, load_settings

__all__ = ["SettingsError", "SlurmSettings", "load_settings"]
