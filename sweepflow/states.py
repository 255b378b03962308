"""Run and sweep states: W&B's own vocabulary, defined once for the store, both backends, the CLI and the flows.

Run states are those of W&B's runs and of its search engine (``sweeps.RunState``): a run the sweep stopped early
(Hyperband) or that a cancel killed is ``killed``, with sweepflow's reason beside it in ``stop_reason``, unless
its own SIGTERM handler finished it cleanly (then ``finished``, as W&B records it; see ``local/outcome.py``). Sweep
states are those ``wandb sweep`` sets (``--stop`` ends in ``finished``, ``--cancel`` in ``canceled``, W&B's
spelling), written in lower case like the run states.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    PENDING = "pending"  # queued, not started
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CRASHED = "crashed"
    KILLED = "killed"
    PREEMPTED = "preempted"

    @property
    def is_terminal(self) -> bool:
        return self not in (RunState.PENDING, RunState.RUNNING)

    @property
    def in_flight(self) -> bool:
        return not self.is_terminal


class SweepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELED = "canceled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (SweepState.FINISHED, SweepState.CANCELED, SweepState.FAILED)

    @property
    def is_active(self) -> bool:
        """A sweep whose runs may be added and claimed (a paused one keeps its queue but hands nothing out)."""
        return self in (SweepState.PENDING, SweepState.RUNNING)


#: A crashed or preempted run may be queued again (same id, same config, a new attempt).
REQUEUEABLE = frozenset({RunState.CRASHED, RunState.PREEMPTED})
