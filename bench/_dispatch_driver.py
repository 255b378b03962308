"""One measured sweep, in its own process: ``drive()`` of whichever sweepflow ``PYTHONPATH`` points at.

Started by ``bench_dispatch.py`` once per source tree (the checkout, and e.g. an older commit extracted to a temp
dir), so "before" and "after" run the same measurement in one invocation. It only observes, through interfaces
every version has, and changes nothing it measures:

* when each run's process is spawned: a ``sys.addaudithook`` hook on ``subprocess.Popen`` (its env names the run);
* when each run's process exits: a watcher thread finds the new child (``/proc/self/task/<tid>/children``) and
  waits on its pidfd (readable at exit, whoever reaps it);
* the driving loop's CPU: ``time.thread_time()`` of the thread that runs ``drive()`` (the watchers are other
  threads), and its rounds through ``drive(on_tick=...)``;
* where ``drive()`` accepts ``on_event`` (the agent's event hook), "slot freed -> next run started" as well.

Usage: ``python bench/_dispatch_driver.py SPEC.json OUT.json`` (SPEC: {"config", "home", "cprofile"}).
"""

from __future__ import annotations

import contextlib
import cProfile
import inspect
import json
import os
import queue
import resource
import select
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any


class Watcher:
    """Spawn and exit times of the runs this process starts (perf_counter seconds), by run id."""

    def __init__(self) -> None:
        self.spawned: dict[str, float] = {}
        self.exited: dict[str, float] = {}
        self._pending: queue.Queue[str] = queue.Queue()
        self._tid = threading.get_native_id()
        self._known: set[int] = set()
        sys.addaudithook(self._audit)
        threading.Thread(target=self._map_pids, daemon=True).start()

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "subprocess.Popen":
            return
        env = args[3] or {}
        run_id = env.get("WANDB_RUN_ID") if isinstance(env, dict) else None
        if run_id:
            self.spawned[run_id] = time.perf_counter()
            self._pending.put(run_id)

    def _map_pids(self) -> None:
        children = Path(f"/proc/self/task/{self._tid}/children")
        waiting: set[str] = set()
        while True:
            if not waiting:
                waiting.add(self._pending.get())  # blocks: no polling between spawns
            with contextlib.suppress(queue.Empty):
                while True:
                    waiting.add(self._pending.get_nowait())
            for pid in (int(p) for p in children.read_text().split()):
                if pid in self._known:
                    continue
                try:
                    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:  # e.g. mid-exec: look again next round
                    continue
                ids = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"WANDB_RUN_ID=")]
                if ids and ids[0] in waiting:  # (between fork and exec the child still has our environment)
                    self._known.add(pid)
                    waiting.discard(ids[0])
                    threading.Thread(target=self._wait_exit, args=(ids[0], pid), daemon=True).start()
            if waiting:
                time.sleep(0.002)

    def _wait_exit(self, run_id: str, pid: int) -> None:
        # A pidfd turns readable when the process exits and stays so after the agent reaps it (a waitid here
        # would race with that reap and lose).
        with contextlib.suppress(OSError):
            fd = os.pidfd_open(pid)
            try:
                select.select([fd], [], [])
                self.exited[run_id] = time.perf_counter()
            finally:
                os.close(fd)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out_path = Path(sys.argv[2])
    os.environ["SWEEPFLOW_HOME"] = spec["home"]
    os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")

    # One-time costs are not the loop's: the engine imports its search modules (scipy, sklearn) at its first
    # suggestion, ~1-2 s of CPU in either tree. Load them before the clock starts.
    with warnings.catch_warnings():  # (sweeps' pydantic config warns on import; sweepflow silences it too)
        warnings.simplefilter("ignore")
        import sweeps.bayes_search
        import sweeps.grid_search
        import sweeps.hyperband_stopping
        import sweeps.random_search  # noqa: F401

    import sweepflow
    from sweepflow.backends.local import LocalBackend
    from sweepflow.config import load_sweep_config
    from sweepflow.local.drive import drive
    from sweepflow.settings import Settings

    settings = Settings()
    backend = LocalBackend(settings=settings)
    handle = backend.launch(load_sweep_config(spec["config"]), key="bench-dispatch", drive="none")

    # The watcher threads stamp times once they hold the GIL: let them have it within 0.1 ms of asking (this
    # costs nothing while no other thread wants it).
    sys.setswitchinterval(1e-4)
    watcher = Watcher()
    rounds = [0]
    hook_events: list[tuple[str, str, float]] = []
    kwargs: dict[str, Any] = {"embedded_agents": True, "on_tick": lambda: rounds.__setitem__(0, rounds[0] + 1)}
    has_hook = "on_event" in inspect.signature(drive).parameters
    if has_hook:
        kwargs["on_event"] = lambda kind, run_id, now: hook_events.append((kind, run_id, time.perf_counter()))
    profiler = cProfile.Profile() if spec.get("cprofile") else None

    self0 = resource.getrusage(resource.RUSAGE_SELF)
    thread0, wall0, perf0 = time.thread_time(), time.time(), time.perf_counter()
    if profiler:
        profiler.enable()
    final = drive(backend, handle.id, **kwargs)
    if profiler:
        profiler.disable()
        profiler.dump_stats(spec["cprofile"])
    thread1, wall1, perf1 = time.thread_time(), time.time(), time.perf_counter()
    self1 = resource.getrusage(resource.RUSAGE_SELF)

    store = backend.store
    runs = []
    for run in store.runs(handle.id):
        rows = store.history(run.id)
        runs.append(
            {
                "id": run.id,
                "state": run.state.value,
                "started_at": run.started_at,
                "ended_at": run.ended_at,
                "first_row_at": rows[0].get("_timestamp") if rows else None,
                "last_row_at": rows[-1].get("_timestamp") if rows else None,
                "rows": len(rows),
            }
        )
    result = {
        "sweepflow_path": str(Path(sweepflow.__file__).parent),
        "settings": {k: v for k, v in settings.model_dump().items() if isinstance(v, int | float)},
        "sweep_id": handle.id,
        "final_state": final.state.value,
        "final_reason": final.state_reason,
        "wall_s": wall1 - wall0,
        "perf0": perf0,
        "perf1": perf1,
        "wall0": wall0,
        "loop_thread_cpu_s": thread1 - thread0,
        "process_cpu_s": (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime),
        "rounds": rounds[0],
        "spawned": watcher.spawned,
        "exited": watcher.exited,
        "has_event_hook": has_hook,
        "hook_events": hook_events,
        "runs": runs,
    }
    out_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
