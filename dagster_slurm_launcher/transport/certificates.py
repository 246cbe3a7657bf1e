"""OpenSSH user certificates (``id_ed25519-cert.pub`` beside the key): why a login was refused.

Sites that issue certificates valid for hours refuse a login once the certificate has expired;
sshd only says "permission denied". paramiko loads ``<key>-cert.pub`` beside each key it tries
(``SSHClient._key_from_filepath``), again at every login, so a renewed certificate is used as
soon as it is on disk. This module reads the certificates' validity to say what happened.
"""

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.serialization import SSHCertificate, load_ssh_public_identity

# The keys paramiko looks for when no key is configured (SSHClient._auth, look_for_keys).
DEFAULT_KEYS = ("~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ed25519")


class CertificateInvalid(Exception):
    """A login was refused while the certificate it offered was outside its validity."""


def certificate_paths(key_files: Iterable[str]) -> list[Path]:
    """The certificates beside ``key_files`` (or beside the default keys) that exist."""
    keys = list(key_files) or list(DEFAULT_KEYS)
    paths = [Path(k).expanduser() for k in keys]
    certs = [p if p.name.endswith("-cert.pub") else p.with_name(p.name + "-cert.pub") for p in paths]
    return [c for c in certs if c.is_file()]


def invalid_certificate(key_files: Iterable[str]) -> CertificateInvalid | None:
    """Why the certificates beside ``key_files`` cannot log in now, or None if one is valid (or none exist)."""
    now = time.time()
    problems = []
    for path in certificate_paths(key_files):
        try:
            cert = load_ssh_public_identity(path.read_bytes())
        except (OSError, ValueError):
            continue  # paramiko's own error about the file says more
        if not isinstance(cert, SSHCertificate):
            continue
        if now < cert.valid_after:
            problems.append(
                f"the SSH certificate {path} is not valid before {_when(cert.valid_after)}; "
                "is this machine's clock right?"
            )
        elif now >= cert.valid_before:
            problems.append(
                f"the SSH certificate {path} expired at {_when(cert.valid_before)} "
                f"({now - cert.valid_before:.0f}s ago); renew it with your site's tool"
            )
        else:
            return None
    return CertificateInvalid("; ".join(problems)) if problems else None


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
