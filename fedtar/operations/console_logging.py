"""What a console shows: one handler for every logger, our packages at INFO, third parties at WARNING.

Used by the CLI and by the ServerApp when Flower starts it in a process of its own (the simulation
runtime behind `fedtar simulate`, a deployment's SuperLink), so both print the same lines.
"""

from __future__ import annotations

import logging
import warnings

# Our packages log progress at INFO; every other library (flwr, ray, alembic, matplotlib...) only
# reaches the console at WARNING and above unless verbose.
OUR_LOGGERS = ("fedtar", "aggregator", "clients", "data_adapters", "benchmarks", "experiments", "__main__")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
VERBOSE_ENV = "FEDTAR_VERBOSE"  # "1": verbose in a process Flower starts (set by aggregator.local_simulation)


def _ours_or_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name.split(".")[0] in OUR_LOGGERS


def configure_console_logging(verbose: bool) -> None:
    """One console handler for every logger: ours at INFO, third parties at WARNING (verbose: all at DEBUG).
    Flower adds a colored console handler of its own to the `flwr` logger, which printed each of its
    records a second time: it is removed, so Flower's records come out once, through ours."""
    # MONAI announces an optional GPU DICOM decoder it cannot find: noise for a user.
    warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
    logging.getLogger("monai").setLevel(logging.ERROR)
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)
    if not verbose:  # only the handler basicConfig made (not one a host process such as pytest installed)
        for handler in root.handlers:
            if handler not in before:
                handler.addFilter(_ours_or_warning)
    from flwr.supercore.logger import FLOWER_LOGGER, console_handler

    FLOWER_LOGGER.removeHandler(console_handler)
