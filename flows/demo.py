"""The demo campaign (``sweepflow demo``): a coarse random stage with Hyperband, then a bayes stage on the
space narrowed around its best runs, training scikit-learn's digits MLP offline. Run as ``python -m flows.demo``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

SPEC = Path(__file__).resolve().parents[1] / "deployments" / "digits-campaign.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sweepflow demo", description=__doc__)
    parser.add_argument("--key", help="Campaign key; the same key resumes (default: a new one).")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    if not SPEC.is_file():
        print(f"error the demo campaign is not at {SPEC}; run the demo from a checkout (pip install -e .).")
        return 1
    from flows.sweep_pipeline import sweep_pipeline  # after the environment above: Prefect reads it on import
    from sweepflow.errors import SweepflowError

    key = args.key or f"digits-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"demo campaign {key}: {SPEC}")
    try:
        result = sweep_pipeline(str(SPEC), key=key)
    except SweepflowError as exc:
        print(f"error {exc}", file=sys.stderr)
        return 1
    for stage in result.stages.values():
        best = f"best {stage.metric} = {stage.best_value:.4g}" if stage.best_value is not None else stage.reason
        print(f"  stage {stage.name}: {stage.state}, {stage.runs} runs, {best} (sweep {stage.sweep_id})")
    if result.best_value is not None:
        print(f"best config (stage {result.best_stage}, {result.best_value:.4g}):")
        for name, value in (result.best_config or {}).items():
            print(f"  {name}: {value}")
    print(f"report: {result.report_dir}/summary.md and campaign.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
