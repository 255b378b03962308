"""A training script as W&B users write them, whose learning curve the test chooses through its config.

``loss`` at epoch e is ``quality * (1 + 1/e)``: a lower ``quality`` is a better run at every epoch, so the test
knows which run Hyperband must stop. ``fail`` exits 1 before logging; ``metric`` renames the logged metric
(so the sweep's metric is never logged); ``nan`` logs NaN.
"""

import math
import signal
import sys
import time

import wandb

run = wandb.init(config={"quality": 1.0, "epochs": 5, "sleep": 0.05, "fail": False, "metric": "loss", "nan": False})
cfg = wandb.config
if cfg.fail:
    print("failing on purpose", file=sys.stderr)
    sys.exit(1)
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(True))
for epoch in range(1, int(cfg.epochs) + 1):
    if stop:
        break
    value = math.nan if cfg.nan else float(cfg.quality) * (1 + 1 / epoch)
    wandb.log({cfg.metric: value, "epoch": epoch})
    time.sleep(float(cfg.sleep))
wandb.finish()
