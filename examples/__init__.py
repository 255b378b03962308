"""Training scripts written the way W&B users write them, installed as ``sweepflow.examples``.

They are run as programs (``python train_digits.py``), never imported; the package exists so the wheel carries
the demo's training script beside the job registry that names it (``deployments/sweepflow.yaml``).
"""
