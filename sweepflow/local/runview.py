"""A controller's copy of its sweep's runs, kept current by reading only what changed (issue 13, "Scale").

A controller decides on every run of its sweep, but between two ticks only a few runs change. Reading every run
on every tick cost 57 ms per decision at 1,000 finished runs and 408 ms at 10,000 (``bench/bench_scale.py``, 500
in flight, a loaded machine); :meth:`RunView.refresh` reads only the runs written since the last refresh (the
store numbers every write to a run: :meth:`Store.run_changes`), so its cost is what changed, not the runs ended
or in flight. What the controller derives from the runs (the trials shown to the searcher, the runs in flight,
the last one that ended) is kept here beside them, updated from the same changes, so no decision walks the
finished runs either.

A new view starts empty, so its first refresh reads every run: a restarted controller rebuilds everything from
the store, as before.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from sweepflow.local.search import Trial
from sweepflow.states import RunState
from sweepflow.store import Run, Store

# The states W&B's engine is given: the same names (sweepflow.states is W&B's vocabulary).
ENGINE_STATE = {state: state.value for state in RunState}


def trial_of(run: Run) -> Trial:
    """The run as a search engine sees it, without history (the controller adds the metric's series when the
    engine reads it)."""
    return Trial(run.id, run.config, ENGINE_STATE[run.state], run.summary)


class RunView:
    """The sweep's runs in number order as of the last :meth:`refresh`, with the trials and indexes derived."""

    def __init__(self, store: Store, sweep_id: str):
        self.store = store
        self.sweep_id = sweep_id
        self.runs: list[Run] = []  # run number n is runs[n - 1]: numbers are 1..n without gaps
        self.trials: list[Trial] = []  # trial_of(runs[i]), kept alongside
        self.in_flight: dict[str, Run] = {}  # pending or running, by id
        self._since: int | None = None  # the highest change counter seen; None: nothing read yet
        self._ended: list[tuple[float, int, str]] = []  # heap of (-ended_at, -number, id): the last one ended first

    def refresh(self) -> list[Run]:
        """Read what changed since the last refresh; returns those runs (new ones included), by number."""
        changes = self.store.run_changes(self.sweep_id, since=self._since)
        for run in changes.runs:
            index = run.number - 1
            if index == len(self.runs):
                self.runs.append(run)
                self.trials.append(trial_of(run))
            else:
                self.runs[index] = run
                self.trials[index] = trial_of(run)
            if run.state.is_terminal:
                self.in_flight.pop(run.id, None)
                heapq.heappush(self._ended, (-(run.ended_at or 0.0), -run.number, run.id))
            else:
                self.in_flight[run.id] = run
        self._since = changes.since
        return changes.runs

    def last_ended(self) -> Run | None:
        """The run that ended last (latest ``ended_at``, then highest number), as the full list would say.

        A heap of every ending seen, entries of runs since queued again (or ended again, later) dropped when
        they reach the top: O(log n) per ending instead of a walk over the runs.
        """
        while self._ended:
            ended_at, number, run_id = self._ended[0]
            run = self.runs[-number - 1]
            if run.id == run_id and run.state.is_terminal and (run.ended_at or 0.0) == -ended_at:
                return run
            heapq.heappop(self._ended)
        return None

    def running(self) -> Iterable[Run]:
        return (run for run in self.in_flight.values() if run.state is RunState.RUNNING)
