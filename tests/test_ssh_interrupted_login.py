"""A login node whose sshd drops a connection in the middle of a login (it is restarting).

The lab's sshd cannot be made to drop a login between the key exchange and its answer to the
key at a chosen moment (a restart hits that window by chance: CI once did), so this narrow test
uses a paramiko server that does so (once, or every time), then lets the next login in and
runs its commands.
"""

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from dagster_slurm_launcher.transport import SSHTransport, TransportError
from tests import lab


class _DropsLogins(paramiko.ServerInterface):
    def __init__(self, transport: paramiko.Transport, drop: bool) -> None:
        self._transport = transport
        self.drops = drop
        self.command: bytes | None = None
        self.ready = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if self.drops:
            self._transport.close()  # as sshd killed by its restart
            return paramiko.AUTH_FAILED
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.command = command
        self.ready.set()
        return True


def _serve(listener: socket.socket, host_key: paramiko.PKey, logins: list[str], drops: int) -> None:
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        transport = paramiko.Transport(sock)
        transport.add_server_key(host_key)
        server = _DropsLogins(transport, drop=len(logins) < drops)
        logins.append("dropped" if server.drops else "in")
        transport.start_server(server=server)
        if server.drops:
            continue
        chan = transport.accept(10)
        if chan is None or not server.ready.wait(10):
            continue
        done = subprocess.run(["bash", "-c", server.command.decode()], capture_output=True)
        chan.sendall(done.stdout)
        chan.sendall_stderr(done.stderr)
        chan.send_exit_status(done.returncode)
        chan.close()


def _login_node(tmp_path: Path, drops: int) -> Iterator[tuple[int, Path, list[str]]]:
    host_key = paramiko.ECDSAKey.generate()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    logins: list[str] = []
    thread = threading.Thread(target=_serve, args=(listener, host_key, logins, drops), daemon=True)
    thread.start()
    yield port, known_hosts, logins
    listener.close()


@pytest.fixture
def flaky_login_node(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    yield from _login_node(tmp_path, drops=1)


@pytest.fixture
def login_node_that_drops_every_login(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    yield from _login_node(tmp_path, drops=1000)


def test_a_login_the_server_drops_midway_is_tried_again_not_taken_for_a_rejected_key(
    flaky_login_node: tuple[int, Path, list[str]],
) -> None:
    port, known_hosts, logins = flaky_login_node
    transport = SSHTransport(lab.settings(host="127.0.0.1", port=port, known_hosts=known_hosts, reconnect_timeout=30))
    result = transport.run("echo back")
    transport.close()
    assert result.stdout == "back\n"
    assert logins == ["dropped", "in"]


def test_a_login_dropped_twice_in_a_row_is_a_refusal_named_at_once(
    login_node_that_drops_every_login: tuple[int, Path, list[str]],
) -> None:
    # What sshd does to a client that tries more keys than MaxAuthTries allows.
    port, known_hosts, logins = login_node_that_drops_every_login
    transport = SSHTransport(lab.settings(host="127.0.0.1", port=port, known_hosts=known_hosts, reconnect_timeout=60))
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"closed the connection during login twice.*DAGSTER_SLURM_KEY_FILE"):
        transport.run("true")
    assert logins == ["dropped", "dropped"] and time.monotonic() - started < 30
