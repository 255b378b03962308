"""How a run ended, in W&B's words: the state W&B gives it, which is also the state W&B's search engine sees.

W&B's code is the specification, and it splits the decision in two:

* **The run records its own ending.** ``wandb.Run.finish(exit_code=...)`` (called by ``wandb.finish()``, by
  wandb's atexit hook with the exit code ``sys.exit`` was given, 1 after an uncaught exception, 255 after
  Ctrl-C: ``wandb/sdk/lib/exit_hooks.py``) writes the exit record (``wandb_internal_pb2.RunExitRecord``).
  W&B's run states read it: *finished* is exit code 0, *failed* any other (``Run.finish``'s docstring;
  the docs' "exit code contract" in sweeps/signal-handling-sweep-runs). So ``run.finish(exit_code=1)`` then
  ``exit 0`` is failed, and ``run.finish()`` then an exception is finished: the process's exit code is not it.
  A run that called ``run.mark_preempting()`` and ended non-zero is *preempted* (W&B requeues it).
* **A run with no exit record crashed**: W&B's server marks it *crashed* when its heartbeats stop (a SIGKILL,
  an OOM kill, Python's default SIGTERM death, which writes no exit record: measured on wandb 0.31).

**Runs the sweep stopped** (Hyperband, ``sweep --cancel``, an agent shut down): W&B's agent sends SIGTERM
(``Agent._command_stop`` -> ``AgentProcess.terminate``) and SIGKILL 30 s later. A script whose SIGTERM handler
finishes the run cleanly records exit code 0 and is *finished*, here as on W&B. Any other ending of a run the
sweep stopped is **killed**, W&B's state for "forcibly stopped before it could finish" (``Run.finish``'s
docstring), with sweepflow's reason in ``stop_reason``. W&B itself would show such a run as killed, crashed or
failed depending on how the script died and on its server; the engine cannot tell those three apart:

* ``sweeps/bayes_search.py`` ``_construct_gp_data`` treats ``failed``, ``crashed`` and ``killed`` alike: their
  metric is *imputed* (``metric.impute``, default ``worst``: the worst value any run reached), never read, and
  only ``finished`` runs contribute their real best value. So an early-stopped run is not a finished run to
  bayes (sweeps PR #59 is a user seeing exactly this on W&B: Hyperband-stopped runs ended crashed/failed and
  were imputed as worst).
* ``sweeps/hyperband_stopping.py`` uses every run's history for its band thresholds whatever its state, and
  stops only ``running`` runs: the state of an ended run does not matter to it.
* Random and grid ignore states.

When a script did not catch SIGTERM, sweepflow sends SIGINT instead to keep its history (see
:mod:`sweepflow.local.runner`); the script may then finish cleanly where W&B's SIGTERM would have killed it,
so a run stopped that way is killed whatever it recorded: the engine sees what it would have seen on W&B.
"""

from __future__ import annotations

import signal

from sweepflow.states import RunState


def end_state(
    *,
    exit_record: int | None,
    process_code: int,
    stopped: bool = False,
    stop_signal: signal.Signals | None = None,
    preempting: bool = False,
) -> RunState:
    """The state of an ended run (see the module docstring).

    ``exit_record`` is the exit code in the run's exit record (None: wandb wrote none), ``process_code`` the
    process's exit code (negative: killed by that signal), ``stopped`` whether the sweep asked it to stop, and
    ``stop_signal`` the first signal it was sent for that.
    """
    clean = exit_record == 0 or (exit_record is None and process_code == 0)  # a script without wandb: its code
    if stopped:
        return RunState.FINISHED if clean and stop_signal != signal.SIGINT else RunState.KILLED
    if clean:
        return RunState.FINISHED
    if exit_record is None:
        # No exit record: a death by signal is W&B's crashed; an error exit before wandb wrote anything failed.
        return RunState.CRASHED if process_code < 0 else RunState.FAILED
    return RunState.PREEMPTED if preempting else RunState.FAILED
