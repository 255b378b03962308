"""A campaign: named stages, each a W&B sweep, wired into a DAG by ``needs``, ``derive`` and ``when``.

The schema is settled here and documented field by field (Prefect's UI renders these descriptions as a form);
what ``derive`` and ``when`` *do* lives with the flows. Validation is structural and total: an unknown stage name,
a cycle, or deriving from a stage that is not in ``needs`` is an error naming the field.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from sweepflow.config.base import ConfigModel
from sweepflow.config.documents import read_document
from sweepflow.config.issues import Problem, problems_error
from sweepflow.config.parameters import Number, iter_leaves
from sweepflow.config.strategies import STRATEGIES, expand, strategy_problems, unknown_strategy
from sweepflow.config.sweep import Method, SweepConfig

StageName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)]
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$")


def check_campaign_key(key: str) -> str:
    """A campaign key names sweeps and a report folder: letters, digits and ``._:@/-``, starting with a letter
    or digit (so ``..`` or ``/etc`` can never point the report outside ``$SWEEPFLOW_HOME/reports``)."""
    if not _KEY.match(key):
        raise ValueError(
            f"campaign key {key!r} must start with a letter or digit and use only letters, digits and ._:@/- "
            "(at most 200 characters)"
        )
    return key


CampaignKey = Annotated[str, AfterValidator(check_campaign_key)]

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class When(ConfigModel):
    """Run a stage only if an upstream stage's best run passes a test, e.g. best `val_acc` > 0.9."""

    stage: str = Field(description="The upstream stage whose results are tested (must be in `needs`).")
    metric: str = Field(description="A summary metric of that stage's runs.")
    comparison: Literal[">", ">=", "<", "<=", "==", "!="] = Field(description="How to compare.")
    value: Number = Field(description="The threshold.")
    of: Literal["best", "mean", "worst"] = Field(
        "best", description="Which value of the stage to test: its best run's (by the stage's goal), or the mean."
    )

    def holds(self, observed: float) -> bool:
        """Whether ``observed`` passes this test."""
        return COMPARISONS[self.comparison](observed, self.value)

    def __str__(self) -> str:
        return f"{self.of} {self.metric} of stage {self.stage} {self.comparison} {self.value}"


class Derive(ConfigModel):
    """How a stage's search space comes from an upstream stage's results (coarse -> fine, arch -> hparams)."""

    from_: str = Field(alias="from", description="The upstream stage to derive from (must be in `needs`).")
    top_k: int = Field(5, ge=1, description="How many of the upstream's best runs shape the new space.")
    narrow: list[str] = Field(
        default_factory=list,
        description="Numeric parameters narrowed to the top-k's range plus a margin (log space for log "
        "distributions), clipped to the upstream range; ints stay ints.",
    )
    margin: float = Field(0.25, ge=0, description="Margin added on each side, as a fraction of the top-k span.")
    keep_seen: list[str] = Field(
        default_factory=list, description="Categorical parameters reduced to the values seen in the top-k."
    )
    fix: list[str] = Field(default_factory=list, description="Parameters fixed to the best run's value.")
    warm_start: int = Field(0, ge=0, description="Carry this many top runs into the new sweep as prior runs.")
    method: Method | None = Field(None, description="Search method of the derived stage (default: upstream's).")
    run_cap: int | None = Field(None, gt=0, description="Run cap of the derived stage.")
    num_workers: int | None = Field(None, gt=0, description="Runs in flight at once in the derived stage.")
    queue: str | None = Field(None, description="Queue of the derived stage.")

    @property
    def named_parameters(self) -> list[tuple[str, str]]:
        """(field, parameter) for every parameter this rule names."""
        return [(f, p) for f in ("narrow", "keep_seen", "fix") for p in getattr(self, f)]


def _load_sweep(value: Any, info: ValidationInfo) -> Any:
    # A stage's sweep may be a path, relative to the pipeline file; read it here so errors point into it.
    # Either way the sweep remembers its folder, so its `program` and `job` resolve wherever it is launched from.
    base_dir = (info.context or {}).get("base_dir")
    if isinstance(value, dict) and base_dir is not None and "source_dir" not in value:
        return {**value, "source_dir": str(Path(base_dir).resolve())}
    if not isinstance(value, str):
        return value
    path = Path(base_dir or ".") / value
    try:
        return {**read_document(path), "source_dir": str(path.resolve().parent)}
    except Exception as exc:  # one readable error, located at the `sweep` field
        raise PydanticCustomError("sweepflow_file", "{reason}", {"reason": str(exc)}) from None


def _known_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise PydanticCustomError("sweepflow_strategy", "{reason}", {"reason": unknown_strategy(name)})
    return name


class WarmStart(ConfigModel):
    """Seed a stage with the best runs of an existing sweep (any stage, any campaign), given its id."""

    sweep: str = Field(description="Id of the sweep whose best runs seed this stage.")
    top_k: int = Field(5, ge=1, description="How many of its best runs to carry (those that fit this space).")


class Stage(ConfigModel):
    """One stage of a campaign: a W&B sweep, when it may start, and how its space is derived."""

    sweep: Annotated[SweepConfig | None, BeforeValidator(_load_sweep, json_schema_input_type=SweepConfig | str)] = (
        Field(
            None,
            description="The stage's sweep config, inline or as a path relative to the pipeline file. May be "
            "omitted when `derive` is given: the upstream's config is the starting point.",
        )
    )
    needs: list[str] = Field(default_factory=list, description="Stages that must finish before this one starts.")
    derive: Derive | None = Field(None, description="Build this stage's space from an upstream's results.")
    when: When | None = Field(None, description="Run this stage only if this test on an upstream passes.")
    warm_start: WarmStart | None = Field(None, description="Seed the stage with an existing sweep's best runs.")
    strategy: Annotated[str, AfterValidator(_known_strategy)] | None = Field(
        None,
        description="A named staged search that replaces this stage's engine and shares its sweep's `run_cap`: "
        + "; ".join(f"`{name}`: {s.summary}" for name, s in STRATEGIES.items())
        + ". The stage becomes `<name>-explore` then `<name>` (see the README, 'Strategies').",
    )


class Pipeline(ConfigModel):
    """A campaign of sweeps run as one DAG."""

    name: StageName = Field(description="Campaign name (lowercase letters, digits, `-`, `_`).")
    description: str | None = Field(None, description="Free text.")
    key: CampaignKey | None = Field(
        None,
        description="Identity of this campaign run: stages with the same key and name are the same sweeps, so "
        "a re-run resumes them. Defaults to `name`.",
    )
    backend: Literal["local", "wandb"] = Field(
        "local",
        description="Where sweeps run: `local`, this machine; `wandb`, W&B sweeps on your W&B server (W&B agents, "
        "or Launch queues for configs with a `job`).",
    )
    project: str | None = Field(None, description="W&B project of every stage (default: the pipeline name).")
    stages: dict[StageName, Stage] = Field(min_length=1, description="The stages, by name.")

    @model_validator(mode="after")
    def _expand_strategies(self) -> Pipeline:
        # Runs before `_is_a_dag` (validators run in the order written), which then checks the expanded stages.
        named = {name: stage for name, stage in self.stages.items() if stage.strategy is not None}
        if not named:
            return self
        problems = [p for name, stage in named.items() for p in strategy_problems(name, stage, set(self.stages))]
        if problems:
            raise problems_error([(["stages", *sub], msg, fix) for sub, msg, fix in problems])
        stages: dict[str, Stage] = {}
        for name, stage in self.stages.items():
            if stage.strategy is None:
                stages[name] = stage
            else:
                stages.update(expand(name, stage, STRATEGIES[stage.strategy]))
        self.stages = stages
        return self

    @model_validator(mode="after")
    def _is_a_dag(self) -> Pipeline:
        problems = self._problems()
        if problems:
            raise problems_error(problems)
        return self

    def _problems(self) -> list[Problem]:
        problems: list[Problem] = []
        names = set(self.stages)
        for name, stage in self.stages.items():
            at = ["stages", name]
            for i, need in enumerate(stage.needs):
                if need not in names:
                    problems.append(([*at[1:], "needs", i], f"names unknown stage {need!r}.", _known(names)))
                elif need == name:
                    problems.append(([*at[1:], "needs", i], "a stage cannot need itself.", None))
            for field, upstream in (
                ("derive", stage.derive and stage.derive.from_),
                ("when", stage.when and stage.when.stage),
            ):
                if not upstream:
                    continue
                sub = [at[1], field, "from" if field == "derive" else "stage"]
                if upstream not in names:
                    problems.append((sub, f"names unknown stage {upstream!r}.", _known(names)))
                elif upstream not in stage.needs:
                    problems.append(
                        (
                            sub,
                            f"uses stage {upstream!r}, which is not in `needs`.",
                            f"add {upstream!r} to `stages.{name}.needs`.",
                        )
                    )
            if stage.sweep is None and stage.derive is None:
                problems.append(([name, "sweep"], "is required (or give `derive`).", "add a sweep config or path."))
        if not problems:
            cycle = self._cycle()
            if cycle:
                problems.append(
                    ([cycle[0], "needs"], f"forms a cycle: {' -> '.join(cycle)}.", "remove one of these `needs`.")
                )
        if not problems:
            problems.extend(self._unknown_parameters())
        return [(["stages", *sub], msg, fix) for sub, msg, fix in problems]

    def _cycle(self) -> list[str] | None:
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done

        def visit(name: str, path: list[str]) -> list[str] | None:
            state[name] = 1
            for need in self.stages[name].needs:
                if state.get(need) == 1:
                    return [*path[path.index(need) :], need] if need in path else [name, need]
                if need not in state and (found := visit(need, [*path, need])):
                    return found
            state[name] = 2
            return None

        for name in self.stages:
            if name not in state and (found := visit(name, [name])):
                return found
        return None

    def _unknown_parameters(self) -> list[Problem]:
        problems: list[Problem] = []
        for name, stage in self.stages.items():
            if stage.derive is None:
                continue
            base = self.base_config(name)
            known = {".".join(path) for path, _ in iter_leaves(base.parameters or {})}
            for field, param in stage.derive.named_parameters:
                if param not in known:
                    problems.append(
                        ([name, "derive", field], f"names unknown parameter {param!r}.", f"use one of {sorted(known)}.")
                    )
        return problems

    def base_config(self, name: str) -> SweepConfig:
        """The config a stage starts from: its own `sweep`, else (recursively) its derive upstream's."""
        stage = self.stages[name]
        if stage.sweep is not None:
            return stage.sweep
        assert stage.derive is not None  # guaranteed by validation
        return self.base_config(stage.derive.from_)

    def levels(self) -> list[list[str]]:
        """Stages grouped so each group depends only on earlier groups (the order flows run them in)."""
        done: set[str] = set()
        levels: list[list[str]] = []
        while len(done) < len(self.stages):
            ready = [n for n, s in self.stages.items() if n not in done and set(s.needs) <= done]
            levels.append(ready)
            done.update(ready)
        return levels

    @property
    def pipeline_key(self) -> str:
        """The identity stage sweeps are keyed on (with the stage name)."""
        return self.key or self.name


def _known(names: set[str]) -> str:
    return f"use one of {sorted(names)}."
