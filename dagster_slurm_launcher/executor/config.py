"""The slurm_executor's config schema, and how executor config and op tags become sbatch options."""

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagster import (
    Array,
    Bool,
    DagsterError,
    Field,
    Float,
    Int,
    IntSource,
    Noneable,
    Permissive,
    Shape,
    String,
    StringSource,
)

from dagster_slurm_launcher.dagster_internals import get_retries_config
from dagster_slurm_launcher.naming import ENV_PREFIX
from dagster_slurm_launcher.slurm.client import OptionValue, option_flag, owned_option, sbatch_arguments

if TYPE_CHECKING:
    from dagster_slurm_launcher.ship.shipping import ShipConfig

SBATCH_TAG = "dagster-slurm/sbatch"
"""Op/asset tag whose value (a dict of sbatch long options) overrides the executor's defaults."""
PACK_TAG = "dagster-slurm/pack"
"""Op/asset tag: ``"false"`` keeps a step out of packs (it gets a job of its own)."""

# Options the executor sets itself: a step's identity, where its files go, and what of the
# run worker's environment reaches the job (nothing: secrets stay on the Dagster host).
EXECUTOR_OWNED = ("job-name", "output", "error", "chdir", "parsable", "wrap", "export", "export-file")
# Nothing of the run worker's environment reaches a job (secrets stay on the Dagster host).
NO_EXPORT: dict[str, OptionValue] = {"export": "NONE"}
# A job that Slurm requeues runs its script again; a step is computed once (see the worker).
# Sites that want requeue on preemption set `requeue: true`.
DEFAULT_OPTIONS: dict[str, OptionValue] = {"no-requeue": True}
# Executor config keys that are sbatch options under the same name.
SBATCH_OPTION_KEYS = ("partition", "account", "qos", "time", "cpus_per_task", "mem", "gpus", "constraint", "signal")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _opt(config_type: Any, description: str) -> Field:
    return Field(Noneable(config_type), is_required=False, default_value=None, description=description)


def _with_default(config_type: Any, default: Any, description: str) -> Field:
    return Field(config_type, is_required=False, default_value=default, description=description)


CONFIG_SCHEMA = {
    "connection": Field(
        Shape(
            {
                "transport": _opt(StringSource, "`ssh`, `openssh` or `local` (default DAGSTER_SLURM_TRANSPORT)."),
                "host": _opt(StringSource, "Login node or ssh config alias (default DAGSTER_SLURM_HOST)."),
                "port": _opt(IntSource, "SSH port (default DAGSTER_SLURM_PORT)."),
                "user": _opt(StringSource, "Cluster user (default DAGSTER_SLURM_USER)."),
                "key_file": _opt(StringSource, "Private key (default DAGSTER_SLURM_KEY_FILE)."),
                "known_hosts": _opt(StringSource, "known_hosts file (default DAGSTER_SLURM_KNOWN_HOSTS)."),
                "jump_host": _opt(StringSource, "Bastion (default DAGSTER_SLURM_JUMP_HOST)."),
                "control_path": _opt(
                    StringSource, "OpenSSH master socket, transport `openssh` (default DAGSTER_SLURM_CONTROL_PATH)."
                ),
            }
        ),
        is_required=False,
        description="How to reach the login node; unset keys come from DAGSTER_SLURM_* variables. "
        "Passwords only come from DAGSTER_SLURM_PASSWORD.",
    ),
    "partition": _opt(StringSource, "sbatch --partition."),
    "account": _opt(StringSource, "sbatch --account."),
    "qos": _opt(StringSource, "sbatch --qos."),
    "time": _opt(StringSource, "sbatch --time, e.g. 00:30:00. Only running time counts, never queue time."),
    "cpus_per_task": _opt(IntSource, "sbatch --cpus-per-task."),
    "mem": _opt(StringSource, "sbatch --mem, e.g. 4G."),
    "gpus": _opt(IntSource, "sbatch --gpus."),
    "constraint": _opt(StringSource, "sbatch --constraint."),
    "signal": _opt(
        StringSource,
        "sbatch --signal, e.g. B:USR1@300: signal the step 300 s before its time limit so it can checkpoint.",
    ),
    "sbatch_options": _with_default(
        Permissive(), {}, "Other sbatch long options, passed as given: {'exclusive': True, 'reservation': 'r1'}."
    ),
    "setup": _with_default([String], [], "Shell lines run before the step, e.g. 'module load python/3.11'."),
    "python": _opt(StringSource, "Python executable on the cluster (default DAGSTER_SLURM_PYTHON)."),
    "remote_base_dir": _opt(
        StringSource, "Run folders on the shared filesystem (default DAGSTER_SLURM_REMOTE_BASE_DIR)."
    ),
    "env_vars": _with_default(
        Array(String), [], "Environment for the step: 'NAME' copies the run worker's value, 'NAME=value' sets one."
    ),
    "max_concurrent": _opt(Int, "Most steps in Slurm at once for one run (default: no limit)."),
    "poll_interval": _opt(
        Float, "Seconds between polls of Slurm and the journals (default DAGSTER_SLURM_POLL_INTERVAL)."
    ),
    "journal_grace": _opt(
        Float,
        "Seconds to keep reading an ended job's journal for its last lines (default DAGSTER_SLURM_JOURNAL_GRACE).",
    ),
    "debug_mode": _with_default(Bool, False, "Keep run folders of successful runs."),
    "pack": Field(
        Noneable(
            Shape(
                {
                    "max_steps": _with_default(Int, 100, "Most steps in one pack."),
                    "cpus": _with_default(
                        Int, 2, "CPUs of a pack's allocation; it runs this many over cpus_per_task steps at once."
                    ),
                    "time": _opt(
                        StringSource,
                        "sbatch --time of a pack's allocation (default: the steps' `time` times the rounds they "
                        "run in). Steps it has not started by then are submitted again.",
                    ),
                }
            )
        ),
        is_required=False,
        default_value=None,
        description="Run steps that are ready together and share sbatch options in one allocation (a pack), "
        "each in a process forked from one that loaded Dagster and the code once. Each step's memory is the "
        "steps' `mem`; a step tagged dagster-slurm/pack: 'false' gets a job of its own. `{}` for the defaults.",
    ),
    "retries": get_retries_config(),
    "ship": Field(
        Shape(
            {
                "code": Field(
                    Noneable(
                        Shape(
                            {
                                "root": _opt(
                                    StringSource, "Folder to ship (default: the code location's working directory)."
                                ),
                                "include": _with_default(
                                    [String],
                                    ["*"],
                                    "Files to ship: names ('*.py') or paths from the root ('data/*.csv').",
                                ),
                                "exclude": _with_default(
                                    [String],
                                    [],
                                    "More files and folders not to ship; hidden ones (.git, .venv, .env), caches "
                                    "and virtualenvs are never shipped.",
                                ),
                            }
                        )
                    ),
                    is_required=False,
                    default_value=None,
                    description="Upload the code location to <remote_base_dir>/code/<hash>/ and run steps from "
                    "there; `{}` for the defaults.",
                ),
                "environment": _with_default(
                    String,
                    "python",
                    "`python`: the interpreter `python` names, with this package and the code's dependencies; "
                    "`build`: a virtualenv built on the login node from the site's package index, with this "
                    "host's versions; `wheels`: the same from wheels this host downloads (no index on the cluster).",
                ),
                "installer": _with_default(
                    String, "pip", "`pip` or `uv` (on the login node's PATH) for `build`/`wheels`."
                ),
                "requirements": _with_default(
                    [String],
                    [],
                    "Requirements beyond this package and the code location's pyproject.toml dependencies.",
                ),
            }
        ),
        is_required=False,
        description="Ship the code location and its Python environment to the cluster (a Dagster host that shares "
        "no filesystem with it, as a laptop).",
    ),
}


class SlurmConfigError(DagsterError, ValueError):
    """Executor config or an op's tag is invalid; nothing was submitted.

    A ``DagsterError``: raised while the executor is created, Dagster records it as the run's
    initialization failure (``orchestration_context_event_generator``) instead of crashing.
    """


@dataclass(frozen=True)
class SbatchOptions:
    """The sbatch options of the executor config, before any op's tag."""

    options: Mapping[str, OptionValue]

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> "SbatchOptions":
        options: dict[str, OptionValue] = {k: config[k] for k in SBATCH_OPTION_KEYS if config.get(k) is not None}
        options.update(config.get("sbatch_options") or {})
        return SbatchOptions(_checked(options, "executor config sbatch options"))

    def for_step(self, step_key: str, tags: Mapping[str, str]) -> dict[str, OptionValue]:
        """The executor's options overridden by the step's ``dagster-slurm/sbatch`` tag."""
        merged = {**DEFAULT_OPTIONS, **_normalized(self.options)}
        if SBATCH_TAG in tags:
            merged.update(_normalized(parse_sbatch_tag(step_key, tags[SBATCH_TAG])))
        return merged


@dataclass(frozen=True)
class PackConfig:
    """How steps are packed (the executor config's ``pack`` block)."""

    max_steps: int
    cpus: int
    time: str | None

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> "PackConfig | None":
        pack = config.get("pack")
        if pack is None:
            return None
        if pack["max_steps"] < 1 or pack["cpus"] < 1:
            raise SlurmConfigError(
                f"pack.max_steps and pack.cpus must be at least 1; got {pack['max_steps']} and {pack['cpus']}"
            )
        if pack.get("time") is not None:
            try:
                time_seconds(pack["time"])
            except SlurmConfigError:
                raise SlurmConfigError(
                    f"pack.time is {pack['time']!r}; it must be a time such as 30, 1:30:00 or 2-00:00:00"
                ) from None
        return PackConfig(pack["max_steps"], pack["cpus"], pack.get("time"))


def packable(step_key: str, tags: Mapping[str, str]) -> bool:
    """Whether a step may run in a pack (its ``dagster-slurm/pack`` tag is not ``false``)."""
    value = tags.get(PACK_TAG, "true").strip().lower()
    if value not in ("true", "false"):
        raise SlurmConfigError(f"tag {PACK_TAG!r} of step {step_key!r} must be 'true' or 'false'; got {value!r}")
    return value == "true"


# Steps that use more than their share of one node's CPUs and memory get a job of their own:
# a GPU is not shared out among a pack's steps, and srun inside a step would take the pack's.
_OWN_JOB_OPTIONS = re.compile(r"gpus.*|gres|ntasks.*|nodes|gpu.*")


def needs_own_job(options: Mapping[str, OptionValue]) -> bool:
    """Whether a step's sbatch options keep it out of packs (GPUs, tasks, nodes)."""
    return any(_OWN_JOB_OPTIONS.fullmatch(key) and value not in (None, False) for key, value in options.items())


def time_seconds(value: OptionValue) -> int | None:
    """sbatch's ``--time`` in seconds (``30``, ``1:30:00``, ``2-12``, ...); ``None`` if unset."""
    if value is None or value is False:
        return None
    match = _TIME.fullmatch(str(value).strip())
    if not match:
        raise SlurmConfigError(
            f"sbatch option time is {value!r}; packed steps need a time such as 30, 1:30:00 or 2-00:00:00"
        )
    days, *fields = match.groups()
    numbers = [int(f) for f in fields if f is not None]
    if days is not None:  # days-hours[:minutes[:seconds]]
        hours, minutes, seconds = [*numbers, 0, 0][:3]
    else:  # minutes, minutes:seconds or hours:minutes:seconds
        hours, minutes, seconds = {1: (0, numbers[0], 0), 2: (0, *numbers), 3: tuple(numbers)}[len(numbers)]
    return (((int(days or 0) * 24) + hours) * 60 + minutes) * 60 + seconds


def format_time(seconds: int) -> str:
    """``seconds`` as sbatch's ``days-hours:minutes:seconds``."""
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    return f"{days}-{hrs:02d}:{mins:02d}:{secs:02d}"


_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_MEMORY = re.compile(r"(\d+)([KMGT]?)B?", re.IGNORECASE)


def memory_bytes(value: OptionValue) -> int | None:
    """sbatch's ``--mem`` value in bytes (a number is MiB, as sbatch reads it); ``None`` if unset."""
    if value is None or value is False:
        return None
    match = _MEMORY.fullmatch(str(value).strip())
    if not match:
        raise SlurmConfigError(f"sbatch option mem is {value!r}; packed steps need a size such as 4G or 500M")
    number, unit = int(match[1]), (match[2] or "M").upper()
    return number * 1024 ** "KMGT".index(unit) * 1024


def parse_sbatch_tag(step_key: str, raw: str) -> dict[str, OptionValue]:
    where = f"tag {SBATCH_TAG!r} of step {step_key!r}"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise SlurmConfigError(f"{where} is not a dict of sbatch options: {raw!r}") from None
    if not isinstance(value, dict):
        raise SlurmConfigError(f"{where} must be a dict of sbatch options, e.g. {{'mem': '8G'}}; got {raw!r}")
    return _checked(value, where)


def _normalized(options: Mapping[str, OptionValue]) -> dict[str, OptionValue]:
    return {option_flag(key): value for key, value in options.items()}


def _checked(options: Mapping[str, Any], where: str) -> dict[str, OptionValue]:
    for key, value in options.items():
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            raise SlurmConfigError(f"{where}: sbatch option {key!r} must be a string, number or boolean; got {value!r}")
        owned = owned_option(key, EXECUTOR_OWNED)
        if owned:
            what = "" if option_flag(key) == owned else f" (sbatch reads it as --{owned})"
            raise SlurmConfigError(
                f"{where}: sbatch option {key!r}{what} is set by the executor (job names identify steps; output "
                "goes to the step's folder; the job's environment is the cluster user's plus env_vars); remove it"
            )
    try:
        sbatch_arguments(options)
    except ValueError as exc:
        raise SlurmConfigError(f"{where}: {exc}") from None
    return dict(options)


# Executor config that runs commands on the cluster as its user: shell lines, an executable, the
# run worker's environment, another host to connect to, a run folder whose files the step
# sources and unpickles, any sbatch option (containers, burst-buffer scripts), code to upload and
# packages to install.
SHELL_KEYS = ("setup", "python", "env_vars", "connection", "remote_base_dir", "sbatch_options", "ship")


def refuse_shell_from_run_config(config: Mapping[str, Any], trusted: bool) -> None:
    """Refuse a run whose run config sets :data:`SHELL_KEYS` unless the deployment trusts it.

    Called for the unconfigured ``slurm_executor``, whose whole config comes from the run's
    run config: whoever may launch a run must not thereby get a shell on the cluster, or the
    run worker's environment (database passwords) through ``env_vars``.
    """
    keys = [k for k in SHELL_KEYS if k != "ship" and config.get(k) and any(v is not None for v in _values(config[k]))]
    if ship_config(config) is not None:  # its defaults are filled in: only a block that ships counts
        keys.append("ship")
    if keys and not trusted:
        raise SlurmConfigError(
            f"the run's run config sets executor config {', '.join(repr(k) for k in keys)}, which would run "
            "commands on the cluster as its user; nothing was submitted. Set these where the deployment "
            "controls them: the SlurmRunLauncher's `executor` block in dagster.yaml, or "
            "`slurm_executor.configured({...})` in code. To let run config set them, set "
            f"{ENV_PREFIX}TRUST_RUN_CONFIG=true in the environment of the process that runs the run."
        )


def _values(value: Any) -> list[Any]:
    return list(value.values()) if isinstance(value, Mapping) else [value]


def step_environment(env_vars: list[str], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Resolve ``env_vars`` config entries: ``NAME`` (from ``environ``) or ``NAME=value``."""
    resolved = {}
    for item in env_vars:
        name, sep, value = item.partition("=")
        if not _ENV_NAME.fullmatch(name):
            raise SlurmConfigError(f"env_vars entry {item!r}: {name!r} is not an environment variable name")
        if not sep:
            if name not in environ:
                raise SlurmConfigError(f"env_vars entry {name!r} is not set in the run worker's environment")
            value = environ[name]
        resolved[name] = value
    return resolved


def ship_config(config: Mapping[str, Any]) -> "ShipConfig | None":
    """The executor config's ``ship`` block; ``None`` when nothing is shipped."""
    # Here, not at the top: code locations import this module on compute nodes too (see
    # executor.definition), which need nothing of shipping.
    from dagster_slurm_launcher.ship.environment import INSTALLERS, MODES
    from dagster_slurm_launcher.ship.shipping import ShipConfig

    ship = config.get("ship") or {}
    if ship.get("code") is None and ship.get("environment", "python") == "python":
        return None
    if ship["environment"] not in MODES:
        raise SlurmConfigError(f"ship.environment is {ship['environment']!r}; it must be one of {', '.join(MODES)}")
    if ship["installer"] not in INSTALLERS:
        raise SlurmConfigError(f"ship.installer is {ship['installer']!r}; it must be one of {', '.join(INSTALLERS)}")
    return ShipConfig.from_config(ship)
