"""What every asset factory shares: upstream keys, the usual asset options, code versions."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import linecache
import re
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


# how deep `_value_text` looks into containers and objects' attributes
_VALUE_DEPTH = 3
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def callable_source(function: Callable, _depth: int = 0) -> str:
    """What a callable does, as text that is the same in every process: its source (or, with
    no source, its import path and code), with what it closes over and its defaults; for a
    `functools.partial` its function and arguments; for a callable object its class's source
    and its attributes. Never a memory address.

    A lambda's source is the lambda alone, not the line around it, so that two lambdas on one
    line get their own description and code version.

    >>> pair = [lambda row: row["x"] > 1, lambda row: row["x"] > 2]
    >>> [callable_source(f) for f in pair]
    ['lambda row: row["x"] > 1', 'lambda row: row["x"] > 2']
    >>> callable_source(functools.partial(int, base=2))
    'functools.partial(builtins.int, base=2)'
    >>> import operator
    >>> callable_source(operator.itemgetter("x")).endswith(" operator.itemgetter('x')")
    True
    """
    if isinstance(function, functools.partial):
        arguments = [_value_text(a, _depth + 1) for a in function.args]
        arguments += [f"{k}={_value_text(v, _depth + 1)}" for k, v in function.keywords.items()]
        inner = callable_source(function.func, _depth + 1)
        return f"functools.partial({', '.join([inner, *arguments])})"
    if inspect.ismethod(function):
        owner = _value_text(function.__self__, _depth + 1)
        return f"{_function_source(function.__func__, _depth)} bound to {owner}"
    if inspect.isfunction(function):
        return _function_source(function, _depth)
    if inspect.isbuiltin(function) or inspect.isclass(function):
        return _plain_source(function)
    # a callable object: what its class does, with the state it does it with (its
    # attributes; for an object without any, such as operator.itemgetter, its repr)
    state = _attributes_text(function, _depth + 1) if hasattr(function, "__dict__") else None
    return f"{_plain_source(type(function))}{state or ' ' + _ADDRESS.sub('', repr(function))}"


def _function_source(function: Callable, depth: int) -> str:
    """A Python function's source (a lambda's own text), plus the values of its defaults and
    closure cells when it has any (a closure made in a loop has one source per value)."""
    text = None
    if function.__name__ == "<lambda>":
        text = _lambda_source(function)
    text = text if text is not None else _plain_source(function)
    extras = {
        "defaults": function.__defaults__,
        "kwdefaults": function.__kwdefaults__,
        "closure": tuple(_cell_value(cell) for cell in function.__closure__ or ()),
    }
    shown = {k: _value_text(v, depth + 1) for k, v in extras.items() if v}
    return text + "".join(f"\n# {k}: {v}" for k, v in shown.items())


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a cell not filled yet
        return None


def _plain_source(function: Any) -> str:
    """`inspect.getsource`, or with no source (exec'd code, builtins) the import path and
    the code object, constants included."""
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        name = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', '')}"
        return name + (_code_text(code) if code is not None else "")


def _code_text(code: Any) -> str:
    """A code object's bytecode, constants (nested code objects recursively) and names."""
    # `_value_text`, not repr: a frozenset constant (`x in {"a", "b"}`) is sorted
    constants = [_code_text(c) if inspect.iscode(c) else _value_text(c) for c in code.co_consts]
    return " ".join([code.co_code.hex(), repr(constants), repr(code.co_names),
                     repr(code.co_varnames)])  # fmt: skip


def _value_text(value: Any, depth: int = 0) -> str:
    """A value as text that is the same in every process: plain values by `repr`, containers
    item by item, callables by `callable_source`, other objects by type and attributes, down
    to `_VALUE_DEPTH` levels (below that, the type alone)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if inspect.ismodule(value):
        return f"<module {value.__name__}>"
    if depth >= _VALUE_DEPTH:
        return f"<{_type_name(value)}>"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}({', '.join(_value_text(v, depth + 1) for v in value)})"
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}({sorted(_value_text(v, depth + 1) for v in value)})"
    if isinstance(value, Mapping):
        items = sorted(f"{_value_text(k, depth + 1)}: {_value_text(v, depth + 1)}"
                       for k, v in value.items())  # fmt: skip
        return f"{_type_name(value)}({', '.join(items)})"
    if inspect.iscode(value):
        return _code_text(value)
    if callable(value) and not isinstance(value, type):
        return callable_source(value, depth)
    if hasattr(value, "__dict__"):
        return f"{_type_name(value)}{_attributes_text(value, depth)}"
    return _ADDRESS.sub("", repr(value))


def _attributes_text(value: Any, depth: int) -> str:
    attributes = getattr(value, "__dict__", None)
    return f"({_value_text(dict(attributes), depth)})" if attributes else ""


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def code_version(op: str, arguments: Mapping[str, Any], *functions: Callable) -> str:
    """A code version from an op's name, its arguments and its functions' source.

    Changing the function or an argument changes it, which marks the asset stale in the UI.

    >>> code_version("repeat", {"num_times": 2}) == code_version("repeat", {"num_times": 3})
    False
    """
    digest = hashlib.sha256(op.encode())
    digest.update(json.dumps(arguments, sort_keys=True, default=_value_text).encode())
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
