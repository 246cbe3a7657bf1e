"""The sbatch script that runs one step on a compute node."""

import shlex
from collections.abc import Mapping, Sequence


def render_script(
    *, setup: Sequence[str], env: Mapping[str, str], working_directory: str | None, python: str, step_folder: str
) -> str:
    """A bash script: the user's setup lines, the step's environment, then the step worker.

    ``setup`` lines are the user's own shell (``module load ...``) and go in as written; every
    other value is quoted. The worker is ``exec``'d so that Slurm's signals (``--signal=B:...``,
    the time limit's SIGTERM) reach the step itself.
    """
    lines = ["#!/bin/bash", "# Written by dagster-slurm-launcher: runs one Dagster step.", "set -e", *setup]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    if working_directory:
        lines.append(f"cd -- {shlex.quote(working_directory)}")
    lines.append(f"exec {shlex.quote(python)} -m dagster_slurm_launcher.worker {shlex.quote(step_folder)}")
    return "\n".join(lines) + "\n"
