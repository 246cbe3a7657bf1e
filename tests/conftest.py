import os
import pwd
import shlex
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test

from dagster_slurm_launcher.slurm import SlurmClient
from dagster_slurm_launcher.transport import LocalTransport, SSHTransport, Transport
from tests import lab
from tests.deployment import deploy  # noqa: F401  # the fixture, for test_deployment and test_ui

# The lab's login node caches directory entries for 10 s (deploy/lab/daemons.sh), so a journal's
# last lines show within 30 s; the default 90 s (for NFS's 60 s) would add a minute to every test
# whose job dies without its END line. The test of NFS's caching sets the default back.
os.environ.setdefault("DAGSTER_SLURM_JOURNAL_GRACE", "30")


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


JOBS = Path(__file__).parent / "jobs"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A throwaway SQLite instance for runs executed in the test's own process: what these tests
    check does not depend on the storage. Deployments (daemon, run workers, webserver) run on
    the lab's PostgreSQL: see tests/deployment.py."""
    home = tmp_path / "dagster_home"
    home.mkdir(mode=0o700)
    with instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture
def code_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The test jobs as a code location on the shared filesystem, the working directory."""
    path = lab.shared_dir() / "code" / uuid.uuid4().hex[:12]
    shutil.copytree(JOBS, path)
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    monkeypatch.chdir(path)
    yield path
    shutil.rmtree(path)
