"""Run Slurm's commands on this machine, for a Dagster that runs on the login node."""

import os
import re
import subprocess

from dagster_slurm_launcher.transport.base import CommandInterrupted, CommandResult, Transport

# Variables that hold secrets of the run worker (database passwords, DAGSTER_SLURM_PASSWORD,
# cloud keys): no command on the cluster side needs them, and sbatch would copy its whole
# environment into slurmctld's job state and the job.
_SECRET = re.compile(r"^DAGSTER_|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|_KEY($|_)|^KEY_", re.IGNORECASE)


def command_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
    """The environment commands run with: this process's, without anything that looks secret."""
    return {name: value for name, value in environ.items() if not _SECRET.search(name)}


class LocalTransport(Transport):
    """Runs each command with ``bash -c`` as the current user."""

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 600.0) -> CommandResult:
        try:
            proc = subprocess.run(
                ["bash", "-c", command],
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=timeout,
                check=False,
                env=command_environment(),
            )
        except subprocess.TimeoutExpired as exc:
            # Its children may go on (bash is killed, not its process group): it may have run.
            raise CommandInterrupted(f"command timed out after {timeout:.0f}s: {command}") from exc
        return CommandResult(
            command=command,
            exit_code=proc.returncode,
            output=proc.stdout,
            stderr=proc.stderr.decode("utf-8", "replace"),
        )
