"""Read YAML numbers the YAML 1.2 way.

PyYAML implements YAML 1.1, where ``1e-6`` (no dot) is a *string*; the wandb CLI uses PyYAML, so W&B then
rejects ``min: 1e-6``. Users mean a number, and YAML 1.2 agrees. This loader is PyYAML's safe loader with the
YAML 1.2 float rule added; everything else (``yes``/``no`` booleans included) stays as wandb reads it, so a
config means the same here as in W&B except that scientific notation works.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class Yaml12FloatLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, plus YAML 1.2's float syntax (``1e-6``, ``5E3``)."""


Yaml12FloatLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with YAML 1.2 numbers. Raises ``yaml.YAMLError`` on malformed input."""
    return yaml.load(text, Loader=Yaml12FloatLoader)
