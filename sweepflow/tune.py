"""Tune a Python function with a W&B sweep config, or a whole pipeline of them: the same controller, store,
engines and stage planning as the flows, no process per run and no Prefect.

The objective takes a run's config and returns the metric (a number, or a dict of logged values), or is a
generator that yields one value (or dict) per epoch, so Hyperband or an Optuna pruner can stop it between two
yields. Runs go through the store exactly as a script's do (queued, claimed, history rows, summary, states), so
``sweepflow runs`` and the campaign code read them the same way, and a sweep seed gives the same configs here and
under the subprocess agents.

>>> def loss(config):
...     return (config["x"] - 0.3) ** 2
>>> result = tune({"method": "random", "metric": {"name": "loss"}, "run_cap": 5,
...                "parameters": {"x": {"min": 0.0, "max": 1.0}}}, loss, seed=1)
>>> len(result.runs), result.state
(5, 'finished')
"""

from __future__ import annotations

import inspect
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepflow.backends.local import run_record
from sweepflow.campaign.analysis import runs_frame
from sweepflow.campaign.plan import Outcome, Skip, plan_stage
from sweepflow.campaign.results import CampaignResult, StageResult, stage_result
from sweepflow.config import Pipeline, SweepConfig, load_pipeline, load_sweep_config
from sweepflow.errors import SweepflowError
from sweepflow.local.controller import Controller, ControllerSettings
from sweepflow.local.search import engine_problems
from sweepflow.ranking import best
from sweepflow.states import SweepState
from sweepflow.store import Run, Store, get_store

Value = float | int | Mapping[str, Any]
Objective = Callable[[dict[str, Any]], Value | Iterator[Value]]

__all__ = ["Objective", "TuneResult", "tune", "tune_pipeline"]


@dataclass
class TuneResult:
    """How a tuned sweep ended, its runs (in order) and the best one."""

    sweep_id: str
    state: str
    reason: str | None
    runs: list[Run]
    best_config: dict[str, Any] | None
    best_value: float | None
    store: Store


@dataclass
class _Active:
    run: Run
    item_id: int
    steps: Iterator[Value]
    summary: dict[str, Any]
    step: int = 0


def _row(value: Value, metric: str | None) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SweepflowError(f"the objective returned {value!r}; return a number or a dict of logged values.")
    if metric is None:
        raise SweepflowError("the objective returned a bare number, but the config has no `metric` to name it.")
    return {metric: value}


def _steps(objective: Objective, config: dict[str, Any]) -> Iterator[Value]:
    out = objective(config)
    if inspect.isgenerator(out) or isinstance(out, Iterator):
        yield from out
    else:
        yield out  # type: ignore[misc]


def tune(
    config: SweepConfig | Mapping[str, Any] | str | Path,
    objective: Objective,
    *,
    store: Store | str | None = "sqlite://",
    seed: int | None = None,
    key: str | None = None,
    project: str = "sweepflow",
    prior_runs: list[dict[str, Any]] | None = None,
    lease_ttl: float = 600.0,
) -> TuneResult:
    """Run the sweep ``config`` against ``objective`` in this process until it ends (run_cap, grid exhausted,
    metric target, failures), and return its runs.

    Args:
        config: a sweep config (model, mapping or YAML path); ``program`` / ``job`` are not needed.
        objective: config -> value, or a generator of per-epoch values; raising marks the run failed.
        store: where runs are kept; the default is an in-memory store, a URL or :class:`Store` keeps them.
        seed: the sweep seed (else the config's ``seed``, else a random one, recorded with the sweep).
        key: get-or-create key; with a persistent store, calling again with the same key resumes the sweep.
        prior_runs: warm-start runs (``{config, summary}``) of an earlier stage.

    Raises:
        SweepflowError: the engine the config asks for is not installed, or the objective returned nonsense.
    """
    cfg = (
        config
        if isinstance(config, SweepConfig)
        else load_sweep_config(dict(config) if isinstance(config, Mapping) else config)
    )
    problems = engine_problems(cfg)
    if problems:
        raise SweepflowError("cannot tune this sweep: " + "; ".join(map(str, problems)))
    st = get_store(store)
    stored = cfg.to_wandb()
    chosen = seed if seed is not None else cfg.search_seed
    stored["seed"] = chosen if chosen is not None else secrets.randbits(32)
    sweep, _ = st.create_sweep(key, cfg.project or project, stored, run_cap=cfg.run_cap, prior_runs=prior_runs)
    queue = f"python-{sweep.id}"  # its own queue: a shared store's other sweeps never run in this process
    st.ensure_queue(queue)
    controller = Controller(
        st, sweep.id, settings=ControllerSettings(queue=queue, lease_ttl=lease_ttl, hyperband_every=0)
    )
    metric = cfg.metric.name if cfg.metric else None
    agent = st.register_agent(queue, max_jobs=cfg.num_workers, sweep_id=sweep.id).id
    active: dict[int, _Active] = {}
    try:
        while True:
            alive = controller.tick()
            while alive and len(active) < cfg.num_workers:
                claim = st.claim_next(queue, agent, lease_ttl=lease_ttl)
                if claim is None:
                    break
                run = st.mark_run_started(claim.run.id, agent, item_id=claim.item.id)
                if run is not None:
                    steps = _steps(objective, dict(claim.run.config))
                    active[claim.item.id] = _Active(claim.run, claim.item.id, steps, {})
            if not active:
                if not alive:
                    break
                continue
            # One step of every run in flight, then a heartbeat that carries the controller's stop requests:
            # runs advance side by side, as parallel workers would, so a stopper compares them at each band.
            for a in list(active.values()):
                _advance(st, a, metric, active)
            beat = st.heartbeat(agent, list(active), ttl=lease_ttl)
            for item_id, reason in beat.stop.items():
                a = active.pop(item_id)
                _close(a.steps)
                st.mark_run_finished(a.run.id, "killed", summary=a.summary, stop_reason=reason, item_id=item_id)
    finally:
        for a in active.values():
            _close(a.steps)
            st.mark_run_finished(a.run.id, "failed", stop_reason="tune() was interrupted", item_id=a.item_id)
        st.deregister_agent(agent)
        controller.release()
    final = st.get_sweep(sweep.id)
    assert final is not None
    runs = st.runs(sweep.id)
    found = best(runs, cfg.metric, state=lambda r: r.state, summary=lambda r: r.summary) if cfg.metric else None
    return TuneResult(
        sweep_id=sweep.id,
        state=str(final.state),
        reason=final.state_reason,
        runs=runs,
        best_config=found[0].config if found else None,
        best_value=found[1] if found else None,
        store=st,
    )


def tune_pipeline(
    pipeline: Pipeline | Mapping[str, Any] | str | Path,
    objective: Objective,
    *,
    store: Store | str | None = "sqlite://",
    seed: int | None = None,
    key: str | None = None,
) -> CampaignResult:
    """Run a whole pipeline spec against ``objective``: every stage is planned as the campaign flow plans it
    (``needs``, ``when``, ``derive``, ``warm_start``), then tuned in this process with :func:`tune`.

    Args:
        pipeline: the spec (model, mapping or YAML path); stage sweeps need no ``program`` / ``job``.
        objective: as for :func:`tune`, shared by every stage.
        store: where the stages' sweeps are kept (default: in memory); with a persistent store and the same key,
            a second call resumes the stages' sweeps.
        seed: stage ``i`` (in the order the stages run) gets sweep seed ``seed + i``, so a pipeline run repeats.
        key: the campaign's identity (default: the spec's key or name); stage sweeps are keyed ``<key>/<stage>``.
    """
    spec = (
        pipeline
        if isinstance(pipeline, Pipeline)
        else load_pipeline(dict(pipeline) if isinstance(pipeline, Mapping) else pipeline)
    )
    st = get_store(store)
    key = key or spec.pipeline_key
    result, done = CampaignResult(pipeline=spec.name, key=key), {}

    def runs_of(sweep_id: str) -> Any:
        return runs_frame([run_record(run) for run in st.runs(sweep_id)])

    order = [name for level in spec.levels() for name in level]
    for index, name in enumerate(order):
        decided = plan_stage(spec, name, done, runs_of)
        if isinstance(decided, Skip):
            skipped = StageResult(name=name, state="skipped", reason=decided.reason)
            result.stages[name], done[name] = skipped, Outcome(skipped, runs_frame([], stage=name), None)
            continue
        tuned = tune(
            decided.config,
            objective,
            store=st,
            seed=None if seed is None else seed + index,
            key=f"{key}/{name}",
            prior_runs=[prior.model_dump(mode="json") for prior in decided.prior_runs] or None,
        )
        frame = runs_frame([run_record(run) for run in tuned.runs], stage=name)
        metric = decided.config.metric
        stage = stage_result(name, tuned.sweep_id, SweepState(tuned.state), tuned.reason, frame, metric)
        result.stages[name], done[name] = stage, Outcome(stage, frame, metric)
    result.pick_best()
    return result


def _advance(st: Store, a: _Active, metric: str | None, active: dict[int, _Active]) -> None:
    try:
        value = next(a.steps)
    except StopIteration:
        active.pop(a.item_id)
        st.mark_run_finished(a.run.id, "finished", exit_code=0, summary=a.summary, item_id=a.item_id)
        return
    except Exception as exc:  # the user's code failed: the run failed, the sweep goes on (W&B's behaviour)
        active.pop(a.item_id)
        why = f"{type(exc).__name__}: {exc}"
        st.mark_run_finished(a.run.id, "failed", exit_code=1, summary=a.summary, stop_reason=why, item_id=a.item_id)
        return
    row = _row(value, metric)
    a.summary.update(row)  # W&B's summary: the last logged value of each key
    st.append_history(
        a.run.id, [{**row, "_step": a.step, "_timestamp": time.time()}], summary=a.summary, item_id=a.item_id
    )
    a.step += 1


def _close(steps: Iterator[Value]) -> None:
    close = getattr(steps, "close", None)
    if callable(close):
        close()
