"""Safe YAML for every file a user hands us (configs, sweeps, template sets).

- No object construction (`yaml.SafeLoader`).
- YAML 1.2 scalars: only true / false are booleans (YAML 1.1 also reads `no`, `off`, `yes`, `on`, so
  `feature_cache: off` would arrive as False), and `1e-4` is a float (YAML 1.1 wants `1.0e-4`).
- A key given twice in one mapping is an error naming both lines (YAML says keys are unique; PyYAML keeps the
  last silently, so a second `train:` section would replace the first). Merge keys (`<<`) may still be
  overridden.
- Anchors and aliases are kept shared while parsing, but what a document *means* is its expansion: a few lines
  of nested aliases can stand for billions of values, which validation or a dump would then build. A document
  that expands to more than `MAX_NODES` values is refused.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_NODES = 100_000  # values in the expanded document (our largest config, a paper sweep, has under 1,000)


class YAMLError(ValueError):
    """A YAML document we refuse (duplicate keys, runaway alias expansion)."""


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (lines {first[key]} and {line})", key_node.start_mark
                )
            first[key] = line
        return super().construct_mapping(node, deep)


_REPLACED = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """The document in `text`; raises yaml.YAMLError (bad syntax, duplicate keys) or YAMLError (too large)."""
    data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    size = expanded_size(data)
    if size > MAX_NODES:
        raise YAMLError(f"the document expands to {size:,} values (more than {MAX_NODES:,}): nested aliases?")
    return data


def expanded_size(data: Any) -> int:
    """How many values `data` stands for with every shared (aliased) part counted each time it is used; linear
    in the distinct objects, so a billion-laughs document is measured without being expanded."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: Any) -> int:
        if isinstance(node, dict):
            children = [*node.keys(), *node.values()]
        elif isinstance(node, list):
            children = node
        else:
            return 1
        if id(node) in open_:
            raise YAMLError("the document refers to itself (a recursive alias)")
        if id(node) not in sizes:
            open_.add(id(node))
            sizes[id(node)] = 1 + sum(size(child) for child in children)
            open_.discard(id(node))
        return sizes[id(node)]

    return size(data)
