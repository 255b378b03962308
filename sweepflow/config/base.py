"""The base of every config model: unknown keys are errors, and so is an explicit ``null``.

W&B's schema types every key (``min: null`` is not a number), while a pydantic field defaulting to ``None`` would
quietly accept ``null``; so a key the user wrote as ``null`` is refused here, unless the model lists it in
``nullable`` (a constant parameter's ``value: null`` is legal in W&B).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from sweepflow.config.issues import problems_error


class ConfigModel(BaseModel):
    """Strict config model: extra keys forbidden, explicit nulls refused except for ``nullable`` fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _no_explicit_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [k for k, v in data.items() if v is None and k in cls.model_fields and k not in cls.nullable]
            if nulls:
                raise problems_error([([k], "is null; give it a value or remove the key.", None) for k in nulls])
        return data
