"""How many CPU cores this process may use: the one place that decides how work is spread over them.

Only how work is spread depends on it, never a result: cross-validation gives the same `cv.json` on 1 or 2 workers and
UniRep the same vectors on 1 or 3 side-by-side calls (both tested), so no pipeline stage depends on this module.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
