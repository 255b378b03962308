"""The ``parameters`` block of a W&B sweep config: every distribution W&B's sweeps schema knows.

W&B describes each distribution as a JSON-schema branch (``param_uniform``, ``param_qloguniform_v2``, ...) and
accepts a parameter when any branch matches. Here each distribution is one row of :data:`DISTRIBUTIONS` (the keys
it needs and takes, and what its bounds must satisfy), and :class:`Parameter` checks a parameter against its row,
so every error can name the key to change instead of "is not valid under any of the given schemas".
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, StringConstraints, model_validator
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from sweepflow.config.base import ConfigModel
from sweepflow.config.issues import Problem, problems_error


def _number(value: Any) -> int | float:
    # JSON schema's "number": ints and floats, but never booleans (YAML's `yes` is not 1).
    if isinstance(value, bool) or not isinstance(value, int | float):
        got = f"{value!r} ({type(value).__name__})"
        if isinstance(value, str):
            got += "; if it is meant as a number, write it without quotes"
        raise PydanticCustomError("sweepflow_number", "must be a number, got {got}.", {"got": got})
    return value


Number = Annotated[int | float, PlainValidator(_number), WithJsonSchema({"type": "number"})]

# W&B's own pattern for parameter names (sweeps' schema.json, `propertyNames`).
ParameterName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]

DistributionName = Literal[
    "constant",
    "categorical",
    "categorical_w_probabilities",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform",
    "log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
    "q_log_uniform",
    "q_log_uniform_values",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
    "beta",
    "q_beta",
]


@dataclass(frozen=True)
class Distribution:
    """What one distribution needs and allows; a row of W&B's schema, in W&B's own names."""

    name: str
    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    grid_ok: bool = False  # W&B's grid search only enumerates these
    bayes_ok: bool = True  # W&B's bayes engine crashes (IndexError) on categorical_w_probabilities
    positive_min: bool = False  # the *_values forms take real values, so min must be > 0
    exponents: bool = False  # the deprecated forms whose min/max are natural-log exponents


def _row(name: str, required: str = "", optional: str = "", **flags: bool) -> Distribution:
    return Distribution(name, frozenset(required.split()), frozenset(optional.split()), **flags)


DISTRIBUTIONS: dict[str, Distribution] = {
    d.name: d
    for d in (
        _row("constant", "value", grid_ok=True),
        _row("categorical", "values", grid_ok=True),
        _row("categorical_w_probabilities", "values probabilities", bayes_ok=False),
        _row("int_uniform", "min max", grid_ok=True),
        _row("uniform", "min max"),
        _row("q_uniform", "min max", "q", grid_ok=True),
        _row("log_uniform", "min max", exponents=True),
        _row("log_uniform_values", "min max", positive_min=True),
        _row("inv_log_uniform", "min max", exponents=True),
        _row("inv_log_uniform_values", "min max", positive_min=True),
        _row("q_log_uniform", "min max", "q", exponents=True),
        _row("q_log_uniform_values", "min max", "q", positive_min=True),
        _row("normal", "", "mu sigma"),
        _row("q_normal", "", "mu sigma q"),
        _row("log_normal", "", "mu sigma"),
        _row("q_log_normal", "", "mu sigma q"),
        _row("beta", "", "a b"),
        _row("q_beta", "", "a b q"),
    )
}

# The numeric ranges `derive` can narrow: in log space for LOG_SPACE, and for the exponent forms the bounds *are*
# logs (of values); in linear space for the rest.
LOG_SPACE = frozenset({"log_uniform_values", "inv_log_uniform_values", "q_log_uniform_values"})
EXPONENT_FORMS = frozenset(name for name, d in DISTRIBUTIONS.items() if d.exponents)
NARROWABLE = frozenset({"uniform", "int_uniform", "q_uniform"}) | LOG_SPACE | EXPONENT_FORMS

# Lower bounds W&B's schema puts on shape keys, whatever the distribution: (bound, strict).
_KEY_BOUNDS = {"q": (0, True), "sigma": (0, False), "a": (0, False), "b": (0, False)}


def infer_distribution(given: set[str], min_: Any, max_: Any) -> str | None:
    """The distribution W&B infers when a parameter names none (the order of W&B's schema matters here)."""
    if "value" in given:
        return "constant"
    if "values" in given:
        return "categorical_w_probabilities" if "probabilities" in given else "categorical"
    if "min" in given and "max" in given:
        both_ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (min_, max_))
        return "int_uniform" if both_ints else "uniform"
    return None


class Parameter(ConfigModel):
    """One entry of ``parameters``: a constant, a set of values, a distribution, or nested ``parameters``."""

    nullable = frozenset({"value"})

    distribution: DistributionName | None = Field(
        None,
        description="How values are drawn. Inferred when absent: `value` -> constant, `values` -> categorical, "
        "integer `min`/`max` -> int_uniform, otherwise `min`/`max` -> uniform.",
    )
    value: Any = Field(None, description="A constant value for every run.")
    values: list[Any] | None = Field(None, min_length=1, description="The values to choose from.")
    probabilities: list[Number] | None = Field(
        None, min_length=1, description="Probability of each of `values` (same length, sums to 1)."
    )
    min: Number | None = Field(None, description="Lower bound (an exponent for the deprecated log forms).")
    max: Number | None = Field(None, description="Upper bound (an exponent for the deprecated log forms).")
    q: Number | None = Field(None, description="Quantization step of the q_* distributions (> 0, default 1).")
    mu: Number | None = Field(None, description="Mean of the normal / log-normal distributions (default 0).")
    sigma: Number | None = Field(None, description="Std. deviation of the normal distributions (>= 0).")
    a: Number | None = Field(None, description="Alpha of the beta distributions (>= 0, default 1).")
    b: Number | None = Field(None, description="Beta of the beta distributions (>= 0, default 1).")
    parameters: dict[ParameterName, Parameter] | None = Field(
        None, min_length=1, description="Nested parameters: the run's config gets a nested mapping here."
    )

    @model_validator(mode="after")
    def _check_against_distribution(self) -> Parameter:
        problems = self._problems()
        if problems:
            raise problems_error(problems)
        if self.parameters is None and self.distribution is None:
            # Resolve once so nothing downstream re-implements W&B's inference.
            object.__setattr__(self, "distribution", infer_distribution(self.given, self.min, self.max))
        return self

    @property
    def given(self) -> set[str]:
        """The keys the user wrote (``distribution`` excluded)."""
        return set(self.model_fields_set) - {"distribution"}

    @property
    def spec(self) -> Distribution | None:
        """This parameter's row in :data:`DISTRIBUTIONS`; None for nested parameters."""
        return None if self.parameters is not None else DISTRIBUTIONS[self.distribution or ""]

    def _problems(self) -> list[Problem]:
        given = self.given
        if "parameters" in given:
            if given - {"parameters"} or self.distribution:
                extra = sorted((given - {"parameters"}) | ({"distribution"} if self.distribution else set()))
                return [
                    (
                        [],
                        f"has nested `parameters` and also {', '.join(extra)}.",
                        "a nested group takes only `parameters`; move the other keys under it.",
                    )
                ]
            return []
        name = self.distribution or infer_distribution(given, self.min, self.max)
        if name is None:
            return [
                (
                    [],
                    "does not say what to sample" + (f" (it has only {', '.join(sorted(given))})." if given else "."),
                    "give `value`, `values`, `min` and `max`, a `distribution`, or nested `parameters`. "
                    "If these keys are parameters themselves, nest them under `parameters:`.",
                )
            ]
        spec = DISTRIBUTIONS[name]
        problems: list[Problem] = []
        for key in sorted(spec.required - given):
            problems.append(([key], f"is required by distribution {name}.", f"add `{key}`."))
        takes = ", ".join(sorted(spec.required | spec.optional))
        for key in sorted(given - spec.required - spec.optional):
            problems.append(([key], f"is not used by distribution {name} (it takes {takes}).", "remove it."))
        for key, (bound, strict) in _KEY_BOUNDS.items():
            value = getattr(self, key)
            if value is not None and (value <= bound if strict else value < bound):
                problems.append(([key], f"{value} must be {'>' if strict else '>='} {bound}.", None))
        problems.extend(self._bound_problems(spec))
        return problems

    def _bound_problems(self, spec: Distribution) -> list[Problem]:
        problems: list[Problem] = []
        lo, hi = self.min, self.max
        for key, value in (("min", lo), ("max", hi), ("mu", self.mu), ("sigma", self.sigma), ("q", self.q)):
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(([key], f"{value} is not a finite number.", f"give `{key}` a finite bound."))
        if problems:
            return problems
        if spec.name == "int_uniform":
            for key, value in (("min", lo), ("max", hi)):
                if value is not None and not isinstance(value, int):
                    problems.append(
                        (
                            [key],
                            f"{value} is not a whole number, and int_uniform draws integers.",
                            f"write {int(value) if float(value).is_integer() else round(value)}, "
                            "or use `distribution: uniform`.",
                        )
                    )
        if spec.positive_min and lo is not None and lo <= 0:
            problems.append(
                (["min"], f"{lo} must be > 0: {spec.name} samples on a log scale.", "use a positive lower bound.")
            )
        if lo is not None and hi is not None and not lo < hi:
            problems.append((["max"], f"min {lo} is not less than max {hi}.", "make `min` smaller than `max`."))
        if self.probabilities is not None and self.values is not None:
            if len(self.probabilities) != len(self.values):
                problems.append(
                    (
                        ["probabilities"],
                        f"has {len(self.probabilities)} entries but `values` has {len(self.values)}.",
                        "give one probability per value.",
                    )
                )
            if any(p < 0 for p in self.probabilities):
                problems.append((["probabilities"], "has a negative entry.", None))
            elif not math.isclose(sum(self.probabilities), 1.0, rel_tol=1e-5, abs_tol=1e-8):
                problems.append(
                    (["probabilities"], f"sums to {sum(self.probabilities):g}, not 1.", "rescale them to sum to 1.")
                )
        return problems

    def leaves(self, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Parameter]]:
        """Every non-nested parameter under this one, with its key path."""
        if self.parameters is None:
            yield path, self
            return
        for key, child in self.parameters.items():
            yield from child.leaves((*path, key))

    def to_wandb(self) -> dict[str, Any]:
        """The parameter as W&B reads it: only the keys the user wrote, with normalized values."""
        if self.parameters is not None:
            return {"parameters": {k: p.to_wandb() for k, p in self.parameters.items()}}
        return self.model_dump(include=set(self.model_fields_set), mode="json")


def iter_leaves(parameters: dict[str, Parameter]) -> Iterator[tuple[tuple[str, ...], Parameter]]:
    """Every leaf parameter of a ``parameters`` block, depth first, with its key path."""
    for key, parameter in parameters.items():
        yield from parameter.leaves((key,))


def param_loc(path: tuple[str, ...]) -> list[str]:
    """Where a leaf parameter sits in the user's file: ``("optim", "lr")`` -> parameters.optim.parameters.lr."""
    loc: list[str] = ["parameters"]
    for i, key in enumerate(path):
        loc += [key] if i == 0 else ["parameters", key]
    return loc
