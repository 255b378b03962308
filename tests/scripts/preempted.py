"""A training script whose first attempt is preempted, as W&B users mark one (``run.mark_preempting()``, then exit
non-zero); its next attempt, with the same run id and config, finishes."""

import os
import sys

import wandb

run = wandb.init(config={"quality": 1.0, "marker_dir": ""})
marker = os.path.join(run.config.marker_dir, f"attempted-{run.id}")
if not os.path.exists(marker):
    open(marker, "w").close()
    run.mark_preempting()
    wandb.log({"loss": 9.0})
    run.finish(exit_code=1)
    sys.exit(1)
wandb.log({"loss": float(run.config.quality)})
wandb.finish()
