"""The sbatch script that runs one step on a compute node, and the files it reads."""

import shlex
from collections.abc import Mapping, Sequence

ENV_FILE = "env"
META_FILE = "meta.json"
# The batch script, kept in the folder: sbatch reads it from there.
SCRIPT_FILE = "job.sh"


def render_script(
    *, setup: Sequence[str], working_directory: str | None, python: str, step_folder: str, packed: bool = False
) -> str:
    """A bash login script: the cluster user's environment, the step's own (from the 0600 file
    :func:`render_env_file` wrote), the user's setup lines, then the step worker.

    The job is submitted with ``--export=NONE`` (nothing of the submitting process's environment
    reaches it), so the script is a login shell, as sites advise: PATH, HOME and the module
    system come from the cluster user's profile. Variable values are never in the script, which
    Slurm keeps (``sacct -B``, ``scontrol write batch_script``). ``setup`` lines are the user's
    own shell (``module load ...``) and go in as written; every other value is quoted. The worker
    is ``exec``'d so that Slurm's signals (``--signal=B:...``, the time limit's SIGTERM) reach
    the step itself. A pack's script runs the packed worker on the pack's folder instead.
    """
    lines = [
        "#!/bin/bash -l",
        "# Written by dagster-slurm-launcher: runs Dagster steps.",
        "set -e",
        # srun inside the step (MPI, say) passes the step's environment on, not NONE.
        "export SLURM_EXPORT_ENV=ALL",
        f". {shlex.quote(f'{step_folder}/{ENV_FILE}')}",
        *setup,
    ]
    if working_directory:
        lines.append(f"cd -- {shlex.quote(working_directory)}")
    # -u: Python buffers a print() to a file in 8 KiB blocks; unbuffered, each line reaches the
    # job's output file, and the UI's logs view, as the step prints it (what `python -u` in an
    # sbatch script is for).
    worker = "dagster_slurm_launcher.packed_worker" if packed else "dagster_slurm_launcher.worker"
    lines.append(f"exec {shlex.quote(python)} -u -m {worker} {shlex.quote(step_folder)}")
    return "\n".join(lines) + "\n"


def render_env_file(env: Mapping[str, str]) -> str:
    """The step's environment variables as shell, for a file only the cluster user can read."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
