"""What the benchmarks share: percentiles, the machine they ran on, and how busy it was meanwhile.

Imports nothing from sweepflow, so a benchmark's child process can load sweepflow from whichever source tree
it is measuring (``PYTHONPATH``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float | None:
    """Percentile by linear interpolation (numpy's default); None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def dist(values: list[float], scale: float = 1.0) -> dict[str, Any]:
    values = [x * scale for x in values]
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "max": max(values),
        "min": min(values),
    }


def git_rev(tree: Path = ROOT) -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=tree, capture_output=True, text=True)
        return {"git_head": head.stdout.strip(), "worktree_dirty": bool(dirty.stdout.strip())}
    except OSError:
        return {"git_head": "", "worktree_dirty": None}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(), **git_rev()}


def cpu_jiffies() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs from /proc/stat (steal: time the hypervisor gave elsewhere)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, fields[7], sum(fields)


class CpuSampler(threading.Thread):
    """Every ``period`` s, CPU time used since the last sample by the benchmark's processes (their environment
    carries ``marker``, e.g. ``SWEEPFLOW_HOME=...``: the driver, its runs and their wandb-core) versus everything
    else on the machine, so a result taken on a shared box says how much other work competed with it. Processes
    that start and end between two samples are missed (both sides): these are lower bounds.
    """

    def __init__(self, marker: str, period: float = 2.0):
        super().__init__(daemon=True)
        self.marker = marker.encode()
        self.period = period
        self.stop = threading.Event()
        self.ours = 0.0
        self.others = 0.0
        self.other_by_name: dict[str, float] = defaultdict(float)
        self._last: dict[tuple[int, int], float] = {}
        self._is_ours: dict[tuple[int, int], bool] = {}
        self._tick = os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        now: dict[tuple[int, int], float] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                key = (int(entry.name), int(fields[19]))  # pid, start time
                cpu = (int(fields[11]) + int(fields[12])) / self._tick
                if key not in self._is_ours:
                    self._is_ours[key] = self.marker in Path(entry.path, "environ").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            now[key] = cpu
            if key in self._last:
                delta = cpu - self._last[key]
                if self._is_ours[key]:
                    self.ours += delta
                else:
                    self.others += delta
                    self.other_by_name[name] += delta
        self._last = now

    def run(self) -> None:
        self._sample()
        while not self.stop.wait(self.period):
            self._sample()

    def result(self, wall: float) -> dict[str, Any]:
        top = sorted(self.other_by_name.items(), key=lambda kv: -kv[1])[:5]
        return {
            "bench_processes_cpu_s": self.ours,
            "other_processes_cpu_s": self.others,
            "other_processes_cores_avg": self.others / wall if wall else None,
            "top_other_processes_cpu_s": {k: round(v, 2) for k, v in top},
        }


def fmt(x: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def extract(rev: str, tmp: Path) -> Path:
    """The source tree of ``rev`` (``git archive``: no worktree to clean up, nothing in .git changes)."""
    tree = tmp / f"tree-{rev}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree
