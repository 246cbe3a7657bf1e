"""What a step worker imports on a compute node: nothing that only the Dagster host needs."""

import subprocess
import sys

HOST_ONLY = ("fabric", "invoke", "paramiko", "cryptography", "nacl", "bcrypt", "pydantic_settings", "dagster_postgres")

PROBE = """
import sys
from dagster_slurm_launcher import slurm_executor  # as a code location names it
import dagster_slurm_launcher.worker
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_a_step_worker_and_a_code_location_naming_the_executor_import_no_ssh_or_settings_stack() -> None:
    loaded = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout.split()
    assert "dagster" in loaded
    assert [name for name in HOST_ONLY if name in loaded] == []


def test_the_package_still_exports_its_public_names() -> None:
    import dagster_slurm_launcher

    for name in dagster_slurm_launcher.__all__:
        assert getattr(dagster_slurm_launcher, name) is not None
