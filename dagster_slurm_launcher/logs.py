"""Structured logging for the package.

The package never reconfigures structlog globally (that belongs to the application):
its loggers are wrapped with their own processors and write through the standard
``logging`` logger ``dagster_slurm_launcher``, which gets a stderr handler unless the
application configured one.
"""

import logging
import os
import sys
from functools import cache
from typing import Any

import structlog

from dagster_slurm_launcher.naming import ENV_PREFIX

_ROOT = "dagster_slurm_launcher"


@cache
def _processors() -> tuple[Any, ...]:

    fmt = os.environ.get(f"{ENV_PREFIX}LOG_FORMAT", "console")
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    root = logging.getLogger(_ROOT)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return (
        structlog.stdlib.filter_by_level,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        renderer,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structured logger for the module ``name`` of this package."""
    return structlog.wrap_logger(
        logging.getLogger(name), processors=list(_processors()), wrapper_class=structlog.stdlib.BoundLogger
    )
