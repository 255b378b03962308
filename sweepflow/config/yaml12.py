"""Read YAML numbers the YAML 1.2 way, and refuse YAML that is ambiguous or built to exhaust the reader.

PyYAML implements YAML 1.1, where ``1e-6`` (no dot) is a *string*; the wandb CLI uses PyYAML, so W&B then
rejects ``min: 1e-6``. Users mean a number, and YAML 1.2 agrees. This loader is PyYAML's safe loader with the
YAML 1.2 float rule added; everything else (``yes``/``no`` booleans included) stays as wandb reads it, so a
config means the same here as in W&B except that scientific notation works.

Hardening, because a config file may come from anyone: a key written twice in one mapping is an error naming
both lines (PyYAML silently keeps the last); the document is measured before it is built, so an alias bomb
(a few lines whose anchors expand to millions of values) or nesting deeper than any sweep config needs is
refused in milliseconds with the limit in the message.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: The most values a document may expand to (aliases counted each time they are used), and its deepest nesting.
MAX_VALUES = 100_000
MAX_DEPTH = 50


class YamlLimitError(yaml.MarkedYAMLError):
    """A document refused as ambiguous or too big: ``problem`` says why, ``problem_mark`` where."""


class Yaml12FloatLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, plus YAML 1.2's float syntax (``1e-6``, ``5E3``), refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable: SafeLoader itself reports it below
            if key in seen:
                first = seen[key].line + 1
                raise YamlLimitError(
                    problem=f"the key {key!r} appears twice in one mapping (lines {first} and "
                    f"{key_node.start_mark.line + 1}); keep one",
                    problem_mark=key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


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
    """Parse YAML text with YAML 1.2 numbers. Raises ``yaml.YAMLError`` on malformed, ambiguous or huge input."""
    loader = Yaml12FloatLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlLimitError(problem=f"it is nested far deeper than {MAX_DEPTH} levels") from None
        if node is None:
            return None
        _measure(node, 1, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _measure(node: yaml.Node, depth: int, sizes: dict[int, tuple[int, int]], open_: set[int]) -> tuple[int, int]:
    """(values, height) of ``node`` as it would be built, aliases expanded; refuses past the limits.

    Each node is measured once (``sizes``), so a bomb costs its node count to measure, not its expanded size.
    """
    if id(node) in open_:
        raise YamlLimitError(
            problem="an alias refers to the mapping or list that contains it", problem_mark=node.start_mark
        )
    if id(node) not in sizes:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        open_.add(id(node))
        measured = [_measure(child, depth + 1, sizes, open_) for child in children]
        open_.discard(id(node))
        sizes[id(node)] = (1 + sum(n for n, _ in measured), 1 + max((h for _, h in measured), default=0))
    values, height = sizes[id(node)]
    if depth + height - 1 > MAX_DEPTH:
        raise YamlLimitError(
            problem=f"it is nested more than {MAX_DEPTH} levels deep; no sweep config needs that many",
            problem_mark=node.start_mark,
        )
    if values > MAX_VALUES:
        raise YamlLimitError(
            problem=f"its anchors and aliases expand to more than {MAX_VALUES:,} values (an alias bomb?)",
            problem_mark=node.start_mark,
        )
    return values, height
