"""What a cell costs in memory: the process's peak resident set (CPU) during the cell.

CUDA's peak is ``torch.cuda.max_memory_allocated`` (reset in ``prepare``). The CPU peak is the
kernel's high-water mark of resident memory (``VmHWM``); a worker trains many cells in one
process, so the mark is reset at each cell's start (writing 5 to ``/proc/self/clear_refs``,
Linux ≥ 4.0). Where that is not possible (not Linux, no permission) the figure is the process's
peak so far (``ru_maxrss``), an upper bound, and says so.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_rss() -> bool:
    """Start a new high-water mark; False where the kernel does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The resident-memory high-water mark since the last reset (or since the process started)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB on Linux
