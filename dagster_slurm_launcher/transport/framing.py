"""Keep what a login shell's start-up files print apart from a command's own output.

sshd runs every command through the cluster user's shell, and many sites' start-up files
(``~/.bashrc``: banners, quota notices, ``module`` messages, locale warnings) print even for a
non-interactive command, on stdout and stderr. The command is sent between two printed markers,
fresh for each call, so its parser reads exactly what the command wrote; what the shell printed
outside them is kept apart, for ``dagster-slurm check`` to report.
"""

import uuid
from dataclasses import dataclass

from dagster_slurm_launcher.transport.base import CommandResult


@dataclass(frozen=True)
class Framed:
    """A command wrapped in markers, and how to take its output back out."""

    command: str
    marker: bytes

    def started(self, output: bytes) -> bool:
        """Whether the shell got as far as the command: the opening marker is there."""
        return self.marker + b"\n" in output

    def finished(self, output: bytes) -> bool:
        """Whether the command ran to its end: the closing marker follows the opening one."""
        start = output.find(self.marker + b"\n")
        return start >= 0 and output.rfind(self.marker) > start

    def split(self, output: bytes) -> tuple[bytes, bytes]:
        """``(what the command wrote, what the shell printed around it)``.

        The marker is random and printed by the shell itself, so no file or program output can
        contain it by chance; without the opening marker (a shell that never ran the command)
        the whole output is the command's, as without framing.
        """
        begin = self.marker + b"\n"
        start = output.find(begin)
        if start < 0:
            return output, b""
        end = output.rfind(self.marker)
        if end < start + len(begin):  # cut off before the closing marker
            end = len(output)
        noise = output[:start] + output[end + len(self.marker) :]
        return output[start + len(begin) : end], noise


def frame(command: str) -> Framed:
    """``command`` with a marker line before it and a marker after it, on stdout and stderr.

    The command runs in a subshell so that its ``exit`` still reaches the closing marker; its
    exit status is the framed command's.
    """
    marker = f"dagster-slurm-{uuid.uuid4().hex}"
    text = (
        f"printf '%s\\n' {marker}; printf '%s\\n' {marker} >&2\n"
        f"( {command}\n)\n"
        f"rc=$?; printf %s {marker}; printf %s {marker} >&2; exit $rc"
    )
    return Framed(command=text, marker=marker.encode())


def framed_result(framed: Framed, command: str, exit_code: int, stdout: bytes, stderr: bytes) -> CommandResult:
    """The result of ``command``, sent as ``framed``, from what its channel carried."""
    output, out_noise = framed.split(stdout)
    errors, err_noise = framed.split(stderr)
    return CommandResult(
        command=command,
        exit_code=exit_code,
        output=output,
        stderr=errors.decode("utf-8", "replace"),
        shell_noise=(out_noise + err_noise).decode("utf-8", "replace"),
    )
