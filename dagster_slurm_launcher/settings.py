"""Connection and behaviour settings, read from ``DAGSTER_SLURM_*`` environment variables."""

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dagster_slurm_launcher.naming import ENV_PREFIX


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the environment variable."""


class SlurmSettings(BaseSettings):
    """How to reach the Slurm cluster and how to behave there.

    Every field is read from the environment variable ``DAGSTER_SLURM_<FIELD>`` (for example
    ``DAGSTER_SLURM_HOST``) unless passed explicitly.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    transport: Literal["ssh", "openssh", "local"] = Field(
        "ssh",
        description="`ssh` to a login node; `openssh` over an OpenSSH master connection you opened "
        "(sites with a second factor); `local` when Dagster runs on a login node.",
    )
    host: str | None = Field(None, description="Login node, or a Host alias from ~/.ssh/config.")
    port: int | None = Field(None, ge=1, le=65535, description="SSH port (default: ssh config, else 22).")
    user: str | None = Field(None, description="Cluster user (default: ssh config, else local user).")
    key_file: Path | None = Field(None, description="Private key (default: ssh config and agent).")
    known_hosts: Path | None = Field(
        None, description="known_hosts file to verify the host key against (default ~/.ssh/known_hosts)."
    )
    password: SecretStr | None = Field(None, description="Password or key passphrase; never logged.")
    jump_host: str | None = Field(None, description="Bastion to reach the login node through (user@host:port).")
    control_path: str | None = Field(
        None,
        description="The master connection's socket (transport `openssh`), as ssh's -S takes it: "
        "`~/.ssh/cm-%r@%h:%p`, say.",
    )
    ssh_control_dir: Path = Field(
        Path("~/.ssh/dagster-slurm"),
        description="Where processes on this host coordinate: SSH logins, and shared Slurm status queries.",
    )
    remote_base_dir: str = Field(
        "dagster-slurm",
        description="Run folders on the cluster's shared filesystem; relative to the cluster user's home.",
    )
    python: str = Field("python3", description="Python executable on the cluster.")
    poll_interval: PositiveFloat = Field(5.0, description="Seconds between status polls.")
    journal_grace: PositiveFloat = Field(
        90.0,
        description="Seconds to keep reading an ended job's journal until its last line shows; on a "
        "shared filesystem that caches (NFS), more than its attribute and directory cache times (acdirmax).",
    )
    reconnect_timeout: PositiveFloat = Field(
        300.0, description="Seconds to keep retrying a lost SSH connection or Slurm controller."
    )
    trust_run_config: bool = Field(
        False,
        description="Let a run's run config set the executor's `setup`, `python`, `env_vars`, `connection`, "
        "`remote_base_dir` and `sbatch_options`, which run commands on the cluster as its user: anyone who "
        "may launch a run could then.",
    )
    log_format: Literal["console", "json"] = Field("console", description="Log rendering.")

    @model_validator(mode="after")
    def _ssh_needs_host(self) -> "SlurmSettings":
        if self.transport != "local" and not self.host:
            raise ValueError(
                f"{ENV_PREFIX}HOST is required with {ENV_PREFIX}TRANSPORT={self.transport} "
                f"(or set {ENV_PREFIX}TRANSPORT=local on the login node)"
            )
        if self.transport == "openssh" and not self.control_path:
            raise ValueError(
                f"{ENV_PREFIX}CONTROL_PATH is required with {ENV_PREFIX}TRANSPORT=openssh: the socket "
                "of the master connection you opened (`ssh -fNM -S <socket> <host>`)"
            )
        return self


def load_settings(**overrides: object) -> SlurmSettings:
    """Read settings from the environment, with explicit ``overrides`` taking precedence.

    Raises:
        SettingsError: naming each invalid ``DAGSTER_SLURM_*`` variable and why.
    """
    try:
        return SlurmSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            # The offending input is shown except for the password, which is never echoed.
            shown = "" if field == "password" or not field else f" (got {err.get('input')!r})"
            problems.append(f"{name}: {err['msg']}{shown}")
        raise SettingsError("invalid Slurm settings:\n  " + "\n  ".join(problems)) from None
