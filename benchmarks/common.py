"""What every benchmark records beside its numbers: the machine, and how busy it was."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """The CPU model, the number of cores and the Python version."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def load() -> float:
    """The 1-minute load average: above the core count, other work shares the CPUs and
    wall times (and the scaling across cores) say little."""
    return os.getloadavg()[0]
