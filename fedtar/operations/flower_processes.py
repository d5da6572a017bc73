"""Flower's executables and the processes they start: found next to this Python, stopped with all
their children, and stopped on SIGTERM/SIGINT. Shared by the SuperLink (aggregator.superlink) and
the SuperNode (clients.supernode) runners, so neither imports the other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def flower_tool(name: str) -> str:
    """A Flower executable next to this Python (a venv), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else name


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a Flower process and every process it started (terminate, then kill after `grace` seconds).

    The process leads its own process group (started with ``start_new_session``); its
    descendants (SuperExec, ServerApp, ClientApp processes) are also collected with psutil
    first, so one that left the group is stopped as well.
    """
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid)
            proc.wait(grace)
    _killpg(proc.pid)  # children that outlived the leader
    for child in family:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(family, timeout=grace)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived: unwind so that every Flower child is stopped (``finally``)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_on_signals() -> None:
    """SIGTERM and SIGINT raise `Stopped` in the main thread (a process manager's stop, Ctrl-C)."""
    def handler(signum, _frame):
        raise Stopped(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
