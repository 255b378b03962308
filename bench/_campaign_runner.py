"""A campaign as the pipeline flow runs one, without Prefect: launch each stage under its key, then wait on it the
way ``tasks/wait_for_sweep.py`` does (keep it driven, poll its status with the same backoff: 0.5 s, growing 1.5x
to ``MAX_POLL_S`` while nothing changes). ``bench_faults.py`` kills this process and runs it again with the same
arguments, as a user re-runs a killed flow with the same key.

Usage: ``python _campaign_runner.py CAMPAIGN STAGE_CONFIG.yaml...`` (the environment carries ``SWEEPFLOW_*``).
"""

from __future__ import annotations

import os
import sys
import time

from sweepflow.backends import TransientBackendError
from sweepflow.backends.local import LocalBackend
from sweepflow.config import load_sweep_config

POLL_S = float(os.environ.get("BENCH_POLL_S", "0.5"))  # wait_for_sweep's poll_s
MAX_POLL_S = float(os.environ.get("BENCH_MAX_POLL_S", "2.0"))  # wait_for_sweep's max_poll_s


def main(campaign: str, paths: list[str]) -> None:
    backend = LocalBackend()
    for number, path in enumerate(paths):
        handle = backend.launch(load_sweep_config(path), key=f"{campaign}/stage{number}")
        last, delay = None, POLL_S
        while True:
            try:
                backend.ensure_driven(handle.id)
                status = backend.status(handle.id)
            except TransientBackendError:  # the store was busy: poll again, as the task's retries would
                time.sleep(POLL_S)
                continue
            if status.done:
                break
            seen = (status.state, status.ended)
            last, delay = (seen, POLL_S) if seen != last else (last, min(MAX_POLL_S, delay * 1.5))
            time.sleep(delay)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
