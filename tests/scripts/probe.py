"""A W&B training script that reports what it was given and ends the way its config says, for differential tests.

It logs ``argv`` (its command line) and ``types`` (each ``wandb.config`` value's Python type) into its summary,
logs ``{"val": {"acc": ...}}`` rows, then ends by ``mode``: ``finish`` (clean), ``finish_exit_code_1``
(``run.finish(exit_code=1)`` then exit 0), ``finish_then_raise``, ``raise``, ``sigkill`` (kills itself),
``wait_term`` (handles SIGTERM: logs ``handled`` and finishes cleanly) or ``wait`` (Python's default SIGTERM).
``ready`` is printed once the rows are logged, for a test that signals it.
"""

import json
import os
import signal
import sys
import time

import wandb

run = wandb.init(config={"mode": "finish", "own_default": "kept", "rows": 3})
cfg = run.config
run.summary["argv"] = json.dumps(sys.argv[1:])
run.summary["types"] = json.dumps({k: type(v).__name__ for k, v in dict(cfg).items()})
mode = cfg.mode
if mode == "wait_term":

    def on_term(*_):
        wandb.log({"handled": 1})
        run.finish()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
for step in range(int(cfg.rows)):
    wandb.log({"val": {"acc": 0.5 + step / 10}})
print("ready", flush=True)
if mode == "finish":
    run.finish()
elif mode == "finish_exit_code_1":
    run.finish(exit_code=1)
    sys.exit(0)
elif mode == "finish_then_raise":
    run.finish()
    raise RuntimeError("after finish")
elif mode == "raise":
    raise RuntimeError("training blew up")
elif mode == "sigkill":
    time.sleep(1.5)  # let wandb-core flush the rows
    os.kill(os.getpid(), signal.SIGKILL)
elif mode in ("wait", "wait_term"):
    for _ in range(600):
        wandb.log({"waiting": 1})
        time.sleep(0.1)
    run.finish()
