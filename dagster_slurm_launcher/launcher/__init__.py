"""The run launcher: detached run workers on the Dagster host, found again by run monitoring."""

from dagster_slurm_launcher.launcher.launcher import SlurmRunLauncher

__all__ = ["SlurmRunLauncher"]
