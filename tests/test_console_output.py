"""`fedtar simulate`'s console by default (issue 22, item 6): our progress and tables; other libraries'
logs at WARNING and above, no deprecation warning raised by our own calls, sites named as the data names them.

Runs the main job's path in this process (Ray engine, a tiny federation) with the CLI's own console.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

from conftest import TINY_FED
from fedtar.cli import main
from fedtar.operations.console_logging import OUR_LOGGERS

REPO = Path(__file__).resolve().parents[1]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+): ")


def test_simulate_prints_our_progress_tables_and_site_names(tiny_base, tmp_path, capfd, monkeypatch):
    from flwr.supercore.logger import FLOWER_LOGGER, console_handler

    # The CLI configures the console as in a fresh process: no handler of pytest's on the root logger.
    monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.setattr(logging.root, "level", logging.WARNING)
    sets = [a for k, v in {**TINY_FED, "federation.rounds": 1}.items() for a in ("--set", f"{k}={v}")]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = main(["simulate", "--out", str(tmp_path / "sim"), "--base", str(tiny_base), "--sites", "2",
                         "--patients", "6", "--visits", "3", "--strategies", "fedtar", *sets])
    finally:
        if console_handler not in FLOWER_LOGGER.handlers:
            FLOWER_LOGGER.addHandler(console_handler)
    out, err = capfd.readouterr()
    text = out + err
    assert code == 0, text
    lines = text.splitlines()
    logged = [m.groups() for line in lines if (m := LOG_LINE.match(line))]
    assert logged, text
    assert not [line for line in lines if " DEBUG " in line or "DEBUG flwr" in line], text
    third_party_info = [(level, name) for level, name in logged
                        if level == "INFO" and name.split(".")[0] not in OUR_LOGGERS]
    assert not third_party_info, third_party_info
    assert ("INFO", "fedtar.server") in logged  # our progress: one line per round
    assert "\x1b[" not in text, "no second, colored copy of Flower's log lines"
    # Deprecations caused by our calls: none (the simulation runs through `flwr run`, not run_simulation).
    ours = [w for w in caught if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning,
                                                         FutureWarning))
            and str(REPO) in str(Path(w.filename).resolve())]
    assert not ours, [(w.filename, w.lineno, str(w.message)) for w in ours]
    assert not [w for w in caught if "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO" in str(w.message)]
    assert not [line for line in lines if "DEPRECATED" in line or "deprecated" in line], text
    assert not [line for line in lines if "Warning:" in line], text  # no library's Python warning either
    # The per-site table names the data's sites, not Flower node ids.
    table = out[out.index("Per site (first seed):"):]  # tables on stdout, logs on stderr
    rows = [line.split() for line in table.splitlines()[3:] if line.strip()]
    assert [r[:2] for r in rows] == [["fedtar", "site1"], ["fedtar", "site2"]], table
