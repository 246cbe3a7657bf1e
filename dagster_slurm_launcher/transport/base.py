"""The interface every transport implements: run a shell command on the cluster side."""

from abc import ABC, abstractmethod
from dataclasses import dataclass


class TransportError(RuntimeError):
    """The cluster could not be reached; the message says why and what to check."""


class CommandInterrupted(TransportError):
    """The connection broke while a command ran: it may or may not have taken effect."""


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    command: str
    exit_code: int
    output: bytes
    """stdout as the command wrote it: file contents are bytes, whatever their encoding."""
    stderr: str
    shell_noise: str = ""
    """What the cluster user's shell start-up files printed around the command (stdout, then
    stderr); not part of ``output`` or ``stderr``."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def stdout(self) -> str:
        return self.output.decode("utf-8", "replace")


class Transport(ABC):
    """Runs POSIX shell commands where Slurm's commands are: on a login node, over SSH or locally.

    Commands are shell text; every value in them must be quoted with :func:`shlex.quote`
    (or built with :func:`shlex.join`). Data goes through ``stdin``, never the command line.
    """

    @abstractmethod
    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 600.0) -> CommandResult:
        """Run ``command`` in a shell on the cluster side and wait for it.

        Raises:
            TransportError: the command could not be started (after the transport's retries).
            CommandInterrupted: the connection broke after the command started.
        """

    def close(self) -> None:  # noqa: B027 - a transport that holds no connection has nothing to release
        """Release connections. The transport reconnects if used again."""
