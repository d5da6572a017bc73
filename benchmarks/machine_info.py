"""What a benchmark's JSON records about where it ran (a shared or busy machine shows in the load)."""

from __future__ import annotations

import os
import platform
import time

from data_adapters.study_jobs import available_cores


def machine_info() -> dict:
    return {"cores": available_cores(), "machine": platform.platform(), "python": platform.python_version(),
            "load_average_1_5_15_min_after": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d")}
