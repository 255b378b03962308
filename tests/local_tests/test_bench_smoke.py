"""The benchmarks, run small, so a change that breaks them fails here rather than at the next measurement.
(They measure; nothing here asserts a timing.)"""

from __future__ import annotations

import json
from pathlib import Path

from tests.benches import BENCH, load_bench


def test_dispatch_bench_runs_a_small_sweep_and_measures_it(tmp_path: Path) -> None:
    result = load_bench("bench_dispatch").main(["--smoke", "--out", str(tmp_path / "dispatch.json")])
    [sweep] = result["sweeps"]
    assert (sweep["final_state"], sweep["runs"]) == ("finished", 3)
    assert sweep["sweepflow_path"] == str(BENCH.parent / "sweepflow")  # it measured this checkout
    assert sweep["exits_seen"] == 3 and sweep["dispatch_exit_to_spawn_ms"]["n"] >= 1
    assert sweep["dispatch_freed_to_started_ms"]["n"] >= 1  # through the agent's event hook
    assert sweep["loop_thread_cpu_s"] > 0 and sweep["rounds"] > 0
    assert (tmp_path / "dispatch.json").is_file()


def test_engine_and_spawn_benches_run(tmp_path: Path) -> None:
    engine = load_bench("bench_engine").main(["--smoke", "--out", str(tmp_path / "engine.json")])
    assert set(engine["suggest"]) == {"random", "bayes"}
    spawn = load_bench("bench_spawn").main(["--smoke", "--out", str(tmp_path / "spawn.json")])
    assert spawn["popen_without_preexec_fn_ms"] > 0


def test_startup_bench_times_a_controller_to_its_first_run(tmp_path: Path) -> None:
    result = load_bench("bench_startup").main(["--smoke", "--out", str(tmp_path / "startup.json")])
    assert result["sweepflow_imported"] == {"after": str(BENCH.parent / "sweepflow")}  # it measured this checkout
    assert result["spawn_to_first_run_started_s"]["after"]["n"] == 1
    assert result["first_config_load_cpu_s"]["after"]["min"] > 0


def test_hyperband_bench_compares_the_same_configs_with_and_without_the_stopper() -> None:
    [seed] = load_bench("bench_hyperband").main(["--smoke"])["seeds"]
    assert seed["same_configs"] and seed["no_stopping"]["epochs"] == 3 * 9
    assert seed["hyperband"]["runs"] == 3 and seed["hyperband"]["epochs"] <= seed["no_stopping"]["epochs"]
    assert seed["hyperband"]["best_val_loss"] >= seed["no_stopping"]["best_val_loss"] > 0


def test_scale_bench_times_single_decision_ticks_and_a_tuned_sweep(tmp_path: Path) -> None:
    result = load_bench("bench_scale").main(["--smoke", "--out", str(tmp_path / "scale.json")])["results"]
    sim, tuned = result["sim-random"]["after"], result["tune-random"]["after"]
    assert set(sim) == {"0", "150"}  # a store prefilled with that many finished runs, per window
    for window in sim.values():  # each measured tick ended one run and queued its replacement
        assert window["sweepflow_path"] == str(BENCH.parent / "sweepflow")  # it measured this checkout
        assert window["tick_ms"]["n"] == 8 and window["suggested_per_tick"]["min"] == 1
        assert window["add_run_ms_per_tick"]["min"] > 0 and window["read_ms_per_tick"]["min"] > 0
    assert sim["150"]["store"]["runs"] > 150 and sim["150"]["store"]["bytes_per_history_row"] > 0
    assert (tuned["state"], tuned["runs"]) == ("finished", 100) and tuned["ticks"] > 0
    assert tuned["store"]["history_rows"] >= 100 and tuned["peak_rss_mb"] > 0
    assert json.loads((tmp_path / "scale.json").read_text())["results"].keys() == {"sim-random", "tune-random"}


def test_search_bench_runs_single_samplers_and_strategies_through_the_pipeline(tmp_path: Path) -> None:
    out = load_bench("bench_search").main(["quality", "--smoke", "--plot", str(tmp_path / "q.png")])
    summary = out["result"]["summary"]
    keys = {f"{p}/{a}" for p in ("branin", "digits") for a in ("wandb-random", "qmc-tpe")}
    assert set(summary) == keys | {"reference"}
    assert all(len(summary[k]["median"]) == 3 and min(summary[k]["median"]) >= 0 for k in keys)
    # digits has no known optimum: regret is against the best value any arm found, so one arm reaches 0
    assert min(summary[f"digits/{a}"]["median"][-1] for a in ("wandb-random", "qmc-tpe")) == 0
    assert (tmp_path / "q.png").stat().st_size > 0


def test_search_report_pools_seeds_filters_arms_and_counts_the_hartmann6_basin(tmp_path: Path) -> None:
    bench = load_bench("bench_search")
    opt = bench.HARTMANN6_MIN

    def saved(path: Path, finals: dict[str, list[float]]) -> Path:
        curves = {f"hartmann6/{arm}": [[opt + 2.0] * 9 + [opt + f] for f in fs] for arm, fs in finals.items()}
        path.write_text(json.dumps({"result": {"curves": curves, "cpu_s": dict.fromkeys(curves, 1.0), "short": {}}}))
        return path

    a = saved(tmp_path / "a.json", {"optuna-gp": [0.01] * 10, "qmc-gp": [0.5] * 10})
    b = saved(tmp_path / "b.json", {"optuna-gp": [0.2] * 20})
    out = bench.main(["report", "--from", str(a), "--from", str(b), "--arms", "optuna-gp"])
    assert list(out["curves"]) == ["hartmann6/optuna-gp"]  # qmc-gp filtered out; the two files' seeds pooled
    row = bench.table(out["summary"], {}, (10,)).splitlines()[2]
    assert row.startswith("| hartmann6 | optuna-gp | 30 (10 < 0.1) |")
    [line] = bench.spread(out["curves"], out["summary"]["reference"]).splitlines()
    low, mid, high = (float(x) for x in line.split(": ")[-1].split(" (")[0].split(" / "))
    assert line.startswith("hartmann6/optuna-gp: median of 10 of its 30 seeds") and low < mid <= high
