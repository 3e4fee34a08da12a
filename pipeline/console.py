"""What a build prints: the pipeline's own stage lines, Ray Data's progress bars and the summary.

Ray Data logs each execution's plan, start and end (and, off a terminal, its progress) at INFO on
the console: about 120 lines for the bundled sample. Unless ``--verbose``, its console handler
keeps warnings only; its log file (``logs/ray-data/ray-data.log`` in the Ray session directory)
gets every record either way. Ray's "Started a local Ray instance" line goes the same way, and so
does its warning, on every start of a local instance, that it turned token authentication on (it
stays on; ``RAY_AUTH_MODE`` set explicitly silences it too). Ray Data's warnings that say nothing
about the build (``HARMLESS_WARNINGS``) stay off the console, ``--verbose`` or not.
"""

from __future__ import annotations

import importlib
import logging

RAY_STARTED = "ray._private.worker"  # "Started a local Ray instance."
RAY_TOKEN_AUTH = "ray._private.authentication.authentication_token_setup"
RAY_DATA_CONSOLE = "console"  # the console handler's name in Ray Data's logging config
HARMLESS_WARNINGS = (
    # Ray Data warns each time it shortens a long operator name for its progress bar: about its own labels
    "Truncating long operator name",
    # and when an execution starts at an instant no CPU is free (``ray.available_resources()``, Ray 2.60's
    # ``Dataset._execute``): a task of the build's last execution, or the one-task dedup graph, has not handed
    # its CPU back yet. The build never waits on a CPU that it holds itself (pass 2 materializes its input when
    # the segmentation pool holds every CPU: ``cluster.cpus_beside_segmentation``), so it never hangs there
    "Warning: The Ray cluster currently does not have any available CPUs",
)


def setup(verbose: bool = False, ray_data: bool = False) -> None:
    """The pipeline's log format; with ``ray_data`` (commands that run Ray Data) Ray's console as above."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not ray_data:
        return
    importlib.import_module("ray.data")  # configures Ray Data's logging: its console handler exists from here

    level = logging.INFO if verbose else logging.WARNING
    logging.getLogger(RAY_STARTED).setLevel(level)
    logging.getLogger(RAY_TOKEN_AUTH).setLevel(logging.INFO if verbose else logging.ERROR)
    for handler in logging.getLogger("ray.data").handlers:
        if handler.get_name() == RAY_DATA_CONSOLE:
            handler.setLevel(level)
            handler.addFilter(_not_harmless)


def _not_harmless(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(HARMLESS_WARNINGS)
