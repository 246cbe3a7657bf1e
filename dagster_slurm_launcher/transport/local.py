"""Run Slurm's commands on this machine, for a Dagster that runs on the login node."""

import subprocess

from dagster_slurm_launcher.transport.base import CommandResult, Transport, TransportError


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
            )
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"command timed out after {timeout:.0f}s: {command}") from exc
        return CommandResult(
            command=command,
            exit_code=proc.returncode,
            stdout=proc.stdout.decode("utf-8", "replace"),
            stderr=proc.stderr.decode("utf-8", "replace"),
        )
