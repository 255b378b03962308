"""W&B's engine fed lean (the metric's min / max / last instead of whole histories) proposes exactly what the
unmodified engine proposes from whole histories, seeded alike; and a sweep seed fixes the whole sequence."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from sweepflow.config import load_sweep_config
from sweepflow.local.search import SweepsSearcher, Trial, derived_seed, searcher_for
from sweepflow.store import get_store
from tests.wandb_oracle import engine_process


@pytest.fixture(scope="module")
def engine():
    """W&B's unmodified engine, in a process of its own (see ``engine_next_run``)."""
    with engine_process() as next_run:
        yield next_run


STATES = ["finished"] * 6 + ["failed", "crashed", "killed", "running", "pending"]


def _history(rng: random.Random, n: int, base: float) -> list[dict]:
    # A smooth objective (so the GP fits, rather than falling back to a random point) plus per-step noise.
    rows = []
    for step in range(n):
        row: dict = {"_step": step, "lr": rng.random(), "other": "text"}
        roll = rng.random()
        if roll < 0.8:
            row["loss"] = base + rng.uniform(0.0, 0.5) + 1.0 / (step + 1)
        elif roll < 0.85:
            row["loss"] = math.nan
        elif roll < 0.88:
            row["loss"] = "diverged"
        rows.append(row)
    return rows


def _trials(rng: random.Random, n: int, rows: int) -> list[Trial]:
    out = []
    for i in range(n):
        config = {"x": rng.uniform(-5, 10), "y": rng.uniform(0, 15), "opt": rng.choice(["adam", "sgd"])}
        base = (config["x"] - 2) ** 2 / 10 + (config["y"] - 7) ** 2 / 20 + (config["opt"] == "sgd")
        history = _history(rng, rng.randint(0, rows), base)
        summary = {"lr": 0.1}
        if history and rng.random() < 0.9:
            summary["loss"] = history[-1].get("loss", rng.random())
        out.append(Trial(f"r{i}", config, rng.choice(STATES), summary, history))
    return out


@pytest.mark.parametrize(
    ("goal", "impute", "while_running", "runs", "fits"),
    [
        ("minimize", None, None, 30, False),
        ("maximize", "latest", "best", 30, True),
        ("minimize", "best", "latest", 25, True),
        ("minimize", "worst", "worst", 130, False),  # above 100 runs bayes fits on a resample
    ],
)
def test_lean_bayes_suggests_exactly_what_whole_histories_give(engine, goal, impute, while_running, runs, fits) -> None:
    # Where the GP fits, the suggestion depends on every imputed value (where it does not, bayes proposes a
    # random point and only the config handling is compared).
    metric = {"name": "loss", "goal": goal}
    if impute:
        metric["impute"] = impute
    if while_running:
        metric["impute_while_running"] = while_running
    config = load_sweep_config(
        {
            "method": "bayes",
            "metric": metric,
            "parameters": {
                "x": {"min": -5.0, "max": 10.0},
                "y": {"min": 0.0, "max": 15.0},
                "opt": {"values": ["adam", "sgd"]},
            },
        }
    )
    rng = random.Random(runs)
    trials = _trials(rng, runs, 40)
    searcher = SweepsSearcher(config, seed=11)
    for _ in range(2):  # the second call reuses cached runs
        _assert_as_unmodified(engine, searcher, config, trials)
        if fits:
            assert "random sample" not in (searcher.last_info or {}).get("warnings", ""), "the GP must fit"
        trials = [*trials[:-1], Trial(trials[-1].id, trials[-1].config, "finished", {"loss": 0.0})]
    # The engine was given at most three rows per run, and only the metric.
    lean = searcher.engine_runs(trials)
    assert all(len(r.history) <= 3 and set(r.summary_metrics) <= {"loss"} for r in lean)


def _assert_as_unmodified(engine, searcher: SweepsSearcher, config, trials: list[Trial]) -> dict:
    """The searcher's next suggestion and search info are the unmodified engine's, given whole histories."""
    ours = searcher.suggest(trials)
    n, attempt = searcher._last_draw
    theirs, info = engine(config.engine_config(), trials, derived_seed(searcher.seed, n, attempt))
    assert ours == theirs
    # json.dumps: the info holds NaN (no prediction without a fit), which == would never match
    assert json.dumps(searcher.last_info) == json.dumps(info)
    return ours


def test_lean_bayes_is_the_engine_over_every_parameter_kind_at_400_runs_with_long_histories(engine) -> None:
    # The point (400 prior runs, long histories) over nested, categorical, log, int, q and constant
    # parameters, then a few suggestions in sequence with running / failed / new runs in between.
    parameters = {
        "x": {"min": -5.0, "max": 10.0},
        "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
        "n": {"distribution": "int_uniform", "min": 1, "max": 9},
        "q": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25},
        "opt": {"values": ["adam", "sgd", "rms"]},
        "c": {"value": 3},
        "net": {"parameters": {"width": {"values": [8, 16, 32]}, "drop": {"min": 0.0, "max": 0.5}}},
    }
    metric = {"name": "loss", "goal": "maximize", "impute": "latest", "impute_while_running": "worst"}
    config = load_sweep_config({"method": "bayes", "metric": metric, "parameters": parameters})
    rng = random.Random(400)

    def draw() -> dict:
        return {
            "x": rng.uniform(-5, 10),
            "lr": 10 ** rng.uniform(-5, -1),
            "n": rng.randint(1, 9),
            "q": rng.choice([0, 0.25, 0.5, 1.0]),
            "opt": rng.choice(["adam", "sgd", "rms"]),
            "c": 3,
            "net": {"width": rng.choice([8, 16, 32]), "drop": rng.uniform(0, 0.5)},
        }

    def loss(c: dict) -> float:
        return -((c["x"] - 2) ** 2) / 10 - (c["opt"] == "sgd") - c["net"]["drop"] - abs(math.log10(c["lr"]) + 3)

    trials = []
    for i in range(400):
        c = draw()
        history = _history(rng, rng.randint(0, 300), loss(c))
        state = rng.choice(STATES) if i % 4 == 0 else "finished"
        summary = {"loss": history[-1].get("loss", 0.0)} if history else {}
        trials.append(Trial(f"r{i}", c, state, summary, history))
    searcher = SweepsSearcher(config, seed=7)
    for step in range(3):
        c = _assert_as_unmodified(engine, searcher, config, trials)
        assert "random sample" not in (searcher.last_info or {}).get("warnings", ""), "the GP must fit"
        trials.append(Trial(f"s{step}", c, ["running", "failed", "finished"][step], {"loss": loss(c)}, [{"loss": 0}]))


@pytest.mark.parametrize("runs", [0, 1, 2])
def test_lean_bayes_is_the_engine_before_there_are_two_points_to_fit(engine, runs: int) -> None:
    config = load_sweep_config(
        {"method": "bayes", "metric": {"name": "loss"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    )
    trials = [Trial(str(i), {"x": i / 3}, "finished", {"loss": float(i)}) for i in range(runs)]
    _assert_as_unmodified(engine, SweepsSearcher(config, seed=1), config, trials)


def test_random_draws_exactly_what_the_engine_draws_from_the_space_validated_once(engine) -> None:
    # The searcher validates the space once and samples it as sweeps' random search does on every call; every
    # kind of parameter (nested ones and constants included), over many suggestions and retries, must match.
    config = load_sweep_config(
        {
            "method": "random",
            "parameters": {
                "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
                "x": {"min": -1.0, "max": 1.0},
                "n": {"distribution": "int_uniform", "min": 1, "max": 9},
                "q": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25},
                "g": {"distribution": "normal", "mu": 0, "sigma": 2},
                "opt": {"values": ["adam", "sgd"], "probabilities": [0.3, 0.7]},
                "act": {"values": ["relu", "tanh"]},
                "const": {"value": 7},
                "net": {"parameters": {"width": {"values": [8, 16]}, "drop": {"min": 0.0, "max": 0.5}}},
            },
        }
    )
    searcher = SweepsSearcher(config, seed=3)
    trials: list[Trial] = []
    for i in range(60):
        ours = searcher.suggest(trials)
        n, attempt = searcher._last_draw
        assert ours == engine(config.engine_config(), trials, derived_seed(3, n, attempt))[0]
        assert ours["const"] == 7 and set(ours["net"]) == {"width", "drop"}
        if i % 5 != 4:  # every fifth draw is asked again, as after a duplicate the store refused
            trials.append(Trial(str(i), ours, "finished"))


@pytest.mark.parametrize(
    "spec",
    [
        {"min": -1.0, "max": 1.0},
        {"distribution": "uniform", "min": 0, "max": 3},
        {"min": 1e-9, "max": 123.456},
        {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
        {"distribution": "log_uniform_values", "min": 3, "max": 4096},
        {"distribution": "int_uniform", "min": 1, "max": 9},
        {"distribution": "int_uniform", "min": -7, "max": 1000},
        {"distribution": "int_uniform", "min": 5, "max": 6},
        {"values": ["relu", "tanh", "gelu"]},
        {"values": list(range(97))},
    ],
)
def test_fast_ppf_is_the_engines_ppf_value_for_value(spec: dict) -> None:
    # fast_ppf repeats scipy's arithmetic without its call overhead; it must give the very values (and types, once
    # plain JSON) the engine's ppf gives: at random points and where an integer bin starts or ends (k / n, one
    # float step either side), where a rounding slip would show.
    from sweeps.params import HyperParameterSet

    from sweepflow.local.search._base import to_json
    from sweepflow.local.search._sweeps import fast_ppf

    config = load_sweep_config({"method": "random", "parameters": {"p": spec}})
    (param,) = HyperParameterSet.from_config(config.engine_config()["parameters"])
    fast = fast_ppf(param)
    assert fast is not None
    rng = random.Random(0)
    points = [rng.random() for _ in range(500)] + [5e-324, 1e-17, 0.5, 1 - 2**-53]
    if "values" in spec or spec.get("distribution") == "int_uniform":  # n integer bins of width 1 / n
        n = len(spec["values"]) if "values" in spec else spec["max"] - spec["min"] + 1
        for k in rng.sample(range(1, n), min(n - 1, 60)):
            points += [math.nextafter(k / n, 0.0), k / n, math.nextafter(k / n, 1.0)]
    for q in points:
        ours, theirs = to_json(fast(q)), to_json(param.ppf(q))
        assert (ours, type(ours)) == (theirs, type(theirs)), q


def _sequence(config: dict, seed: int, n: int, restart_at: int | None = None) -> list[dict]:
    cfg = load_sweep_config(config)
    searcher = searcher_for(cfg, seed)
    trials: list[Trial] = []
    for i in range(n):
        if i == restart_at:
            searcher = searcher_for(cfg, seed)  # a new controller, rebuilt from the store
        suggestion = searcher.suggest(trials)
        loss = (suggestion["x"] - 0.3) ** 2
        trials.append(Trial(str(i), suggestion, "finished", {"loss": loss}, [{"loss": loss}]))
    return [t.config for t in trials]


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_a_seed_fixes_the_sequence_across_restarts_and_leaves_global_rngs_alone(method: str) -> None:
    config = {"method": method, "metric": {"name": "loss"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    np.random.seed(5)
    random.seed(5)
    before = (np.random.random(), random.random())
    np.random.seed(5)
    random.seed(5)
    first = _sequence(config, 42, 8)
    assert (np.random.random(), random.random()) == before
    assert _sequence(config, 42, 8, restart_at=5) == first
    assert _sequence(config, 43, 8) != first


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_another_thread_drawing_from_the_global_rngs_does_not_move_the_sequence(
    monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    # A Prefect or wandb worker thread drawing from `random` / `np.random` (retry jitter, ids) can run between a
    # suggestion's seeding and its draws. Here every seeding of the global RNGs is followed by such a draw.
    config = {"method": method, "metric": {"name": "loss"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    expected = _sequence(config, 42, 8)
    py_seed, np_seed = random.seed, np.random.seed

    def py_seed_then_draw(*args, **kwargs):
        py_seed(*args, **kwargs)
        random.random()

    def np_seed_then_draw(*args, **kwargs):
        np_seed(*args, **kwargs)
        np.random.random()

    monkeypatch.setattr(random, "seed", py_seed_then_draw)
    monkeypatch.setattr(np.random, "seed", np_seed_then_draw)
    assert _sequence(config, 42, 8) == expected


def test_metric_series_reads_one_column_of_the_histories() -> None:
    store = get_store("sqlite://")
    sweep, _ = store.create_sweep(None, "p", {"method": "random"})
    a = store.add_run(sweep.id, {"x": 1}, queue="q")
    b = store.add_run(sweep.id, {"x": 2}, queue="q")
    store.append_history(
        a.id,
        [
            {"_step": 0, "loss": 1.5},
            {"_step": 1, "acc": 3},
            {"_step": 2, "loss": math.nan},  # not strict JSON: decoded in Python
            {"_step": 3, "loss": 2, "val.loss": 5},
            {"_step": 4, "note": '"loss"'},  # the name inside another value is not the key
        ],
    )
    store.append_history(b.id, [{"_step": 0, "val.loss": 1.0}])
    series = store.metric_series(sweep.id, "loss")
    assert list(series) == [a.id] and series[a.id][0] == 1.5 and math.isnan(series[a.id][1]) and series[a.id][2] == 2
    assert store.metric_series(sweep.id, "val.loss") == {a.id: [5], b.id: [1.0]}
