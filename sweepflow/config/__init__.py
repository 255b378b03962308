"""Config models: W&B sweep configs and sweepflow pipeline specs, validated once at the edge."""

from sweepflow.config.files import (
    Checked,
    check_file,
    check_pipeline,
    check_sweep,
    load_pipeline,
    load_sweep_config,
    read_document,
)
from sweepflow.config.parameters import DISTRIBUTIONS, Parameter, iter_leaves
from sweepflow.config.pipeline import Derive, Pipeline, Stage, WarmStart, When
from sweepflow.config.sweep import EngineScheduler, Hyperband, LaunchScheduler, Metric, SweepConfig

__all__ = [
    "DISTRIBUTIONS",
    "Checked",
    "Derive",
    "EngineScheduler",
    "Hyperband",
    "LaunchScheduler",
    "Metric",
    "Parameter",
    "Pipeline",
    "Stage",
    "SweepConfig",
    "WarmStart",
    "When",
    "check_file",
    "check_pipeline",
    "check_sweep",
    "iter_leaves",
    "load_pipeline",
    "load_sweep_config",
    "read_document",
]
