"""Transports: how commands reach the Slurm login node (over SSH, or locally)."""

from dagster_slurm_launcher.settings import SlurmSettings
from dagster_slurm_launcher.transport.base import CommandInterrupted, CommandResult, Transport, TransportError
from dagster_slurm_launcher.transport.local import LocalTransport
from dagster_slurm_launcher.transport.openssh import OpenSSHTransport
from dagster_slurm_launcher.transport.ssh import SSHTransport


def make_transport(settings: SlurmSettings) -> Transport:
    """The transport that ``settings.transport`` names."""
    if settings.transport == "ssh":
        return SSHTransport(settings)
    if settings.transport == "openssh":
        return OpenSSHTransport(settings)
    return LocalTransport()


__all__ = [
    "CommandInterrupted",
    "CommandResult",
    "LocalTransport",
    "OpenSSHTransport",
    "SSHTransport",
    "Transport",
    "TransportError",
    "make_transport",
]
