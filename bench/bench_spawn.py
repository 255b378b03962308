"""What starting a run's process costs the agent: ``Popen`` from a process the size of a controller, with a
``preexec_fn`` (CPython must ``fork()`` the whole process), without one (``vfork``), and through
``setpriv --pdeathsig KILL`` (how the agent ties a run to its life without a ``preexec_fn``).

Usage (from the repository root)::

    .venv/bin/python bench/bench_spawn.py            # 15 spawns each
    .venv/bin/python bench/bench_spawn.py --smoke    # 2 spawns each (the test suite runs it)

Writes JSON (``--out``, default ``bench/spawn_results.json``) and prints medians.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine

sys.path.insert(0, str(ROOT))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


def median_ms(argv: list[str], preexec: Any, reps: int) -> float:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, preexec_fn=preexec, start_new_session=True, stdin=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t0)
        proc.wait()
    return statistics.median(samples) * 1e3


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="2 spawns each")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "spawn_results.json")
    args = parser.parse_args(argv)
    # Grow to what a controller process has loaded: a preexec_fn's fork() copies all of it.
    import sweepflow.local.drive
    import sweepflow.local.search  # noqa: F401

    reps = 2 if args.smoke else 15
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "popen_with_preexec_fn_ms": median_ms(["/bin/true"], _die_with_parent, reps),
        "popen_without_preexec_fn_ms": median_ms(["/bin/true"], None, reps),
    }
    if setpriv := shutil.which("setpriv"):
        result["popen_setpriv_pdeathsig_ms"] = median_ms(
            [setpriv, "--pdeathsig", "KILL", "--", "/bin/true"], None, reps
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(
        f"Popen of /bin/true from this {result['rss_mb']:.0f} MB process: with preexec_fn "
        f"{result['popen_with_preexec_fn_ms']:.2f} ms, without {result['popen_without_preexec_fn_ms']:.2f} ms, "
        f"setpriv --pdeathsig {result.get('popen_setpriv_pdeathsig_ms', float('nan')):.2f} ms"
    )
    return result


if __name__ == "__main__":
    main()
