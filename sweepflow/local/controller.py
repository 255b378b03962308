"""The sweep's scheduler on this machine: what W&B's sweep controller does, driven from the store.

A controller owns one sweep through a lease in the store, so a second controller refuses to drive it (two
controllers are how W&B users get duplicate runs). Every decision is re-derived from the store on each
:meth:`Controller.tick`, so a controller that crashed is replaced by a new one that simply continues: nothing
lives only in memory. A holder that is a dead process of this machine is replaced at once; one elsewhere, when
its lease expires. The store itself refuses a run over ``run_cap`` or a config the sweep already ran, so even a
bug here cannot break those two promises.

Runs of agents that are gone are settled by the :class:`~sweepflow.local.reaper.Reaper` (from their logs), and
those lost with their agent are queued again, same config, up to ``lost_run_retries`` times each: an
infrastructure fault does not eat the sweep's ``run_cap``.

A tick costs what it decides, not what it guards: the lease is renewed and claims are reaped every
``lease_ttl * renew_fraction`` (not every tick; at once when the drive loop sees an agent of this machine die),
and a grid or random sweep keeps ``lookahead`` runs queued beyond its workers, so a freed slot is refilled by an
agent's claim alone, without waiting for a suggestion. Nor does it cost what the sweep has already done: the
runs are kept in a :class:`~sweepflow.local.runview.RunView` that reads only the runs that changed, and every
decision looks at those, the runs in flight, or counts kept beside them (issue 13: ``bench/bench_scale.py``).
"""

from __future__ import annotations

import functools
import math
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweepflow.config import SweepConfig
from sweepflow.local.processes import owner_is_dead
from sweepflow.local.reaper import Reaper, lost_with_agent
from sweepflow.local.runview import RunView
from sweepflow.local.search import Searcher, Stopper, Trial, ensure_searchable, searcher_for, seed_of_id, stopper_for
from sweepflow.ranking import lookup, metric_value, reaches
from sweepflow.settings import DEFAULTS
from sweepflow.store import (
    DuplicateConfigError,
    LeaseLostError,
    Run,
    RunCapReachedError,
    RunRefusedError,
    RunState,
    Store,
    Sweep,
    SweepInactiveError,
    SweepState,
)
from sweepflow.warm_start import PriorRun

_FAILED = (RunState.FAILED, RunState.CRASHED)
MAX_DUPLICATE_DRAWS = 50  # a random search over a small discrete space runs out of new configs
# Methods whose next config does not depend on results: queueing one ahead changes nothing but the wait.
LOOKAHEAD_METHODS = frozenset({"grid", "random"})


class ControllerLeaseTaken(Exception):
    """Another live controller drives this sweep."""


@dataclass
class ControllerSettings:
    """Knobs of a controller; the defaults are W&B's behaviour where W&B has one."""

    lease_ttl: float = DEFAULTS.lease_ttl
    queue: str = "default"
    priority: int | str | None = None
    hyperband_every: float = 0.5  # seconds between Hyperband evaluations (each reads all histories)
    renew_fraction: float = DEFAULTS.lease_renew_fraction  # renew the lease and reap every lease_ttl * this
    lookahead: int = (
        DEFAULTS.lookahead
    )  # runs queued beyond num_workers for methods in LOOKAHEAD_METHODS (within run_cap)
    runs_dir: Path | None = None  # where runs' logs are: the reaper reads how a dead agent's runs ended
    lost_run_retries: int = DEFAULTS.lost_run_retries  # re-queues of a run that died with its agent

    @property
    def renew_every(self) -> float:
        return self.lease_ttl * self.renew_fraction


class Controller:
    """Drives one sweep: keeps ``num_workers`` runs in flight, applies Hyperband, ends the sweep."""

    def __init__(
        self,
        store: Store,
        sweep_id: str,
        *,
        settings: ControllerSettings | None = None,
        owner: str | None = None,
        rng: np.random.Generator | None = None,
    ):
        self.store = store
        self.sweep_id = sweep_id
        self.settings = settings or ControllerSettings()
        # host:pid:nonce, so a launcher on this host can tell a dead controller's lease from a live one.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        sweep = self._sweep()
        self.config = SweepConfig.model_validate(sweep.config)
        # -- search (issue 13): the sweep's recorded seed, else one derived from its id (older sweeps) --
        seed = self.config.seed if self.config.seed is not None else seed_of_id(sweep_id)
        ensure_searchable(self.config)
        self._seed = rng if rng is not None else seed
        self._last_hyperband = -math.inf
        self._exhausted = False
        self._renew_at = self._reap_at = -math.inf  # the first tick does both
        self.reaper = Reaper(store, self.settings.runs_dir)
        self.stop_requests = 0  # Hyperband stops requested so far: a loop tells its agent to look at once
        self.view = RunView(store, sweep_id)
        self._lost: dict[str, Run] = {}  # runs lost with their agent (or preempted), not yet queued again
        self._unchecked: dict[str, Run] = {}  # runs changed since the metric target was last checked
        self._prior_trials: list[Trial] | None = None

    def _sweep(self) -> Sweep:
        sweep = self.store.get_sweep(self.sweep_id)
        if sweep is None:
            raise KeyError(self.sweep_id)
        return sweep

    @functools.cached_property
    def searcher(self) -> Searcher:
        """Made at the first decision that needs it: its engine's imports (``sweeps``, scipy: seconds on a busy
        box) stay out of the way of a controller taking a sweep over, whose first work (the runs lost with the
        dead one, queued again and started) needs no engine. The drive loop loads it in the background
        (:meth:`load`)."""
        return searcher_for(self.config, self._seed)

    @functools.cached_property
    def stopper(self) -> Stopper:
        return stopper_for(self.config, self.searcher)

    def load(self) -> None:
        """Make the searcher and stopper now, with every import of their engine (``sweeps`` and scipy, Optuna,
        scikit-learn for bayes: seconds on a busy box), so that no decision waits on them: a drive loop calls it
        in a background thread, and its rounds decide once it is done."""
        self.stopper.enabled  # noqa: B018 (makes the searcher too)
        self.searcher.load()

    def tick(self, now: float | None = None) -> bool:
        """One round of decisions. Returns False once the sweep has ended (or was never ours to drive)."""
        now = time.time() if now is None else now
        if now >= min(self._reap_at, self.reaper.retry_at):
            self.reaper.reap(now)
            self._reap_at = now + self.settings.renew_every
        if now >= self._renew_at:
            self._renew(now)
        sweep = self._sweep()
        if sweep.state.is_terminal:
            self.release()
            return False
        if sweep.state is SweepState.PAUSED:
            return True
        if sweep.state is SweepState.PENDING:
            self.store.set_sweep_state(self.sweep_id, SweepState.RUNNING, expect=[SweepState.PENDING], now=now)
        self._refresh()
        if self._requeue_lost(now):
            self._refresh()
        self.reaper.watch(self.view.in_flight.values())
        reason = self._end_reason(sweep)
        if reason is None:
            self._apply_hyperband(sweep, now)
            if not self._fill_slots(sweep, now):
                # Nothing was added, so only `_exhausted` can have changed the verdict: no need to re-read the runs.
                # (A run added is in flight, and the sweep goes on.)
                reason = self._end_reason(sweep)
        if reason is not None:
            runs = self.view.runs  # the sweep ends: the one walk over every run, to say how it went
            state, why = self._failures(*reason, runs)
            why += self._metric_note(runs)
            self.store.set_sweep_state(self.sweep_id, state, why, expect=[SweepState.RUNNING], now=now)
            self.release()
            return False
        return True

    def recover(self, now: float | None = None) -> None:
        """What a controller does first, before it can suggest anything: take the sweep (from a dead holder of this
        machine at once), settle the runs of agents that are gone, and queue again those lost with their agent,
        so an agent can restart them while the search engine is still loading."""
        now = time.time() if now is None else now
        self._renew(now)
        self.reaper.reap(now)
        self._reap_at = now + self.settings.renew_every
        if self._sweep().state.is_active:
            self._refresh()
            self._requeue_lost(now)

    def release(self) -> None:
        """Give up the lease (a clean exit); the next controller may take over at once."""
        self.store.release_controller_lease(self.sweep_id, self.owner)
        self._renew_at = -math.inf  # a later tick (the sweep was resumed meanwhile) takes the lease first

    @property
    def watches_metrics(self) -> bool:
        """Whether new metrics can change a decision (Hyperband, ``metric.target``): then a loop ticks the
        controller after each metrics report, not only when a run ends."""
        metric = self.config.metric
        return self.stopper.enabled or (metric is not None and metric.target is not None)

    @property
    def next_due(self) -> float:
        """When this controller next needs a tick for its own sake (lease renewal, reaping)."""
        return min(self._renew_at, self._reap_at, self.reaper.retry_at)

    def reap_now(self) -> None:
        """Reap at the next tick (an agent of this machine was seen to die)."""
        self._reap_at = -math.inf

    def _renew(self, now: float) -> None:
        # Renewed at a fraction of the TTL, the lease always has most of it left: a tick after a stall longer
        # than that renews (and learns it lost the sweep) before deciding anything. A holder that is a dead
        # process of this machine is replaced at once: only a holder elsewhere is waited out (its lease TTL).
        ttl = self.settings.lease_ttl
        if not self.store.acquire_controller_lease(self.sweep_id, self.owner, ttl, now=now):
            holder = self._sweep().lease_owner
            if not (
                owner_is_dead(holder)
                and self.store.acquire_controller_lease(self.sweep_id, self.owner, ttl, replacing=holder, now=now)
            ):
                self._renew_at = -math.inf
                raise ControllerLeaseTaken(f"sweep {self.sweep_id} is driven by another controller")
        self._renew_at = now + self.settings.renew_every

    def _refresh(self) -> None:
        """Read the runs that changed; note the ones a decision must look at again."""
        for run in self.view.refresh():
            self._unchecked[run.id] = run
            again = lost_with_agent(run) or run.state is RunState.PREEMPTED  # W&B re-queues a preempted run too
            if again and run.attempt <= self.settings.lost_run_retries:
                self._lost[run.id] = run
            else:
                self._lost.pop(run.id, None)

    def _requeue_lost(self, now: float) -> int:
        """Queue again, same config, the runs that died with their agent (a bounded number of times each): they
        do not count against ``run_cap`` (it counts runs, and a re-queued run is the same run). A refused one is
        tried again at the next tick, as long as it stays lost."""
        requeued = 0
        for run in sorted(self._lost.values(), key=lambda r: r.number):
            try:
                self.store.requeue_run(run.id, priority=self.settings.priority, owner=self.owner, now=now)
            except (RunRefusedError, SweepInactiveError):
                continue
            except LeaseLostError:
                self._renew_at = -math.inf
                raise ControllerLeaseTaken(f"sweep {self.sweep_id} is driven by another controller") from None
            requeued += 1
        return requeued

    # -- decisions ------------------------------------------------------------------------------------------

    def _series(self) -> dict[str, list[dict[str, Any]]]:
        """What an engine reads of the histories: the sweep metric's logged values, as ``[{metric: v}, ...]``."""
        metric = self.config.metric
        if metric is None:
            return {}
        return {
            rid: [{metric.name: v} for v in vs]
            for rid, vs in self.store.metric_series(self.sweep_id, metric.name).items()
        }

    def _trials(self, sweep: Sweep, histories: dict[str, list[dict[str, Any]]] | None = None) -> list[Trial]:
        """The prior runs then the sweep's runs, as trials; with ``histories``, each with its metric series."""
        if self._prior_trials is None:  # a sweep's prior runs are fixed when it is created
            priors = (PriorRun.model_validate(p) for p in sweep.prior_runs or [])
            self._prior_trials = [
                Trial(f"prior-{i}", p.config, "finished", p.summary, prior=True) for i, p in enumerate(priors)
            ]
        if histories is None:
            return [*self._prior_trials, *self.view.trials]
        return [
            *self._prior_trials,
            *(Trial(t.id, t.config, t.state, t.summary, histories.get(t.id, [])) for t in self.view.trials),
        ]

    def _apply_hyperband(self, sweep: Sweep, now: float) -> None:
        if not self.stopper.enabled or now - self._last_hyperband < self.settings.hyperband_every:
            return
        running = {r.id for r in self.view.running() if r.stop_requested is None}
        if not running:
            return
        self._last_hyperband = now
        trials = self._trials(sweep, self._series())  # Hyperband compares a band's value with every run's
        for run_id, why in self.stopper.to_stop(trials).items():
            if run_id in running:
                self.store.request_stop(run_id, why, now=now)
                self.stop_requests += 1

    def _lookahead(self) -> int:
        """Runs to keep queued beyond the workers: none for bayes (its next config waits for results), and none
        while the last ended run failed (a failing sweep must not queue a run it will only cancel)."""
        if self.config.method not in LOOKAHEAD_METHODS:
            return 0
        last = self.view.last_ended()
        if last is not None and last.state in _FAILED:
            return 0
        return self.settings.lookahead

    def _fill_slots(self, sweep: Sweep, now: float) -> int:
        """Queue runs for the free slots (and the look-ahead); returns how many were added."""
        # A run whose process has exited holds no slot while its agent settles its outcome (Agent docstring).
        in_flight = sum(run.exit_code is None for run in self.view.in_flight.values())
        free = self.config.num_workers + self._lookahead() - in_flight
        if free <= 0 or self._exhausted:
            return 0
        histories = self._series() if self.config.method == "bayes" else None  # bayes reads every run's metric
        trials = self._trials(sweep, histories)
        duplicates = added = 0
        while free > 0:
            if sweep.run_cap is not None and len(trials) - len(sweep.prior_runs or []) >= sweep.run_cap:
                return added
            suggestion = self.searcher.suggest(trials)
            if suggestion is None:
                self._exhausted = True
                return added
            try:
                run = self.store.add_run(
                    self.sweep_id,
                    suggestion,
                    queue=self.settings.queue,
                    priority=self.settings.priority,
                    search_info=getattr(self.searcher, "last_info", None),
                    owner=self.owner,
                    now=now,
                )
            except DuplicateConfigError:
                duplicates += 1
                if duplicates >= MAX_DUPLICATE_DRAWS:
                    self._exhausted = True  # every draw repeats a config: the space is used up
                    return added
                continue
            except (RunCapReachedError, SweepInactiveError):
                return added
            except LeaseLostError:
                self._renew_at = -math.inf
                raise ControllerLeaseTaken(f"sweep {self.sweep_id} is driven by another controller") from None
            trials.append(Trial(run.id, run.config, "pending"))
            free -= 1
            added += 1
        return added

    @staticmethod
    def _failures(state: SweepState, why: str, runs: list[Any]) -> tuple[SweepState, str]:
        """Say how many runs failed or crashed, and why the first did; a sweep none of whose runs finished has
        failed (``launch-sweep --wait`` exits 1, a re-launch under its key resumes it after a fix)."""
        bad = [r for r in runs if r.state in _FAILED]
        if not bad or state is not SweepState.FINISHED:
            return state, why
        first = bad[0]
        why += f"; {len(bad)} of {len(runs)} runs failed or crashed (run {first.id}: "
        why += f"{first.stop_reason or first.state})"
        if all(r.state in _FAILED or r.state is RunState.KILLED for r in runs):  # none finished, none in flight
            return SweepState.FAILED, "every run failed or crashed: " + why
        return state, why

    def _metric_note(self, runs: list[Any]) -> str:
        """Say so when no run produced a usable value of the sweep's metric (never logged, or NaN)."""
        metric = self.config.metric
        if metric is None or not runs:
            return ""
        if all(lookup(r.summary, metric.name) is None for r in runs):
            return f"; no run logged the metric {metric.name!r}"
        if all(metric_value(r.summary, metric.name) is None for r in runs):
            return f"; no run logged a finite value of {metric.name!r} (NaN or infinite)"
        return ""

    def _end_reason(self, sweep: Sweep) -> tuple[SweepState, str] | None:
        metric = self.config.metric
        if metric is not None and metric.target is not None:
            # Only runs changed since the last check can have reached it: any other would have ended the sweep.
            for run in sorted(self._unchecked.values(), key=lambda r: r.number):
                value = metric_value(run.summary, metric.name)
                if value is not None and reaches(value, metric.target, metric.goal):
                    return SweepState.FINISHED, f"run {run.id} reached the target {metric.name}={metric.target}"
        self._unchecked.clear()
        if self.view.in_flight:
            return None
        runs = self.view.runs
        cap = sweep.run_cap
        if cap is not None and len(runs) >= cap:
            return SweepState.FINISHED, f"run_cap {cap} reached"
        if self._exhausted:
            if self.config.method == "grid":
                return SweepState.FINISHED, "search space exhausted"
            return SweepState.FINISHED, (
                f"no new configs: every distinct config was run ({len(runs)} runs); sweepflow never repeats a "
                f"config, where W&B's {self.config.method} search would keep proposing repeats"
            )
        return None
