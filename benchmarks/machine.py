"""The machine a benchmark ran on, in one line, as every benchmark's results name it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f", {kb / 2**20:.0f} GB RAM"
    except (OSError, IndexError, ValueError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at the start"
    return (f"{cpu}, {os.cpu_count()} logical CPUs{memory}{load}; Python {platform.python_version()}, "
            f"torch {torch.__version__}; {platform.system()}")
