"""Screenshots of what a person sees in Prefect's UI, for docs/ (not a test: CI has no Chromium).

Starts a real `prefect server` (127.0.0.1, a fresh PREFECT_HOME and SWEEPFLOW_HOME), runs the documented set-up
(work pool, `prefect deploy --all`, the zombie automation, `prefect block register -m sweepflow`), a process
worker, then one `tune/manual` run created over REST with the "Custom run" form's null-filled payload. When it
completes, headless Chromium (Debian's `chromium`) photographs the flow run page (task runs and artifacts on
its graph), the campaign summary artifact with its embedded plot, a stage's all-runs table and a stage summary.
Everything it started is stopped with SIGINT at the end.

    apt-get install -y chromium
    .venv/bin/python bench/screenshots.py --out docs/screenshots
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest(api: str, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        api + path, data=None if body is None else json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def shoot(chromium: str, url: str, out: Path, size: str, profile: Path) -> None:
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
         "--virtual-time-budget=20000", f"--screenshot={out}", url],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB) <- {url}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--pipeline", default="deployments/digits-refresh.yaml")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("error: no chromium on PATH; apt-get install -y chromium", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="sweepflow-shots-"))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(base / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1",
           "SWEEPFLOW_HOME": str(base / "sweepflow"), "PWD": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}  # fmt: skip
    started: list[subprocess.Popen] = []
    try:
        log = open(base / "server.log", "wb")  # noqa: SIM115  kept open for the server's lifetime
        started.append(subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))  # fmt: skip
        for _ in range(240):
            try:
                urllib.request.urlopen(api + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        for step in (("work-pool", "create", "sweepflow", "--type", "process"), ("--no-prompt", "deploy", "--all"),
                     ("automation", "create", "--from-file", "deployments/automations.yaml"),
                     ("block", "register", "-m", "sweepflow")):  # fmt: skip
            subprocess.run([*PREFECT, *step], env=env, cwd=ROOT, check=True, capture_output=True, timeout=180)
        worker_log = open(base / "worker.log", "wb")  # noqa: SIM115
        started.append(subprocess.Popen([*PREFECT, "worker", "start", "--pool", "sweepflow"], env=env,
                                        stdout=worker_log, stderr=subprocess.STDOUT, cwd=ROOT))  # fmt: skip
        [manual] = rest(api, "POST", "/deployments/filter", {"deployments": {"name": {"any_": ["manual"]}}})
        form = {"run_cap": 6, "num_workers": None, "backend": None, "queue": None, "stages": None}
        run = rest(api, "POST", f"/deployments/{manual['id']}/create_flow_run",
                   {"parameters": {"pipeline": args.pipeline, "key": None, "overrides": form}})  # fmt: skip
        deadline = time.time() + 900
        while (state := rest(api, "GET", f"/flow_runs/{run['id']}")["state_type"]) not in (
            "COMPLETED", "FAILED", "CRASHED", "CANCELLED"
        ):  # fmt: skip
            if time.time() > deadline:
                raise SystemExit("the run did not finish in 15 minutes")
            time.sleep(2)
        if state != "COMPLETED":
            raise SystemExit(f"the run ended {state}; see {base}/worker.log")
        artifacts = rest(api, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
        by_key = {a["key"]: a for a in artifacts if a.get("key")}
        campaign = next(a for k, a in by_key.items() if k.endswith("-campaign"))
        runs = next(a for k, a in by_key.items() if k.endswith("-coarse-runs"))
        summary = next(a for k, a in by_key.items() if k.endswith("-fine-summary"))
        args.out.mkdir(parents=True, exist_ok=True)
        ui = f"http://127.0.0.1:{port}"
        profile = base / "chromium"
        shoot(chromium, f"{ui}/runs/flow-run/{run['id']}", args.out / "flow-run.png", "1400,900", profile)
        shoot(chromium, f"{ui}/artifacts/artifact/{campaign['id']}", args.out / "campaign-artifact.png",
              "1400,1900", profile)  # fmt: skip
        shoot(chromium, f"{ui}/artifacts/artifact/{runs['id']}", args.out / "runs-table.png", "1400,900", profile)
        shoot(chromium, f"{ui}/artifacts/artifact/{summary['id']}", args.out / "stage-summary.png", "1400,1300",
              profile)  # fmt: skip
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
