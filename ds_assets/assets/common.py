"""What every asset factory shares: upstream keys, the usual asset options, code versions."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import linecache
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagster import AssetKey, AssetsDefinition, AssetSpec, DagsterInvalidDefinitionError

Upstream = AssetKey | AssetsDefinition | AssetSpec | str | Sequence[str]

# The options of `@asset` every factory passes through unchanged.
ASSET_OPTIONS = (
    "key_prefix",
    "group_name",
    "description",
    "tags",
    "owners",
    "partitions_def",
    "automation_condition",
    "metadata",
)


def upstream_key(upstream: Upstream) -> AssetKey:
    """The asset key of an upstream given as a key, a definition, a spec, a string or parts.

    >>> upstream_key("raw/reviews").path
    ['raw', 'reviews']
    """
    if isinstance(upstream, AssetKey):
        return upstream
    if isinstance(upstream, AssetSpec):
        return upstream.key
    if isinstance(upstream, AssetsDefinition):
        keys = list(upstream.keys)
        if len(keys) != 1:
            names = sorted(k.to_user_string() for k in keys)
            raise DagsterInvalidDefinitionError(
                f"upstream {upstream.node_def.name} defines {len(keys)} assets {names}; "
                "pass the AssetKey of the one to use"
            )
        return keys[0]
    if isinstance(upstream, str):
        return AssetKey.from_user_string(upstream)
    if isinstance(upstream, Sequence) and all(isinstance(p, str) for p in upstream):
        return AssetKey(list(upstream))
    raise DagsterInvalidDefinitionError(
        f"upstream {upstream!r}: expected an AssetKey, AssetsDefinition, AssetSpec, "
        "'a/b' string or list of key parts"
    )


def input_name(key: AssetKey, taken: set[str] | None = None) -> str:
    """A valid, unique Python identifier for an input loading `key`."""
    base = "__".join(key.path).replace("-", "_").replace(".", "_")
    name, number = base, 1
    while taken is not None and name in taken:
        number += 1
        name = f"{base}_{number}"
    if taken is not None:
        taken.add(name)
    return name


def split_options(options: Mapping[str, Any], factory: str) -> dict[str, Any]:
    """Keep the `@asset` options; anything else is a mistake worth naming."""
    unknown = sorted(set(options) - set(ASSET_OPTIONS))
    if unknown:
        raise DagsterInvalidDefinitionError(
            f"{factory}() got unknown options {unknown}; asset options are {list(ASSET_OPTIONS)}"
        )
    return {key: value for key, value in options.items() if value is not None}


def key_prefix_parts(key_prefix: str | Sequence[str] | None) -> list[str]:
    """`key_prefix` as `@asset` takes it (a string, parts, or None) as a list of parts.

    >>> key_prefix_parts("team"), key_prefix_parts(["a", "b"]), key_prefix_parts(None)
    (['team'], ['a', 'b'], [])
    """
    if not key_prefix:
        return []
    return [key_prefix] if isinstance(key_prefix, str) else list(key_prefix)


def callable_source(function: Callable) -> str:
    """The source of a callable, or its import path and bytecode when there is no source.

    A lambda's source is the lambda alone, not the line around it, so that two lambdas on one
    line get their own description and code version.

    >>> pair = [lambda row: row["x"] > 1, lambda row: row["x"] > 2]
    >>> [callable_source(f) for f in pair]
    ['lambda row: row["x"] > 1', 'lambda row: row["x"] > 2']
    """
    if getattr(function, "__name__", None) == "<lambda>":
        text = _lambda_source(function)
        if text is not None:
            return text
    return _plain_source(function)


def _plain_source(function: Callable) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        name = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', '')}"
        return name + (code.co_code.hex() if code is not None else repr(function))


def code_version(op: str, arguments: Mapping[str, Any], *functions: Callable) -> str:
    """A code version from an op's name, its arguments and its functions' source.

    Changing the function or an argument changes it, which marks the asset stale in the UI.

    >>> code_version("repeat", {"num_times": 2}) == code_version("repeat", {"num_times": 3})
    False
    """
    digest = hashlib.sha256(op.encode())
    digest.update(json.dumps(arguments, sort_keys=True, default=repr).encode())
    for function in functions:
        digest.update(callable_source(function).encode())
    return digest.hexdigest()[:16]


def describe(op: str, arguments: Mapping[str, Any], function: Callable | None = None) -> str:
    """The asset description: which op, on what, with which parameters."""
    parts = [f"`{op}`"]
    if function is not None:
        name = getattr(function, "__qualname__", repr(function))
        lambda_text = _lambda_text(function) if name.endswith("<lambda>") else None
        parts.append(f"of `{lambda_text or name}`")
    shown = {k: v for k, v in arguments.items() if v is not None}
    if shown:
        parts.append("with " + ", ".join(f"{k}={v!r}" for k, v in shown.items()))
    return " ".join(parts)


def _lambda_source(function: Callable) -> str | None:
    """The text of this very lambda: among the lambdas of its first line in its file, the one
    whose body spans what its code's positions say (None when that cannot be told)."""
    code = getattr(function, "__code__", None)
    try:
        source = "".join(linecache.getlines(inspect.getsourcefile(function) or ""))
        tree = _parsed(source)
    except (OSError, TypeError, SyntaxError, ValueError):
        return None
    if code is None or tree is None:
        return None
    positions = set(code.co_positions())
    matches = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Lambda)
        and node.lineno == code.co_firstlineno
        and (node.body.lineno, node.body.end_lineno, node.body.col_offset,
             node.body.end_col_offset) in positions
    ]  # fmt: skip
    return ast.get_source_segment(source, matches[0]) if len(matches) == 1 else None


@functools.lru_cache(maxsize=32)
def _parsed(source: str) -> ast.Module | None:
    return ast.parse(source) if source else None


def _lambda_text(function: Callable) -> str:
    exact = _lambda_source(function)
    if exact is not None:
        return " ".join(exact.split())
    source = _plain_source(function).strip()
    start = source.find("lambda")
    return source[start:].rstrip(",)") if start >= 0 else None
