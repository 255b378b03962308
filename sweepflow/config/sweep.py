"""The W&B sweep config: what ``wandb sweep`` and ``wandb launch-sweep`` accept, as one pydantic model.

A config has two layers. The search layer (method, metric, parameters, early_terminate, run_cap ...) is what
W&B's ``sweeps`` engine validates. The launch layer (``job``, ``queue``, ``launch``, and a Launch-form
``scheduler``) is what ``wandb launch-sweep`` pops off before the engine sees the config. Both live here so a
seed-style config validates unchanged; :meth:`SweepConfig.engine_config` gives the search layer alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from sweepflow.config.base import ConfigModel
from sweepflow.config.issues import Problem, problems_error
from sweepflow.config.parameters import Number, Parameter, ParameterName, iter_leaves, param_loc

Method = Literal["grid", "random", "bayes", "custom"]


def _integer(value: Any) -> int:
    # JSON schema's "integer" (which W&B uses) admits 10.0; normalize it to 10.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("sweepflow_integer", "must be a whole number, got {got}.", {"got": repr(value)})
    return value


Integer = Annotated[int, PlainValidator(_integer), WithJsonSchema({"type": "integer"})]


class Metric(ConfigModel):
    """The metric a sweep optimizes, as logged by the training script with ``wandb.log``."""

    name: str = Field(description="Name of the logged metric, e.g. `val_loss`.")
    goal: Literal["minimize", "maximize"] = Field("minimize", description="Whether lower or higher is better.")
    target: Number | None = Field(None, description="Finish the sweep once a run reaches this value.")
    impute: Literal["latest", "best", "worst"] | None = Field(
        None, description="Value used for runs that fail, crash or are stopped (default: worst)."
    )
    impute_while_running: Literal["latest", "best", "worst", "false"] | None = Field(
        None, description="Impute a value for runs still running (default: false)."
    )


class Hyperband(ConfigModel):
    """Hyperband early termination: stop runs that are behind at each band (``min_iter`` or ``max_iter`` + ``s``)."""

    type: Literal["hyperband"] = Field(description="The only early-termination algorithm W&B has.")
    min_iter: Integer | None = Field(None, ge=1, description="First band, in logged values of the metric.")
    max_iter: Integer | None = Field(None, description="Last band; with `s`, bands are counted back from it.")
    s: Number | None = Field(None, description="Number of bands, counted back from `max_iter`.")
    eta: Number | None = Field(None, gt=1, description="At each band keep the top 1/eta of runs (default 3).")
    strict: bool | None = Field(None, description="Use the original algorithm's stricter rule (default true).")

    @model_validator(mode="after")
    def _bands_defined(self) -> Hyperband:
        if self.min_iter is None and (self.max_iter is None or self.s is None):
            raise problems_error(
                [([], "needs `min_iter`, or both `max_iter` and `s`.", "add `min_iter: 3` (for example).")]
            )
        return self


class LaunchScheduler(BaseModel):
    """The ``scheduler`` block of a Launch sweep (``wandb launch-sweep``): how runs are scheduled, not searched.

    Extra keys are kept (W&B passes them through to the scheduler job) and warned about.
    """

    model_config = ConfigDict(extra="allow")

    num_workers: Integer | None = Field(None, ge=1, description="Runs in flight at once (default 1).")
    job: str | None = Field(None, description="A custom scheduler job; makes `method` default to `custom`.")
    resource: str | None = Field(None, description="Launch resource of the scheduler (local-process, ...).")
    resource_args: dict[str, Any] | None = Field(None, description="Resource arguments of the scheduler.")
    docker_image: str | None = Field(None, description="Image to run the scheduler in.")
    image_uri: str | None = Field(None, description="Image URI of the scheduler.")
    settings: dict[str, Any] | None = Field(
        None, description="Scheduler settings; `settings.method` sets the search method."
    )


class EngineScheduler(ConfigModel):
    """wandb 0.31's engine-style ``scheduler`` block: which optimization engine drives a custom sweep."""

    engine: Literal["wandb", "optuna", "ax"] = Field(description="The optimization engine.")
    source: str | None = Field(None, description="File holding the optimizer and search-space functions.")
    optimizer: str | None = Field(None, description="Function in `source` that builds the optimizer.")
    search_space: str | None = Field(None, description="Function in `source` that defines the search space.")

    @model_validator(mode="after")
    def _needs_source(self) -> EngineScheduler:
        missing = [k for k in ("optimizer", "search_space") if getattr(self, k) and not self.source]
        if missing:
            raise problems_error([(["source"], f"is required when `{missing[0]}` is set.", "add `source`.")])
        return self


LAUNCH_SCHEDULER_KEYS = frozenset(LaunchScheduler.model_fields)
_ENGINES_METHODS = {"wandb": ("grid", "random", "bayes"), "optuna": ("custom",), "ax": ("custom",)}


def scheduler_form(value: Any) -> str:
    """Tell the two ``scheduler`` shapes apart: Launch's (job / num_workers / ...) or the engine form."""
    if isinstance(value, dict) and "engine" not in value and LAUNCH_SCHEDULER_KEYS & set(value):
        return "<launch form>"
    if isinstance(value, LaunchScheduler):
        return "<launch form>"
    return "<engine form>"


Scheduler = Annotated[
    Annotated[LaunchScheduler, Tag("<launch form>")] | Annotated[EngineScheduler, Tag("<engine form>")],
    Discriminator(scheduler_form),
]


class Launch(BaseModel):
    """The ``launch`` block of a Launch sweep: where its runs are queued."""

    model_config = ConfigDict(extra="allow")

    queue: str | None = Field(None, description="The Launch queue the sweep's runs go to.")


class Controller(ConfigModel):
    """W&B's legacy ``controller`` block (local or cloud controller)."""

    type: Literal["local", "cloud"] = Field(description="Where the sweep controller runs.")


class SweepConfig(ConfigModel):
    """A W&B sweep config, including the ``wandb launch-sweep`` keys. Valid here iff W&B would run it."""

    method: Method = Field(
        description="Search method. With a Launch `scheduler`, defaults to `scheduler.settings.method`, or to "
        "`custom` when a scheduler `job` is given."
    )
    parameters: dict[ParameterName, Parameter] | None = Field(
        None, min_length=1, description="The search space: one entry per hyperparameter."
    )
    metric: Metric | None = Field(None, description="The metric to optimize (required by bayes).")
    metrics: list[Metric] | None = Field(
        None, min_length=2, description="Several metrics, for multi-objective custom schedulers."
    )
    early_terminate: Hyperband | None = Field(None, description="Hyperband early termination.")
    run_cap: Integer | None = Field(None, gt=0, description="At most this many runs in the sweep.")
    name: str | None = Field(None, description="Sweep name shown in W&B.")
    description: str | None = Field(None, description="Free text describing the sweep.")
    project: str | None = Field(None, description="W&B project of the sweep.")
    entity: str | None = Field(None, description="W&B entity (user or team) of the sweep.")
    program: str | None = Field(None, description="Training script the agent runs.")
    command: list[Any] | None = Field(None, description="Command line of a run, with W&B's ${...} macros.")
    job: str | None = Field(None, description="Launch job every run executes, e.g. `project/train:latest`.")
    image_uri: str | None = Field(None, description="Image every run executes, instead of a job.")
    queue: str | None = Field(None, description="Launch queue the runs go to (like `--queue`).")
    launch: Launch | None = Field(None, description="Launch settings (`launch.queue`).")
    scheduler: Scheduler | None = Field(
        None,
        description="Launch form: {num_workers, job, resource, settings, ...}; or engine form: {engine, ...}.",
    )
    controller: Controller | None = Field(None, description="Legacy controller selection.")
    apiVersion: str | None = Field(None, description="Config format version (unused).")
    kind: Literal["sweep"] | None = Field(None, description="Always `sweep` when given.")
    seed: Integer | None = Field(
        None,
        ge=0,
        lt=2**32,
        description="Seed of the search (sweepflow's key, never sent to W&B): the same seed and results give "
        "the same sequence of configs, across controller restarts too. Default: drawn at launch and recorded "
        "with the sweep. W&B's Optuna scheduler form may give it as `scheduler.settings.sampler.args.seed`.",
    )
    source_dir: str | None = Field(
        None,
        description="The folder the config was read from: a relative `program` and the local job registry "
        "(`sweepflow.yaml`) are looked up there. Set by the loader; never sent to W&B.",
    )

    @model_validator(mode="before")
    @classmethod
    def _method_from_scheduler(cls, data: Any) -> Any:
        # `wandb launch-sweep` fills a missing method from the Launch scheduler; do the same, before validation.
        if isinstance(data, dict) and "method" not in data and scheduler_form(data.get("scheduler")) == "<launch form>":
            scheduler = data["scheduler"]
            settings = scheduler.get("settings")
            method = settings.get("method") if isinstance(settings, dict) else None
            if method or scheduler.get("job"):
                return {**data, "method": method or "custom"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        problems = self._problems()
        if problems:
            raise problems_error(problems)
        return self

    def _problems(self) -> list[Problem]:
        problems: list[Problem] = []
        engine = self.scheduler if isinstance(self.scheduler, EngineScheduler) else None
        if self.parameters is None and not (engine and engine.search_space):
            problems.append(
                (["parameters"], "is required (unless `scheduler.search_space` is set).", "add a search space.")
            )
        if self.metric and self.metrics:
            problems.append((["metrics"], "cannot be used together with `metric`.", "keep one of the two."))
        elif self.metrics and self.method != "custom":
            problems.append((["metrics"], f"needs `method: custom`, not {self.method}.", "use `metric`."))
        if engine:
            if self.controller and self.controller.type == "local":
                problems.append((["controller"], "`type: local` cannot be used with `scheduler`.", None))
            if self.early_terminate:
                problems.append(
                    (["early_terminate"], "cannot be used with an engine `scheduler`.", "remove one of them.")
                )
            allowed = _ENGINES_METHODS[engine.engine]
            if self.method not in allowed:
                problems.append(
                    (["method"], f"{self.method} is not supported by engine {engine.engine}.", f"use {allowed}.")
                )
        if (
            self.method == "bayes"
            and self.parameters
            and all(p.distribution == "constant" for _, p in iter_leaves(self.parameters))
        ):
            problems.append(
                (["parameters"], "has nothing to search: bayes needs at least one non-constant parameter.", None)
            )
        if self.early_terminate is not None and self.metric is None:
            problems.append(
                (
                    ["early_terminate"],
                    "needs a `metric`: Hyperband compares runs on it (W&B's engine raises 'early terminate requires "
                    '"metric" section\').',
                    "add `metric: {name: ..., goal: minimize}`, or remove `early_terminate`.",
                )
            )
        if self.method == "bayes" and self.metric is None:
            problems.append(
                (["metric"], "is required by `method: bayes`.", "add `metric: {name: ..., goal: minimize}`.")
            )
        if self.method == "bayes" and self.parameters:
            for path, param in iter_leaves(self.parameters):
                if param.spec is not None and not param.spec.bayes_ok:
                    problems.append(
                        (
                            [*param_loc(path), "probabilities"],
                            "cannot be used with `method: bayes` (W&B's bayes engine fails on them).",
                            "remove `probabilities`, or use `method: random`.",
                        )
                    )
        if self.method == "grid" and self.parameters:
            for path, param in iter_leaves(self.parameters):
                spec = param.spec
                if spec is not None and not spec.grid_ok:
                    problems.append(
                        (
                            param_loc(path),
                            f"is a {spec.name} parameter, and grid search needs discrete values.",
                            "list the grid points with `values: [...]`, use `distribution: q_uniform` with a "
                            "step `q`, or use `method: random` / `bayes`.",
                        )
                    )
        return problems

    @property
    def num_workers(self) -> int:
        """Runs in flight at once: `scheduler.num_workers`, default 1 as in W&B."""
        if isinstance(self.scheduler, LaunchScheduler) and self.scheduler.num_workers:
            return self.scheduler.num_workers
        return 1

    @property
    def search_seed(self) -> int | None:
        """The seed the config gives: `seed`, else W&B's Optuna form `scheduler.settings.sampler.args.seed`."""
        if self.seed is not None:
            return self.seed
        if isinstance(self.scheduler, LaunchScheduler) and isinstance(self.scheduler.settings, dict):
            sampler = self.scheduler.settings.get("sampler")
            args = sampler.get("args") if isinstance(sampler, dict) else None
            seed = args.get("seed") if isinstance(args, dict) else None
            if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32:
                return seed
        return None

    @property
    def launch_queue(self) -> str | None:
        """The queue runs go to: top-level `queue`, else `launch.queue`."""
        return self.queue or (self.launch.queue if self.launch else None)

    @property
    def folder(self) -> Path:
        """Where relative paths of this config are looked up: :attr:`source_dir`, else the working directory."""
        return Path(self.source_dir) if self.source_dir else Path.cwd()

    def to_wandb(self) -> dict[str, Any]:
        """The whole config as W&B reads it, with normalized values (numbers are numbers)."""
        out = self.model_dump(
            mode="json", exclude_unset=True, exclude={"parameters", "source_dir", "seed"}, by_alias=True
        )
        if self.parameters is not None:
            out["parameters"] = {k: p.to_wandb() for k, p in self.parameters.items()}
        if "method" not in self.model_fields_set:
            out["method"] = self.method
        return {k: out[k] for k in sorted(out, key=_key_order)}

    def engine_config(self) -> dict[str, Any]:
        """The search layer only: what W&B's `sweeps` engine and ``wandb sweep`` are given."""
        out = self.to_wandb()
        for key in ("job", "queue", "launch"):
            out.pop(key, None)
        if isinstance(self.scheduler, LaunchScheduler):
            out.pop("scheduler")
        return out


_ORDER = list(SweepConfig.model_fields)


def _key_order(key: str) -> int:
    return _ORDER.index(key) if key in _ORDER else len(_ORDER)
