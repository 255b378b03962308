"""The demo campaign (``sweepflow demo``): a coarse random stage with Hyperband, then a bayes stage on the
space narrowed around its best runs, training scikit-learn's digits MLP offline.
Run as ``python -m sweepflow.flows.demo``.

With no Prefect server configured (``PREFECT_API_URL`` unset) the demo starts one on 127.0.0.1 for its own use,
tied to its life: Prefect's own temporary server outlives a ``kill -9`` of the process that started it, this one
gets the kernel's parent-death signal. The campaign's sweeps keep running either way (that is the point of a
durable campaign): run the demo again with the same ``--key`` to pick them up.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from sweepflow.local.processes import die_with_parent
from sweepflow.private import private_dir
from sweepflow.settings import Settings
from sweepflow.shipped import demo_spec

SPEC = demo_spec()


@contextmanager
def prefect_server(timeout_s: float = 120.0) -> Iterator[None]:
    """A Prefect server on a free local port for this process's flows, stopped with it (even by ``kill -9``)."""
    if os.environ.get("PREFECT_API_URL"):
        yield  # the user's own server
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    argv, preexec = die_with_parent(command)
    log_dir = private_dir(Settings().home_dir)
    with open(log_dir / "demo-server.log", "ab") as log:
        server = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
            env={**os.environ, "PREFECT_UI_ENABLED": "false"},
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start; see {log_dir / 'demo-server.log'}")
            time.sleep(0.2)
        os.environ["PREFECT_API_URL"] = url
        yield
    finally:
        if "prefect.logging.handlers" in sys.modules:  # send the flow's last logs while the server still listens
            sys.modules["prefect.logging.handlers"].APILogHandler().flush()
        server.send_signal(signal.SIGINT)  # Prefect's server stops cleanly on SIGINT
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sweepflow demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", help="Campaign key; the same key resumes (default: a new one).")
    parser.add_argument("--run-cap", type=int, help="Run cap of each stage, for a quicker demo (default: the spec's).")
    args = parser.parse_args(argv)
    if args.run_cap is not None and args.run_cap < 1:
        parser.error("--run-cap: must be 1 or more")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    key = args.key or f"digits-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"demo campaign {key}: {SPEC}", flush=True)
    with prefect_server():
        from sweepflow.campaign.preflight import load_campaign
        from sweepflow.config.overrides import CampaignOverrides, apply_overrides
        from sweepflow.errors import SweepflowError
        from sweepflow.flows.sweep_pipeline import sweep_pipeline  # once PREFECT_API_URL is set: Prefect reads it

        try:
            spec = apply_overrides(load_campaign(SPEC), CampaignOverrides(run_cap=args.run_cap))
            result = sweep_pipeline(spec, key=key)
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
