"""Short-lived OpenSSH user certificates, as sites issue them, against the lab's certificate authority."""

import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_public_identity

from dagster_slurm_launcher.transport import SSHTransport, TransportError
from tests import lab

pytestmark = pytest.mark.lab


def key_with_certificate(directory: Path, validity: str) -> Path:
    """A key the cluster user's authorized_keys does not hold, and a certificate for it from the
    lab's CA (``validity`` as ``ssh-keygen -V`` takes it, as "-1m:+20s")."""
    key = directory / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sign(key, validity)
    return key


def sign(key: Path, validity: str) -> None:
    ca = lab.lab_dir() / "ssh" / "user_ca"
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "lab-test", "-n", lab.cluster_user(), "-V", validity, f"{key}.pub"],
        check=True,
    )


def test_an_open_connection_keeps_working_after_its_certificate_expires(tmp_path: Path) -> None:
    key = key_with_certificate(tmp_path, "-1m:+20s")
    transport = SSHTransport(lab.settings(key_file=key))
    assert transport.run("true").ok
    expiry = load_ssh_public_identity(Path(f"{key}-cert.pub").read_bytes()).valid_before
    time.sleep(max(0.0, expiry + 1 - time.time()))
    assert transport.run("echo still here").stdout == "still here\n"
    assert transport.connections_opened == 1


def test_a_login_with_an_expired_certificate_says_it_expired_and_when(tmp_path: Path) -> None:
    key = key_with_certificate(tmp_path, "-10m:-5m")
    with pytest.raises(TransportError, match=r"certificate .*id_ed25519-cert.pub expired at \d{4}-\d\d-\d\d .* UTC"):
        SSHTransport(lab.settings(key_file=key, reconnect_timeout=3)).run("true")


def test_a_login_waits_for_a_renewed_certificate_within_the_reconnect_timeout(tmp_path: Path) -> None:
    key = key_with_certificate(tmp_path, "-10m:-5m")
    renewal = threading.Timer(5, sign, args=(key, "-1m:+10m"))
    renewal.start()
    started = time.monotonic()
    try:
        result = SSHTransport(lab.settings(key_file=key, reconnect_timeout=60)).run("echo in")
    finally:
        renewal.cancel()
    assert result.stdout == "in\n" and time.monotonic() - started >= 5
