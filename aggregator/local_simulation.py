"""`fedtar simulate` on Flower's simulation runtime, the way Flower 1.42 runs simulations going forward.

Flower deprecates `flwr.simulation.run_simulation` for `flwr run` against a SuperLink in simulation
mode. `LocalSimulation` is that, on loopback, for one `fedtar simulate` call: it starts
``flower-superlink --simulation`` (plain HTTP on 127.0.0.1, a free port, its state and console output
under FOLDER), writes the installed FedTAR app (aggregator.flower_app), and submits each run with
`flwr run` and a federation config of one virtual SuperNode per site (Ray actors of one CPU each).
The SuperLink runs each run's ServerApp and ClientApps in a `flwr-simulation` process: the same
apps, messages and seeds as before, so a seed's metrics are the same (tests/test_simulation.py).

Every wait has a deadline (the SuperLink's start; a run's end, stalled when no round is checkpointed
for the rounds' own deadlines and retries, plus a margin for start-up and the final evaluation); a
run that fails ends the command with Flower's reason. The run's log, as `flwr log RUN --stream` gives
it, is relayed to this process's stderr as it comes: the ServerApp's records (our loggers at INFO,
others at WARNING; everything with `fedtar -v`) and Flower's errors, not Flower's own start-up notices.
The SuperLink's console stays in FOLDER/superlink.console.log.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Self

from aggregator.checkpoint import RESULTS_FILE
from aggregator.flower_app import check_run_config, write_app
from aggregator.superlink import (
    ServerRoleConfig,
    SuperLinkStartError,
    checkpoint_progress,
    console_log,
    flwr_env,
    run_outcome,
    start_superlink,
    submit_run,
    wait_run,
)
from data_adapters.study_jobs import available_cores
from fedtar.operations.console_logging import VERBOSE_ENV
from fedtar.operations.flower_processes import flower_tool, stop

log = logging.getLogger(__name__)
START_MARGIN_S = 300.0           # a run's start-up (Ray, the sites' data) and its final evaluation
STATUS_EVERY_S = 30.0            # `flwr list` costs a process: read between stream ends only this often
# A record in the ServerApp process's format (fedtar.operations.console_logging); one in Flower's own
# ("INFO :  ...", colored); the lines that continue a record (indented, a traceback and its last line).
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
_FLOWER_RECORD = re.compile(r"^(?:\x1b\[[0-9;]*m)*(DEBUG|INFO|WARNING|ERROR|CRITICAL)\s*(?:\x1b\[[0-9;]*m)*\s*:")
_CONTINUED = re.compile(r"^(\s|Traceback |[A-Za-z_][\w.]*(Error|Exception|Refusal|Interrupt|Exit)\b)")


def relayed(lines: Iterable[str], verbose: bool) -> Iterator[str]:
    """The lines of a run's log that a console shows (every line when verbose)."""
    relaying = False
    for line in lines:
        if _RECORD.match(line):
            relaying = True  # already filtered by level in the ServerApp's process
        elif flower := _FLOWER_RECORD.match(line):
            relaying = verbose or flower.group(1) in ("ERROR", "CRITICAL")
        elif not _CONTINUED.match(line):
            relaying = verbose  # a print, a Python warning of a library, Flower's progress
        if relaying:
            yield line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpus_per_site(num_sites: int, cores: int | None = None) -> int:
    """Each simulated site's share of the machine. Ray gives every site's actor this many CPUs and sets
    its OMP_NUM_THREADS (so torch's threads) to match: one CPU each while sites outnumber the cores
    (they take turns), the cores split among them otherwise. With one CPU each, a 4-site simulation
    used 4 cores of a 16-core machine, one thread per site."""
    return max(1, (cores or available_cores()) // max(1, num_sites))


class LocalSimulation:
    """A SuperLink in simulation mode on loopback for as long as the `with` block lasts."""

    def __init__(self, folder: str | Path, verbose: bool = False, start_timeout: float = 120.0):
        self.folder = Path(folder)
        self.verbose = verbose
        self.start_timeout = start_timeout
        self.cfg: ServerRoleConfig | None = None
        self._proc = None

    def __enter__(self) -> Self:
        self.folder.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # another process may take the free port between its choice and the bind
            self.cfg = ServerRoleConfig(
                host="127.0.0.1", port=free_port(), insecure=True, simulation=True,
                database=str(self.folder / "superlink.db"), flwr_home=str(self.folder / "flwr-home"),
                connection="fedtar-simulation", start_timeout=self.start_timeout)
            try:
                self._proc = start_superlink(self.cfg, extra_env={VERBOSE_ENV: "1" if self.verbose else "0"})
                break
            except SuperLinkStartError as e:
                if not e.port_in_use or attempt == 2:
                    raise
        self.app = write_app(self.folder / "app")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            stop(self._proc)

    def run(self, values: dict[str, Any], num_sites: int) -> None:
        """One federation run to its end; raises RuntimeError with Flower's reason when it did not complete."""
        run_config, fed = check_run_config(values)
        since = time.time()
        run_id = submit_run(self.cfg, self.app, run_config, federation_config={
            "num-supernodes": num_sites, "client-resources-num-cpus": cpus_per_site(num_sites),
            "client-resources-num-gpus": 0.0,
            "init-args-log-to-driver": False})
        out_dir = str(run_config["out-dir"])
        per_round = fed.federation.round_timeout * (fed.federation.round_retries + 1)
        stream = subprocess.Popen([flower_tool("flwr"), "log", str(run_id), self.cfg.connection, "--stream"],
                                  env=flwr_env(self.cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace", start_new_session=True)
        relay = threading.Thread(target=self._relay, args=(stream,), daemon=True)
        relay.start()
        try:
            status = wait_run(self.cfg, run_id, timeout=per_round * (fed.federation.rounds + 2) + START_MARGIN_S,
                              poll=1.0, progress=checkpoint_progress(out_dir),
                              stall_timeout=per_round + START_MARGIN_S,
                              ended=lambda: stream.poll() is not None, status_every=STATUS_EVERY_S)
            relay.join(timeout=10)  # the stream ends with the run; its last lines come first
        finally:
            stop(stream, grace=2)
        outcome = run_outcome(self.cfg, run_id, status, out_dir, fed.federation.rounds, since)
        # A run the ServerApp stopped (too few sites...) has its results.json, read like a completed one.
        if outcome.status != "finished:completed" or not (Path(out_dir) / RESULTS_FILE).is_file():
            raise RuntimeError(f"simulation run {run_id} ({out_dir}): {outcome.line(run_id)}; the SuperLink's "
                               f"console: {console_log(self.cfg)}")

    def _relay(self, stream: subprocess.Popen) -> None:
        for line in relayed(stream.stdout, self.verbose):
            sys.stderr.write(line)
            sys.stderr.flush()
