"""What a sweep's status says of its runs (counts per state, the best run, the cost), kept current from the runs
written since the last look (issue 13, "Scale").

``LocalBackend.status`` is polled for as long as a sweep runs (the flows' wait sensor every 0.5-2 s, ``launch-sweep
--wait`` every 0.25 s); reading every run on each poll made a poll cost the sweep's size. A tally reads only the
runs written since its last refresh (:meth:`Store.run_changes`) and keeps, per run, just what the status reports.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from sweepflow.config import Metric
from sweepflow.ranking import is_better, metric_value, usable
from sweepflow.states import RunState
from sweepflow.store import Run, Store


@dataclass(frozen=True)
class _Seen:
    state: RunState
    cost_usd: float
    value: float | None  # the metric's value, if the run may be ranked (ranking.best's rule)


class RunTally:
    """Counts per state, the best run and the total cost of one sweep's runs, as of the last :meth:`refresh`.

    The same answers as a walk over every run (``ranking.best``: a usable run with a finite value, the first in
    number order on a tie), at the cost of what changed: the best is only recomputed from the kept values when
    the best run itself changes, which an ended run does not.
    """

    def __init__(self, store: Store, sweep_id: str, metric: Metric | None):
        self.store = store
        self.sweep_id = sweep_id
        self.metric = metric
        self.counts: Counter[RunState] = Counter()
        self.cost_usd = 0.0
        self.best: tuple[str, float] | None = None  # (run id, value)
        self._seen: dict[str, _Seen] = {}
        self._numbers: dict[str, int] = {}
        self._since: int | None = None
        self._lock = threading.Lock()  # one backend may be polled from several threads

    def refresh(self) -> RunTally:
        with self._lock:
            changes = self.store.run_changes(self.sweep_id, since=self._since)
            stale = False
            for run in changes.runs:
                stale |= self._update(run)
            if stale:
                self.best = None
                for run_id, seen in self._seen.items():
                    self._offer(run_id, seen.value)
            self._since = changes.since
        return self

    def _update(self, run: Run) -> bool:
        """Take the run as it is now; True if it was the best (the best must then be found again)."""
        old = self._seen.get(run.id)
        if old is not None:
            self.counts[old.state] -= 1
            self.cost_usd -= old.cost_usd
        self._numbers[run.id] = run.number
        metric = self.metric
        value = metric_value(run.summary, metric.name) if metric is not None and usable(run.state) else None
        new = self._seen[run.id] = _Seen(run.state, run.cost_usd or 0.0, value)
        self.counts[new.state] += 1
        self.cost_usd += new.cost_usd
        if self.best is not None and self.best[0] == run.id:
            return True
        self._offer(run.id, value)
        return False

    def _offer(self, run_id: str, value: float | None) -> None:
        if value is None or self.metric is None:
            return
        if self.best is None or is_better(value, self.best[1], self.metric.goal):
            self.best = (run_id, value)
        elif value == self.best[1] and self._numbers[run_id] < self._numbers[self.best[0]]:
            self.best = (run_id, value)  # a tie goes to the run added first
