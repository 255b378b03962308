"""A stage's sweep config as W&B is sent it and stores it: which mode runs it, its name (the stage's identity),
what W&B cannot run, and W&B's own normalisation, so a relaunch compares like with like. No network, no key:
``sweepflow validate`` and a campaign's preflight use it too."""

from __future__ import annotations

from typing import Any, Literal

from sweepflow.config import SweepConfig
from sweepflow.errors import Issue

Mode = Literal["agents", "launch"]

#: The prefix of a stage's sweep name on W&B: ``sweepflow:<pipeline key>/<stage>``.
NAME_PREFIX = "sweepflow:"
#: Keys sweepflow reads and W&B does not (never sent).
_LOCAL_ONLY = ("source_dir", "seed")


def mode_of(config: SweepConfig, queue: str | None = None) -> Mode:
    """Launch when the runs are a Launch job or image; otherwise W&B agents run the ``program``."""
    return "launch" if (config.job or config.image_uri) else "agents"


def check_wandb(config: SweepConfig, queue: str | None = None) -> list[Issue]:
    """What stops W&B from running ``config`` the way sweepflow would launch it (no network, no key needed), so
    ``sweepflow validate`` and a campaign's preflight can tell before any sweep exists."""
    if mode_of(config) == "launch":
        if queue or config.launch_queue:
            return []
        return [
            Issue(
                "queue",
                "a Launch sweep needs a run queue.",
                "add `queue: <name>` (or `launch: {queue: <name>}`), as `wandb launch-sweep --queue` takes it.",
            )
        ]
    problems = []
    if not (config.program or config.command):
        problems.append(
            Issue(
                "program",
                "is missing: W&B agents run a training script.",
                "give it (`program: train.py`), or a Launch `job:` and `queue:` for a Launch sweep.",
            )
        )
    if config.method == "custom":
        problems.append(
            Issue(
                "method",
                "'custom' needs a Launch scheduler job.",
                "use grid, random or bayes, or give `job:` and `scheduler.job:` for a Launch sweep.",
            )
        )
    return problems


def as_stored(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as W&B stores it: ``wandb sweep`` fills a top-level ``min``/``max`` parameter's missing
    distribution (``int_uniform`` for two ints, else ``uniform``), so a relaunch compares like with like."""
    params = {}
    for name, param in (config.get("parameters") or {}).items():
        if isinstance(param, dict) and "min" in param and "max" in param and "distribution" not in param:
            ints = all(isinstance(param[k], int) and not isinstance(param[k], bool) for k in ("min", "max"))
            param = {**param, "distribution": "int_uniform" if ints else "uniform"}
        params[name] = param
    return {**config, "parameters": params} if params else config


def sweep_name(key: str) -> str:
    return NAME_PREFIX + key


def wandb_config(config: SweepConfig, key: str | None) -> dict[str, Any]:
    """The config W&B is sent: sweepflow's own keys left out, and named for the stage's ``key``."""
    out = {k: v for k, v in config.to_wandb().items() if k not in _LOCAL_ONLY}
    if key is not None:
        out["name"] = sweep_name(key)
    return out
