"""From executor or launcher config (and ``DAGSTER_SLURM_*`` settings) to a Slurm client."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster_slurm_launcher.settings import SlurmSettings, load_settings
from dagster_slurm_launcher.slurm import SlurmClient
from dagster_slurm_launcher.transport import make_transport


@dataclass(frozen=True)
class Cluster:
    """A connected Slurm client, the settings it was made from, and the absolute run-folder root."""

    client: SlurmClient
    settings: SlurmSettings
    remote_base_dir: str

    @property
    def key(self) -> str:
        """The cluster and user, as the settings name them: processes of this host with the same
        key watch the same user's jobs (and share their status queries)."""
        s = self.settings
        if s.transport == "local":
            return f"local uid={os.getuid()}"
        return f"ssh {s.user or ''}@{s.host}:{s.port or ''} via {s.jump_host or ''}"


def settings_from(config: Mapping[str, Any]) -> SlurmSettings:
    """The settings ``config`` (the executor's schema) gives; unset keys come from the environment."""
    overrides = {k: v for k, v in (config.get("connection") or {}).items() if v is not None}
    for key in ("python", "remote_base_dir", "poll_interval", "journal_grace"):
        if config.get(key) is not None:
            overrides[key] = config[key]
    return load_settings(**overrides)


def connect(settings: SlurmSettings) -> Cluster:
    """Connect as ``settings`` say."""
    client = SlurmClient(make_transport(settings), retry_timeout=settings.reconnect_timeout)
    remote_base_dir = settings.remote_base_dir
    if not remote_base_dir.startswith("/"):
        home = client.transport.run('printf %s "$HOME"').stdout
        remote_base_dir = f"{home}/{remote_base_dir}"
    return Cluster(client=client, settings=settings, remote_base_dir=remote_base_dir)
