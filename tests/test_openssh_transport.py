"""Sites with a second factor: commands run as sessions of a master connection a person opened.

The lab's second login node (DAGSTER_SLURM_LAB_SSH_MFA_PORT) asks every new login for the key
and then, keyboard-interactive, for a second factor. The "person" here logs in once with ssh and
SSH_ASKPASS; the package never logs in.
"""

import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dagster import DagsterInstance

from dagster_slurm_launcher.slurm import SlurmClient
from dagster_slurm_launcher.transport import OpenSSHTransport, SSHTransport, TransportError
from tests import lab
from tests.test_executor import run

pytestmark = pytest.mark.lab


def mfa_port() -> int:
    return int(os.environ["DAGSTER_SLURM_LAB_SSH_MFA_PORT"])


def sshd_log() -> str:
    return (lab.lab_dir() / "log" / "sshd-mfa.log").read_text()


def logins_with_second_factor() -> int:
    return sshd_log().count("Accepted keyboard-interactive")


def login_attempts() -> int:
    """Every authentication sshd saw, accepted or not."""
    return sum(sshd_log().count(word) for word in ("Accepted ", "Failed ", "authenticating user"))


def log_in_once(socket: Path) -> None:
    """What the user does by hand: key, then the second factor at the prompt (here: askpass)."""
    askpass = socket.parent / "askpass"
    askpass.write_text(f"#!/bin/sh\ncat {shlex.quote(str(lab.lab_dir() / 'client' / 'second_factor'))}\n")
    askpass.chmod(0o700)
    settings = lab.settings()
    options = ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={settings.known_hosts}"]
    target = ["-p", str(mfa_port()), "-l", lab.cluster_user(), str(settings.host)]
    subprocess.run(
        ["ssh", "-fNM", "-o", "ControlPersist=yes", "-S", str(socket), *options, "-i", str(settings.key_file), *target],
        env={**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        start_new_session=True,
        check=True,
        timeout=30,
    )


def log_out(socket: Path) -> None:
    subprocess.run(["ssh", "-S", str(socket), "-O", "exit", "x"], capture_output=True, check=False)


@pytest.fixture
def socket() -> Iterator[Path]:
    # Unix socket paths are limited to about 100 bytes: pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="cm-", dir="/tmp"))
    path = directory / "master"
    log_in_once(path)
    yield path
    log_out(path)
    shutil.rmtree(directory)


def openssh(socket: Path, **overrides: object) -> OpenSSHTransport:
    return OpenSSHTransport(lab.settings(transport="openssh", control_path=str(socket), port=mfa_port(), **overrides))


def test_a_login_that_asks_for_a_second_factor_fails_at_once_and_names_the_way_out() -> None:
    # paramiko's own answer would be to prompt on this process's stdin.
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"asks every new login for a second factor.*TRANSPORT=openssh"):
        SSHTransport(lab.settings(port=mfa_port())).run("true")
    assert time.monotonic() - started < 15


def test_commands_run_over_the_master_without_logging_in_again(socket: Path) -> None:
    before = logins_with_second_factor()
    transport = openssh(socket)
    result = transport.run("id -un; cat; echo oops >&2; exit 3", stdin=b"from stdin\n")
    assert (result.stdout, result.stderr, result.exit_code) == (f"{lab.cluster_user()}\nfrom stdin\n", "oops\n", 3)
    assert "Welcome to the lab cluster" in result.shell_noise
    assert [r.stdout for r in [transport.run(f"echo {i}") for i in range(20)]] == [f"{i}\n" for i in range(20)]
    assert logins_with_second_factor() == before


def test_commands_beyond_the_masters_sessions_wait_without_logging_in_or_running_twice(
    socket: Path, tmp_path: Path
) -> None:
    # The lab's second-factor sshd allows the master 2 sessions (MaxSessions), as many run
    # workers sharing one master meet it; OpenSSH's answer to a refused session is a login of its own.
    before = login_attempts()
    transport = openssh(socket)
    tally = f"{lab.settings().remote_base_dir}/tally-{tmp_path.name}"
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: transport.run(f"sleep 1; echo {i} >> {shlex.quote(tally)}"), range(8)))
    assert all(r.ok for r in results)
    assert sorted(transport.run(f"cat {shlex.quote(tally)}; rm {shlex.quote(tally)}").stdout.split()) == [
        str(i) for i in range(8)
    ]
    assert login_attempts() == before


def test_a_job_submitted_through_the_master_runs(socket: Path) -> None:
    client = SlurmClient(openssh(socket))
    job = client.submit("#!/bin/bash\ntrue\n", f"dagster-slurm-test-mfa-{os.getpid()}", {"output": "/dev/null"})
    lab.wait_until(lambda: client.poll([job])[job.job_id].is_terminal, timeout=60, what="the job to end")
    assert client.poll([job])[job.job_id].succeeded


def test_a_run_goes_through_the_master(
    socket: Path, code_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = logins_with_second_factor()
    monkeypatch.setenv("DAGSTER_SLURM_TRANSPORT", "openssh")
    monkeypatch.setenv("DAGSTER_SLURM_CONTROL_PATH", str(socket))
    monkeypatch.setenv("DAGSTER_SLURM_PORT", str(mfa_port()))
    result = run(code_dir, "assets_graph.py", "all_assets", instance)
    assert result.success and len(lab.settled_jobs_of_run(result.run_id, 6)) == 6
    assert logins_with_second_factor() == before


def test_without_the_master_commands_wait_then_say_to_log_in_again(socket: Path) -> None:
    log_out(socket)
    with pytest.raises(TransportError, match=r"is not open .* Log in again .*`ssh -fNM .*-S /tmp/cm-"):
        openssh(socket, reconnect_timeout=4).run("true")


def test_a_command_waits_for_the_user_to_log_in_again(socket: Path) -> None:
    log_out(socket)
    login = threading.Timer(4, log_in_once, args=(socket,))
    login.start()
    started = time.monotonic()
    try:
        assert openssh(socket, reconnect_timeout=60).run("echo back").stdout == "back\n"
    finally:
        login.cancel()
    assert time.monotonic() - started >= 4
