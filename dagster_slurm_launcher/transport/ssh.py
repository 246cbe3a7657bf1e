"""Run Slurm's commands on a login node over one reused SSH connection.

``fabric`` resolves the connection (``~/.ssh/config`` Host aliases, ProxyJump, IdentityFile);
commands then run on channels of that one paramiko transport. Login nodes throttle and block
accounts that open many connections, so a process opens one and keeps it.
"""

import fcntl
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
from fabric import Config, Connection
from paramiko.ssh_exception import NoValidConnectionsError

from dagster_slurm_launcher.logs import get_logger
from dagster_slurm_launcher.retry import RetryDeadlineExceeded, backoff
from dagster_slurm_launcher.settings import ENV_PREFIX, SlurmSettings
from dagster_slurm_launcher.transport.base import CommandInterrupted, CommandResult, Transport, TransportError
from dagster_slurm_launcher.transport.certificates import CertificateInvalid, invalid_certificate
from dagster_slurm_launcher.transport.framing import Framed, frame, framed_result

log = get_logger(__name__)

# sshd's default MaxSessions is 10 channels per connection, and sshd counts a channel until it
# has processed its close: stay below it rather than at it.
MAX_CHANNELS = 8
CONNECT_TIMEOUT = 15
KEEPALIVE_SECONDS = 15
# Errors that mean "try again later": sshd down or restarting, or dropping the connection
# under MaxStartups (many run workers logging in at once), or a broken network path.
_TRANSIENT = (NoValidConnectionsError, socket.timeout, ConnectionError, EOFError, OSError)
_CLOSED_DURING_LOGIN = "transport shut down or saw EOF"


def _dropped_during_login(exc: Exception) -> bool:
    """Whether the login node closed the connection during authentication: paramiko reports
    that as an ``AuthenticationException`` too (``AuthHandler.wait_for_response``, "transport
    shut down or saw EOF"), as when sshd restarts between accepting the connection and
    answering the key."""
    return isinstance(exc, paramiko.AuthenticationException) and _CLOSED_DURING_LOGIN in str(exc)


def _refused(exc: Exception) -> bool:
    """Whether the login node refused this login, which trying again cannot change."""
    if isinstance(exc, paramiko.AuthenticationException):
        return not _dropped_during_login(exc)
    return isinstance(exc, paramiko.BadHostKeyException) or "not found in known_hosts" in str(exc)


class SecondFactorRequired(paramiko.AuthenticationException):
    """The login node asked for more than the key (a one-time password, a push)."""


class _UnattendedTransport(paramiko.Transport):
    """Never prompts: paramiko answers a keyboard-interactive request after the key by printing
    the prompt and reading this process's stdin (``SSHClient._auth``), which in a run worker is
    nobody, or a terminal that is not the user's."""

    def auth_interactive_dumb(self, username: str, handler: object = None, submethods: str = "") -> list[str]:
        raise SecondFactorRequired("the login node asks for a second factor after the key")


class SSHTransport(Transport):
    """Runs commands on ``settings.host`` over SSH, reconnecting with jittered backoff.

    The host key is always verified against known_hosts; an unknown or changed key is an error.
    """

    def __init__(self, settings: SlurmSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._channels = threading.BoundedSemaphore(MAX_CHANNELS)
        self._conn: Connection | None = None
        self._pid = os.getpid()
        self.connections_opened = 0
        """How many SSH logins this transport made (tests and benchmarks count them)."""

    @property
    def _target(self) -> str:
        s = self._settings
        return f"{s.user + '@' if s.user else ''}{s.host}{':' + str(s.port) if s.port else ''}"

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 600.0) -> CommandResult:
        deadline = time.monotonic() + self._settings.reconnect_timeout
        framed = frame(_without_eof(command, stdin))
        with self._channels:
            chan = self._start(framed.command, deadline)
            try:
                return self._finish(chan, command, framed, stdin, timeout)
            finally:
                chan.close()

    def sessions_allowed(self, upto: int) -> int:
        """How many commands sshd lets this connection run at once (its MaxSessions), up to ``upto``."""
        transport = self._transport(time.monotonic() + self._settings.reconnect_timeout)
        opened: list[paramiko.Channel] = []
        try:
            while len(opened) < upto:
                opened.append(transport.open_session(timeout=CONNECT_TIMEOUT))
        except paramiko.ChannelException:
            pass
        finally:
            for chan in opened:
                chan.close()
        return len(opened)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _start(self, command: str, deadline: float) -> paramiko.Channel:
        """Open a channel and start ``command``; retried until ``deadline``, as nothing ran yet."""
        attempt = 0
        while True:
            transport = self._transport(deadline)
            try:
                chan = transport.open_session(timeout=CONNECT_TIMEOUT)
                chan.exec_command(command)
                return chan
            except paramiko.ChannelException as exc:
                # "no more sessions": sshd frees a session slot only once it has reaped the
                # command's process, so it may refuse a channel for a moment even below
                # MaxSessions. The connection is fine, and other commands run on it: wait briefly.
                if time.monotonic() > deadline:
                    raise TransportError(f"{self._target} kept refusing new sessions: {exc}") from exc
                time.sleep(random.uniform(0.05, 0.25))
            except (paramiko.SSHException, *_TRANSIENT) as exc:
                if not transport.is_active():
                    self._discard(transport)
                _backoff(attempt, deadline, f"could not start a command on {self._target}", exc)
                attempt += 1

    def _finish(
        self, chan: paramiko.Channel, command: str, framed: Framed, stdin: bytes | None, timeout: float
    ) -> CommandResult:
        chan.settimeout(timeout)
        stderr: list[bytes] = []
        # stderr is drained beside stdout: an unread stream would stall the shared window.
        reader = threading.Thread(target=lambda: stderr.append(_drain(chan.recv_stderr)), daemon=True)
        try:
            reader.start()
            if stdin:
                chan.sendall(stdin)
            stdout = _drain(chan.recv)
            reader.join()
            status = chan.recv_exit_status()
        except TimeoutError as exc:
            raise CommandInterrupted(
                f"no answer from {self._target} within {timeout:.0f}s; the command may still run: {command}"
            ) from exc
        except (paramiko.SSHException, *_TRANSIENT) as exc:
            raise CommandInterrupted(
                f"connection to {self._target} broke while a command ran ({exc}): {command}"
            ) from exc
        if status == -1:
            raise CommandInterrupted(f"connection to {self._target} closed before the command ended: {command}")
        return framed_result(framed, command, status, stdout, b"".join(stderr))

    def _transport(self, deadline: float) -> paramiko.Transport:
        with self._lock:
            if self._pid != os.getpid():
                # A forked child must not share its parent's connection and its reader thread.
                self._conn, self._pid = None, os.getpid()
            if self._conn is not None and self._conn.transport is not None and self._conn.transport.is_active():
                return self._conn.transport
            attempt = 0
            dropped_before = False
            while True:
                try:
                    self._conn = self._connect()
                    assert self._conn.transport is not None
                    return self._conn.transport
                except CertificateInvalid as exc:
                    # Renewed on disk by the user or the site's agent: the next login uses it.
                    _backoff(
                        attempt,
                        deadline,
                        f"could not log in to {self._target}",
                        exc,
                        waiting_for="a renewed certificate",
                    )
                    attempt += 1
                except (paramiko.SSHException, *_TRANSIENT) as exc:
                    dropped = _dropped_during_login(exc)
                    if dropped and dropped_before:
                        # sshd's answer to more keys than its MaxAuthTries, not a restart.
                        raise TransportError(
                            f"{self._target} closed the connection during login twice in a row, as sshd does when "
                            "offered more keys than its MaxAuthTries (an ssh-agent with many keys, say): set "
                            f"{ENV_PREFIX}KEY_FILE to the one key for this cluster, and check {ENV_PREFIX}USER"
                        ) from None
                    if _refused(exc):
                        raise self._permanent_error(exc) from None
                    dropped_before = dropped
                    _backoff(attempt, deadline, f"could not connect to {self._target}", exc)
                    attempt += 1

    def _discard(self, transport: paramiko.Transport) -> None:
        with self._lock:
            if self._conn is not None and self._conn.transport is transport:
                self._conn.close()
                self._conn = None

    def _connect(self) -> Connection:
        s = self._settings
        config = Config()  # loads ~/.ssh/config: Host aliases, ProxyJump, IdentityFile, Port, User
        connect_kwargs: dict[str, object] = {"transport_factory": _UnattendedTransport}
        if s.key_file:
            connect_kwargs["key_filename"] = str(s.key_file.expanduser())
        if s.password:
            # With a key, the secret is its passphrase: given as a password, paramiko would send
            # it to the login node as the account's password, also to answer a second factor.
            connect_kwargs["passphrase" if s.key_file else "password"] = s.password.get_secret_value()
        gateway = (
            Connection(s.jump_host, config=config, connect_timeout=CONNECT_TIMEOUT, connect_kwargs=connect_kwargs)
            if s.jump_host
            else None
        )
        conn = Connection(
            s.host,  # type: ignore[arg-type]  # validated: ssh transport requires a host
            user=s.user,
            port=s.port,
            config=config,
            gateway=gateway,
            connect_timeout=CONNECT_TIMEOUT,
            connect_kwargs=connect_kwargs,
        )
        hop: object = conn
        while isinstance(hop, Connection):  # the target and every jump host
            self._pin_host_keys(hop.client)
            hop = hop.gateway
        with self._login_gate(conn):
            try:
                conn.open()
            except BaseException as exc:
                # A refused login leaves its TCP connection open (paramiko and fabric keep it),
                # which sshd counts against MaxStartups until LoginGraceTime: close it.
                hop = conn
                while isinstance(hop, Connection):
                    hop.client.close()
                    hop = hop.gateway
                if isinstance(exc, paramiko.AuthenticationException | ValueError):
                    self._certificate_problem(conn, exc)
                raise
        assert conn.transport is not None
        conn.transport.set_keepalive(KEEPALIVE_SECONDS)
        self.connections_opened += 1
        log.info("ssh connected", target=self._target, connections_opened=self.connections_opened)
        return conn

    @staticmethod
    def _certificate_problem(conn: Connection, exc: BaseException) -> None:
        """Raise :class:`CertificateInvalid` if a certificate is why the login failed: expired,
        not yet valid, or unreadable (paramiko raises ValueError for one caught mid-rewrite by
        the tool that renews it)."""
        key_files = conn.connect_kwargs.get("key_filename") or []
        key_files = [key_files] if isinstance(key_files, str) else key_files
        if isinstance(exc, ValueError):
            raise CertificateInvalid(
                f"a certificate beside {', '.join(key_files) or 'your keys'} could not be read ({exc})"
            ) from exc
        invalid = invalid_certificate(key_files)
        if invalid is not None:
            raise invalid from exc

    def _known_hosts(self) -> Path:
        return (self._settings.known_hosts or Path("~/.ssh/known_hosts")).expanduser()

    def _pin_host_keys(self, client: paramiko.SSHClient) -> None:
        # fabric installs AutoAddPolicy (trust on first use); a scheduler credential must not.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        path = self._known_hosts()
        if path.exists():
            client.load_system_host_keys(str(path))
        elif self._settings.known_hosts is not None:
            raise TransportError(
                f"{ENV_PREFIX}KNOWN_HOSTS={path} does not exist; point it at a known_hosts file "
                "that holds the login node's host key"
            )

    @contextmanager
    def _login_gate(self, conn: Connection) -> Iterator[None]:
        """Serialize logins to one host across the processes of this machine.

        sshd's MaxStartups drops connections that arrive in a burst before authenticating, as
        when a backfill starts many run workers at once; taking turns avoids the refusals.
        """
        directory = self._settings.ssh_control_dir.expanduser()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9._@-]", "_", f"{conn.user}@{conn.host}_{conn.port}") + ".lock"
        fd = os.open(directory / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _permanent_error(self, exc: Exception) -> TransportError:
        known_hosts = self._known_hosts()
        s = self._settings
        host_spec = f"[{s.host}]:{s.port}" if s.port and s.port != 22 else str(s.host)
        scan = f"ssh-keyscan {'-p ' + str(s.port) + ' ' if s.port else ''}{s.host}"
        if isinstance(exc, paramiko.BadHostKeyException):
            return TransportError(
                f"the host key of {self._target} does not match {known_hosts} "
                f"(got {exc.key.get_name()} {exc.key.fingerprint}, expected {exc.expected_key.fingerprint}). "
                "This is what a man-in-the-middle looks like; if your admins confirm the key changed, "
                f"remove the old entry with `ssh-keygen -R '{host_spec}' -f {known_hosts}` and add the new one."
            )
        if isinstance(exc, SecondFactorRequired):
            return TransportError(
                f"{self._target} asks every new login for a second factor, which a process cannot give. "
                f"Log in once yourself into an OpenSSH master connection and set {ENV_PREFIX}TRANSPORT=openssh "
                f"and {ENV_PREFIX}CONTROL_PATH (the README's section on sites with MFA shows how)"
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return TransportError(
                f"authentication to {self._target} failed ({exc}); check {ENV_PREFIX}USER and "
                f"{ENV_PREFIX}KEY_FILE (or your ssh-agent and ~/.ssh/config)"
            )
        return TransportError(
            f"the host key of {self._target} is not in {known_hosts}; nothing was sent. Verify the key's "
            f"fingerprint with your admins, then add it: `{scan} >> {known_hosts}` "
            f"(or set {ENV_PREFIX}KNOWN_HOSTS to a file that holds it)"
        )


def _without_eof(command: str, stdin: bytes | None) -> str:
    """Wrap ``command`` so that the channel never carries a message after the command ends.

    paramiko builds channel messages under the channel's lock but sends them after releasing
    it, so an EOF (``shutdown_write``) or data sent while sshd closes a finished command can
    follow paramiko's close reply; OpenSSH then drops the whole connection ("packet referred
    to nonexistent channel"), failing every other command on it. So no EOF is ever sent: the
    remote side reads exactly the bytes sent (``head -c``), and drains what the command left
    unread before it can end; a command without input reads ``/dev/null``.
    """
    if stdin is None:
        return f"{{ {command}\n}} </dev/null"
    return f"head -c {len(stdin)} | {{ ( {command}\n); rc=$?; cat >/dev/null; exit $rc; }}"


def _drain(recv: Callable[[int], bytes]) -> bytes:
    chunks = []
    while chunk := recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _backoff(attempt: int, deadline: float, what: str, exc: BaseException, waiting_for: str = "") -> None:
    try:
        backoff(attempt, deadline, what, str(exc) if waiting_for else repr(exc))
    except RetryDeadlineExceeded:
        if waiting_for:
            raise TransportError(f"{what}: {exc}; waited {ENV_PREFIX}RECONNECT_TIMEOUT for {waiting_for}") from exc
        raise TransportError(
            f"{what}: {exc!r}; gave up after retrying for {ENV_PREFIX}RECONNECT_TIMEOUT. "
            "Check that the login node is reachable and sshd is running."
        ) from exc
