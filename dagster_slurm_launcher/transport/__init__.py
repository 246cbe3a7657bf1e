"""Transports: how commands reach the Slurm login node (over SSH, or locally).

The SSH transports are imported when first used: modules that only name the interface are
imported on compute nodes too, which need neither paramiko nor fabric.
"""

from typing import TYPE_CHECKING

from dagster_slurm_launcher.lazy import lazy_exports
from dagster_slurm_launcher.transport.base import CommandInterrupted, CommandResult, Transport, TransportError
from dagster_slurm_launcher.transport.local import LocalTransport

if TYPE_CHECKING:
    from dagster_slurm_launcher.settings import SlurmSettings
    from dagster_slurm_launcher.transport.openssh import OpenSSHTransport
    from dagster_slurm_launcher.transport.ssh import SSHTransport

__getattr__ = lazy_exports(
    __name__,
    {
        "OpenSSHTransport": "dagster_slurm_launcher.transport.openssh",
        "SSHTransport": "dagster_slurm_launcher.transport.ssh",
    },
)


def make_transport(settings: "SlurmSettings") -> Transport:
    """The transport that ``settings.transport`` names."""
    if settings.transport == "ssh":
        from dagster_slurm_launcher.transport.ssh import SSHTransport

        return SSHTransport(settings)
    if settings.transport == "openssh":
        from dagster_slurm_launcher.transport.openssh import OpenSSHTransport

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
