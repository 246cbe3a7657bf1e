import os
import pwd
import shlex
import uuid
from collections.abc import Iterator

import pytest

from dagster_slurm_launcher.slurm import SlurmClient
from dagster_slurm_launcher.transport import LocalTransport, SSHTransport, Transport

from tests import lab


def _running_as_cluster_user() -> bool:
    return pwd.getpwuid(os.getuid()).pw_name == os.environ.get("DAGSTER_SLURM_LAB_USER")


@pytest.fixture(params=["ssh", pytest.param("local", marks=pytest.mark.local)])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    """Each client test runs over SSH (as the cluster user) and locally (as that user, on the node)."""
    if request.param == "local":
        if not _running_as_cluster_user():
            pytest.skip("local transport tests run as the cluster user: deploy/lab/test runs them so")
        yield LocalTransport()
        return
    t = SSHTransport(lab.settings())
    yield t
    t.close()


@pytest.fixture
def recorder(transport: Transport) -> lab.RecordingTransport:
    return lab.RecordingTransport(transport)


@pytest.fixture
def client(recorder: lab.RecordingTransport) -> SlurmClient:
    return SlurmClient(recorder, retry_timeout=120)


@pytest.fixture
def remote_dir(transport: Transport) -> Iterator[str]:
    """A fresh private folder on the cluster for one test's job output."""
    path = f"{lab.settings().remote_base_dir}/tests/{uuid.uuid4().hex[:12]}"
    transport.run(f"umask 077 && mkdir -p {shlex.quote(path)}")
    yield path
    transport.run(f"rm -rf {shlex.quote(path)}")
