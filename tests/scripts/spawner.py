"""A W&B training script with a worker process of its own (as a dataloader has), for lifecycle tests.

It starts ``sleep 600`` as its child, writes that child's pid to ``pid_file``, and trains until stopped,
handling nothing: Python's defaults, as most scripts have.
"""

import subprocess
import time

import wandb

run = wandb.init(config={"pid_file": "", "steps": 100000})
worker = subprocess.Popen(["sleep", "600"])
with open(run.config.pid_file, "w") as f:
    f.write(str(worker.pid))
for step in range(int(run.config.steps)):
    wandb.log({"loss": 1.0 / (step + 1)})
    time.sleep(0.1)
run.finish()
