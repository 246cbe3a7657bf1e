"""The SSH transport against the lab's real sshd, logging in as the unprivileged cluster user."""

import hashlib
import os
import pwd
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dagster_slurm_launcher.transport import SSHTransport, TransportError
from tests import lab


@pytest.fixture
def ssh() -> SSHTransport:
    transport = SSHTransport(lab.settings())
    yield transport
    transport.close()


def test_commands_run_as_the_cluster_user(ssh: SSHTransport) -> None:
    result = ssh.run("id -un; echo oops >&2; exit 3")
    assert (result.stdout, result.stderr, result.exit_code) == (
        f"{os.environ['DAGSTER_SLURM_LAB_USER']}\n",
        "oops\n",
        3,
    )


def test_stdin_arrives_byte_for_byte(ssh: SSHTransport) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value, larger than a channel window
    assert ssh.run("sha256sum", stdin=data).stdout.split()[0] == hashlib.sha256(data).hexdigest()


def test_a_command_that_ignores_its_input_does_not_break_the_connection(ssh: SSHTransport) -> None:
    # As sbatch does when it rejects an option before reading the script.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: ssh.run("exit 3", stdin=b"x" * 4_000_000), range(8)))
    assert [r.exit_code for r in results] == [3] * 8
    assert ssh.run("echo still here").stdout == "still here\n" and ssh.connections_opened == 1


def test_many_commands_from_many_threads_share_one_login(ssh: SSHTransport) -> None:
    before = lab.sshd_logins()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: ssh.run(f"echo {i}"), range(200)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(200)]
    assert ssh.connections_opened == 1
    assert lab.sshd_logins() - before == 1


def test_concurrent_commands_beyond_max_sessions_queue_instead_of_failing(ssh: SSHTransport) -> None:
    # sshd allows 10 sessions per connection; 30 slow commands at once must all succeed.
    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(lambda i: ssh.run(f"sleep 1; echo {i}"), range(30)))
    assert all(r.ok for r in results) and ssh.connections_opened == 1


def test_an_unknown_host_key_is_refused_before_logging_in(tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    before = lab.sshd_logins()
    transport = SSHTransport(lab.settings(known_hosts=empty))
    with pytest.raises(TransportError, match=r"not in .*known_hosts; nothing was sent.*ssh-keyscan -p"):
        transport.run("true")
    assert lab.sshd_logins() == before and transport.connections_opened == 0


def test_a_changed_host_key_is_refused(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    s = lab.settings()
    other = (tmp_path / "other.pub").read_text().split()[:2]
    (tmp_path / "known_hosts").write_text(f"[{s.host}]:{s.port} {' '.join(other)}\n")
    before = lab.sshd_logins()
    with pytest.raises(TransportError, match=r"does not match .*ssh-keygen -R"):
        SSHTransport(lab.settings(known_hosts=tmp_path / "known_hosts")).run("true")
    assert lab.sshd_logins() == before


def test_a_missing_known_hosts_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match=r"DAGSTER_SLURM_KNOWN_HOSTS=.*does not exist"):
        SSHTransport(lab.settings(known_hosts=tmp_path / "nope")).run("true")


def test_a_rejected_key_says_what_to_check(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    with pytest.raises(TransportError, match=r"authentication to .* failed.*DAGSTER_SLURM_KEY_FILE"):
        SSHTransport(lab.settings(key_file=tmp_path / "stranger")).run("true")


def test_the_connection_comes_back_after_sshd_restarts(ssh: SSHTransport) -> None:
    assert ssh.run("true").ok
    # sshd is down for 3 s and every established session is dropped, as in a login node reboot.
    restarting = lab.restart_in_background("sshd", down_for=3)
    result = ssh.run("echo back")
    restarting.join()
    assert result.stdout == "back\n"
    assert ssh.connections_opened == 2


def test_an_unreachable_host_fails_after_the_reconnect_timeout() -> None:
    transport = SSHTransport(lab.settings(port=1, reconnect_timeout=3))  # nothing listens on port 1
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"could not connect .*gave up after retrying"):
        transport.run("true")
    assert time.monotonic() - started < 20


def test_a_host_alias_from_ssh_config_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = lab.settings()
    (tmp_path / ".ssh").mkdir(mode=0o700)
    (tmp_path / ".ssh/config").write_text(
        f"Host lab-login\n  HostName {s.host}\n  Port {s.port}\n  User {s.user}\n  IdentityFile {s.key_file}\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    transport = SSHTransport(lab.settings(host="lab-login", port=None, user=None, key_file=None))
    assert transport.run("id -un").stdout == f"{s.user}\n"


def test_a_jump_host_is_verified_and_used(tmp_path: Path) -> None:
    s = lab.settings()
    before = lab.sshd_logins()
    # The lab's sshd is its own bastion: one login to the jump host, one through it.
    transport = SSHTransport(lab.settings(jump_host=f"{s.user}@{s.host}:{s.port}"))
    assert transport.run("echo via jump").stdout == "via jump\n"
    assert lab.sshd_logins() - before == 2
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(TransportError, match=r"not in .*known_hosts"):
        SSHTransport(lab.settings(jump_host=f"{s.user}@{s.host}:{s.port}", known_hosts=empty)).run("true")


def sshd_drops() -> int:
    return (lab.lab_dir() / "log/sshd.log").read_text().count("past MaxStartups")


def test_a_burst_of_logins_from_many_hosts_is_retried_past_max_startups(tmp_path: Path) -> None:
    # 40 workers on 40 different hosts (separate login locks) connect at once; sshd's default
    # MaxStartups (10:30:100) drops some at random before they authenticate, and they come back
    # later. A burst in which sshd happened to drop none proves nothing: burst again (bounded).
    drops = sshd_drops()
    for burst in range(5):
        transports = [SSHTransport(lab.settings(ssh_control_dir=tmp_path / f"{burst}-host{i}")) for i in range(40)]
        with ThreadPoolExecutor(max_workers=40) as pool:
            results = list(pool.map(lambda t: t.run("echo ok").stdout, transports))
        assert results == ["ok\n"] * 40
        assert sum(t.connections_opened for t in transports) == 40
        for t in transports:
            t.close()
        if sshd_drops() > drops:
            break
    assert sshd_drops() > drops, "sshd dropped no login in 5 bursts of 40: the test showed no retry"


def test_workers_on_one_host_take_turns_logging_in(tmp_path: Path) -> None:
    transports = [SSHTransport(lab.settings(ssh_control_dir=tmp_path)) for _ in range(40)]
    drops = sshd_drops()
    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(lambda t: t.run("echo ok").stdout, transports))
    assert results == ["ok\n"] * 40
    assert sshd_drops() == drops


def test_the_cluster_users_noisy_start_up_files_never_reach_a_commands_output(ssh: SSHTransport) -> None:
    # The lab's ~/.bashrc prints a banner on stdout and a module warning on stderr, as sites' do.
    result = ssh.run('printf %s "$HOME"')
    assert result.stdout == pwd.getpwnam(lab.cluster_user()).pw_dir and result.stderr == ""
    assert "Welcome to the lab cluster" in result.shell_noise and "module: warning" in result.shell_noise
