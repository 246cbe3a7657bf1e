"""The sbatch script that runs one step on a compute node, and the files it reads."""

import shlex
from collections.abc import Mapping, Sequence

from dagster_slurm_launcher.journal import JOURNAL_FILE
from dagster_slurm_launcher.payload import PAYLOAD_FILE
from dagster_slurm_launcher.transport import Transport, TransportError

ENV_FILE = "env"
META_FILE = "meta.json"

# $1 the step folder, then three pairs (byte count, file name) of files whose contents follow
# each other on stdin, then the journal's name. The files the relay reads are created empty before the job
# exists, so that a login node whose shared filesystem caches lookups (NFS, negative entries
# for up to acdirmax) never caches them as missing. `dd ... count_bytes` reads exactly that
# many bytes from the pipe (head -c may read ahead and lose the rest).
_WRITE_STEP_FOLDER = r"""
umask 077
mkdir -p -- "$1" && cd -- "$1" || exit 1
take() { dd bs=65536 count="$1" iflag=count_bytes,fullblock status=none >"$2.tmp" && mv -f -- "$2.tmp" "$2"; }
take "$2" "$3" && take "$4" "$5" && take "$6" "$7" && : >>"$8" && : >>stdout && : >>stderr
"""


def render_script(*, setup: Sequence[str], working_directory: str | None, python: str, step_folder: str) -> str:
    """A bash login script: the cluster user's environment, the step's own (from the 0600 file
    :func:`render_env_file` wrote), the user's setup lines, then the step worker.

    The job is submitted with ``--export=NONE`` (nothing of the submitting process's environment
    reaches it), so the script is a login shell, as sites advise: PATH, HOME and the module
    system come from the cluster user's profile. Variable values are never in the script, which
    Slurm keeps (``sacct -B``, ``scontrol write batch_script``). ``setup`` lines are the user's
    own shell (``module load ...``) and go in as written; every other value is quoted. The worker
    is ``exec``'d so that Slurm's signals (``--signal=B:...``, the time limit's SIGTERM) reach
    the step itself.
    """
    lines = [
        "#!/bin/bash -l",
        "# Written by dagster-slurm-launcher: runs one Dagster step.",
        "set -e",
        # srun inside the step (MPI, say) passes the step's environment on, not NONE.
        "export SLURM_EXPORT_ENV=ALL",
        f". {shlex.quote(f'{step_folder}/{ENV_FILE}')}",
        *setup,
    ]
    if working_directory:
        lines.append(f"cd -- {shlex.quote(working_directory)}")
    lines.append(f"exec {shlex.quote(python)} -m dagster_slurm_launcher.worker {shlex.quote(step_folder)}")
    return "\n".join(lines) + "\n"


def render_env_file(env: Mapping[str, str]) -> str:
    """The step's environment variables as shell, for a file only the cluster user can read."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def write_step_folder(transport: Transport, folder: str, payload: bytes, meta: bytes, env: bytes) -> None:
    """Create ``folder`` (0700) with the step's files (0600), in one command."""
    files = [(payload, PAYLOAD_FILE), (meta, META_FILE), (env, ENV_FILE)]
    argv = [folder, *(str(x) for data, name in files for x in (len(data), name)), JOURNAL_FILE]
    command = f"bash -c {shlex.quote(_WRITE_STEP_FOLDER)} write-step-folder {shlex.join(argv)}"
    result = transport.run(command, stdin=payload + meta + env)
    if not result.ok:
        raise TransportError(f"could not write the step folder {folder} on the cluster: {result.stderr.strip()}")
