"""Jittered exponential backoff, bounded by a deadline."""

import random
import time

from dagster_slurm_launcher.logs import get_logger

log = get_logger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 15.0


class RetryDeadlineExceeded(Exception):
    """Retrying would pass the deadline."""


def backoff(attempt: int, deadline: float, what: str, error: object) -> None:
    """Sleep before retry number ``attempt + 1``, or raise if ``deadline`` would pass.

    Full jitter (a uniform delay up to the exponential bound): many workers that lost the
    same sshd or slurmctld do not come back in lockstep.

    Raises:
        RetryDeadlineExceeded: the delay would end after ``deadline`` (a ``time.monotonic()`` value).
    """
    delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
    if time.monotonic() + delay > deadline:
        raise RetryDeadlineExceeded(f"{what}: {error}")
    log.warning("retrying", reason=what, error=str(error), attempt=attempt + 1, delay=round(delay, 2))
    time.sleep(delay)
