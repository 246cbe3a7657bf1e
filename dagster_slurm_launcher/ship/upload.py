"""Uploading an archive to the cluster through the transport's one connection, in chunks that
resume where the cluster's copy ends after a dropped connection, unpacked under its final name
only when complete and checked."""

import hashlib
import uuid
from collections.abc import Callable

from dagster_slurm_launcher.transport import CommandInterrupted, Transport, TransportError
from dagster_slurm_launcher.transport.programs import command

CHUNK_BYTES = 8 * 1024 * 1024
# Chunks lost to dropped connections before the upload gives up; each loss is retried within
# the transport's reconnect timeout, so this bounds only a connection that drops again and again.
_LOST_CHUNKS = 5

Progress = Callable[[int, int], None]
"""Called with (bytes on the cluster, bytes in all) after each chunk."""


def upload(transport: Transport, data: bytes, final_dir: str, progress: Progress) -> bool:
    """Unpack the tar ``data`` as ``final_dir`` on the cluster; ``False`` if it was there already
    (another run shipped the same content meanwhile).

    Raises:
        TransportError: the upload could not be completed; nothing appears as ``final_dir``.
    """
    parent, _, name = final_dir.rpartition("/")
    # Unique per upload: two runs shipping the same content never append to each other's file.
    part = f"{parent}/.incoming/{name}.{uuid.uuid4().hex[:12]}.tar"
    offset, lost = 0, 0
    while offset < len(data):
        chunk = data[offset : offset + CHUNK_BYTES]
        try:
            result = transport.run(command("receive_chunk", part, str(offset)), stdin=chunk, timeout=900)
        except CommandInterrupted:
            lost += 1
            if lost > _LOST_CHUNKS:
                raise
            # The chunk may or may not have been appended: the next call says where the file ends.
            chunk, result = b"", transport.run(command("receive_chunk", part, "-1"), stdin=b"")
        if result.exit_code == 3:
            offset = int(result.stdout.split()[-1])
            if offset > len(data):
                raise TransportError(f"the partial upload {part} is larger than the archive ({offset} bytes)")
            continue
        if not result.ok:
            raise TransportError(f"could not upload to {part} on the cluster: {result.stderr.strip()}")
        offset = int(result.stdout.split()[-1])
        progress(offset, len(data))
    sha = hashlib.sha256(data).hexdigest()
    result = transport.run(command("unpack_upload", part, final_dir, sha), timeout=900)
    if not result.ok:
        raise TransportError(f"could not unpack the upload into {final_dir} on the cluster: {result.stderr.strip()}")
    return result.stdout.split()[-1] == "unpacked"
