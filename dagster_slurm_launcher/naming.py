"""Deterministic Slurm job names and step folders, and the prefix of the package's settings.

A job name is derived from the root run id and the step key, so that any later run in the
same lineage (a resumed run, a retry, a re-execution) can find a step's job again by name.
Step keys can be long and contain ``[``, ``]``, ``.`` or quotes, so they are hashed; the full
identity is kept in the step folder's ``meta.json``.
"""

import hashlib

JOB_NAME_PREFIX = "dagster"
PACK_PREFIX = "pack."
CLAIMS_DIR = "claims"
# Of every environment variable the package reads (see settings.SlurmSettings).
ENV_PREFIX = "DAGSTER_SLURM_"


def step_hash(step_key: str) -> str:
    return hashlib.sha256(step_key.encode()).hexdigest()[:16]


def job_name(root_run_id: str, step_key: str) -> str:
    """``dagster-<root run id>-<16 hex digits of the step key's sha256>`` (61 ASCII bytes)."""
    return f"{JOB_NAME_PREFIX}-{root_run_id}-{step_hash(step_key)}"


def root_of_job_name(name: str) -> str:
    """The root run id in a name :func:`job_name` made (garbage for other names: compare it)."""
    return name[len(JOB_NAME_PREFIX) + 1 : -17]


def lineage_folder(remote_base_dir: str, root_run_id: str) -> str:
    """The folder of a root run and all its retries and re-executions."""
    return f"{remote_base_dir}/runs/{root_run_id}"


def claims_folder(remote_base_dir: str, root_run_id: str) -> str:
    """Under the root run's folder: the id of each step's last submitted job (see slurm.Claim)."""
    return f"{lineage_folder(remote_base_dir, root_run_id)}/{CLAIMS_DIR}"


def run_folder(remote_base_dir: str, root_run_id: str, run_id: str) -> str:
    return f"{lineage_folder(remote_base_dir, root_run_id)}/{run_id}"


def step_folder(remote_base_dir: str, root_run_id: str, run_id: str, step_key: str, attempt: int, nonce: str) -> str:
    """One folder per submission: a retried or resubmitted step gets a fresh one. A job's folder
    is its working directory, so a later run finds it from the job itself."""
    return f"{run_folder(remote_base_dir, root_run_id, run_id)}/{step_hash(step_key)}.{attempt}.{nonce}"


def pack_folder(remote_base_dir: str, root_run_id: str, run_id: str, nonce: str) -> str:
    """The folder of a pack (one job that runs many steps); its steps' folders are inside."""
    return f"{run_folder(remote_base_dir, root_run_id, run_id)}/{PACK_PREFIX}{nonce}"


def packed_step_folder(pack: str, step_key: str, attempt: int) -> str:
    return f"{pack}/{step_hash(step_key)}.{attempt}"


def pack_job_name(root_run_id: str, pack: str) -> str:
    """A pack's job name, from its folder: a later run finds the pack from a step's claim."""
    return job_name(root_run_id, pack.rsplit("/", 1)[-1])


def is_packed_step_folder(folder: str) -> bool:
    return folder.rsplit("/", 2)[-2].startswith(PACK_PREFIX)


def run_id_of_step_folder(folder: str) -> str:
    """The run that a :func:`step_folder` or :func:`packed_step_folder` belongs to."""
    parts = folder.rsplit("/", 3)
    return parts[-3] if parts[-2].startswith(PACK_PREFIX) else parts[-2]
