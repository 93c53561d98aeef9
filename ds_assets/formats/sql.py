"""Rows of a SQL query or table as a `datasets.Dataset` (or `IterableDataset`), batch by batch.

What does the work:

- SQLAlchemy Core: connections, bound parameters (`:name` placeholders on every dialect, never
  string formatting), identifier quoting, table reflection (names are checked against the
  database before anything is read), server-side cursors (`stream_results=True`: a named
  cursor on psycopg2, an unbuffered `SSCursor` on pymysql), so memory is bounded by one batch
  of `batch_size` rows, and each type's result processing (SQLite dates, MySQL BIT...), which
  is applied column by column to batches fetched from the DB-API cursor: no `Row` object is
  made per row, which makes reading about a third faster.
- pyarrow turns each batch into typed Arrow arrays; `datasets` gives the `Features` (`Json` for
  JSON columns) and encodes values for non-`Value` features given by the caller (`ClassLabel`,
  `Image`, ...); `ds_assets.formats.output.to_dataset` writes or streams the tables.

What is ours: the mapping from column types to `Features` (from the reflected table, or from the
cursor description of a query on PostgreSQL and MySQL/MariaDB), inference from the first batch
where the database does not say (SQLite queries, unknown types), error messages naming the
source, column and row of a value that does not fit, the `(low, high]` row ranges that sensors
use to read new rows exactly once (`new_row_ranges`), and stopping a MySQL unbuffered read early
without reading the rest of the result (`KILL QUERY`).

Column types map to these features: integers to `int8`..`int64` (unsigned MySQL integers to
`uint*`, SQLite integers to `int64`), floats to `float32`/`float64`, decimals to
`decimal128(p, s)` (`decimal256` above 38 digits, string above 76), text, enums and UUIDs to
`string`, bytes to `binary`, booleans to `bool` (MySQL's `BOOLEAN` is `TINYINT(1)`: `int8`;
`BIT(1)` is `bool`, wider `BIT(n)` `uint64`), dates to `date32`, timestamps to `timestamp[us]`
and, with a time zone, to `timestamp[us, tz=UTC]`, times to `time64[us]` (PostgreSQL's `timetz`
to its ISO text, `"10:00:00+02:00"`: `time64` has no offset; MySQL's TIME, a duration of up to
838 hours either side of zero, to `duration[us]`), intervals to `duration[us]`, JSON to `Json()`,
PostgreSQL arrays to `List`. NULL is a missing value in any of them. MariaDB's JSON is a
LONGTEXT, so it reads as `string`; MySQL's TIMESTAMP comes in the session's time zone without
one, so it reads as `timestamp[us]`. Other types are inferred from the values of the first batch.

A value that does not fit its column's feature (2.5 in a column of integers, a 40-digit number
in a `decimal128`, a nested array in a `List` of strings, an object with no text form such as a
PostgreSQL range in a `string` column) is an error naming the column and row: it is never
rounded, truncated or stored as its Python repr. What the drivers themselves convert stays
converted: psycopg2 reads the dates `infinity` and `-infinity` as `datetime.max` and
`datetime.min`, an interval of months as 30 days each, and `time '24:00'` as midnight; cast such
columns in the SQL (`::text`) where that matters.

The password of the engine's URL never appears in messages: they show
`engine.url.render_as_string(hide_password=True)`.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import math
import re
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from datasets import Dataset, Features, IterableDataset, Json, List, Value
from datasets.features.features import encode_nested_example, require_storage_cast
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection, CursorResult, Engine

from ds_assets.formats import json_text
from ds_assets.formats.output import to_dataset

__all__ = [
    "RowRange",
    "features_of",
    "from_query",
    "from_table",
    "highest_cursor_value",
    "new_row_ranges",
]

Prepare = Callable[[Any], Any]


@dataclass(frozen=True)
class RowRange:
    """The rows whose cursor column is above `low` (no lower bound if None) and at most `high`."""

    low: Any
    high: Any
    num_rows: int


def from_query(
    engine: Engine | str,
    sql: str | sa.sql.Executable,
    params: Mapping[str, Any] | None = None,
    streaming: bool = False,
    batch_size: int = 10_000,
    *,
    features: Features | Mapping[str, Any] | None = None,
) -> Dataset | IterableDataset:
    """The rows of a query: `sql` is SQL text with `:name` placeholders whose values are
    `params` (bound by the driver, never formatted into the text), or a SQLAlchemy statement.

    Column features come from the database's column types where the driver reports them
    (PostgreSQL, MySQL/MariaDB), else from the values of the first batch; `features` (some or
    all columns) overrides them. The map-style result runs the query once; a stream runs it
    once to learn the features (reading one batch) and again on every pass.

    >>> import sqlalchemy as sa
    >>> engine = sa.create_engine("sqlite://")
    >>> with engine.begin() as connection:
    ...     _ = connection.execute(sa.text("CREATE TABLE users (id INTEGER, name TEXT)"))
    ...     _ = connection.execute(sa.text("INSERT INTO users VALUES (1, 'ada'), (2, 'alan')"))
    >>> dataset = from_query(engine, "SELECT * FROM users WHERE name = :name", {"name": "ada"})
    >>> dataset.to_dict(), dataset.features["id"]
    ({'id': [1], 'name': ['ada']}, Value('int64'))
    """
    engine = _engine(engine)
    source = _Source(
        engine,
        _statement(sql),
        _params(params),
        _batch_size(batch_size),
        f"query at {_safe_url(engine)}",
        None,
    )
    return _read(source, _overrides(features), streaming)


def from_table(
    engine: Engine | str,
    table: str,
    columns: Sequence[str] | None = None,
    where: str | sa.ColumnElement[bool] | None = None,
    schema: str | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    between: tuple[str, Any, Any] | None = None,
    order_by: str | None = None,
    streaming: bool = False,
    batch_size: int = 10_000,
    features: Features | Mapping[str, Any] | None = None,
) -> Dataset | IterableDataset:
    """The rows of `table` (in `schema`): all columns or `columns`, in that order.

    Table, schema and column names are checked against the database's reflected table (an
    unknown name is an error naming it) and quoted by the dialect. `where` is a SQL fragment of
    trusted code with `:name` placeholders bound to `params`; `between=(column, low, high)` keeps
    the rows with `low < column <= high` (a None bound is no bound); `order_by` sorts by a column.
    Features come from the column types; `features` overrides some or all of them.

    >>> import sqlalchemy as sa
    >>> engine = sa.create_engine("sqlite://")
    >>> with engine.begin() as connection:
    ...     _ = connection.execute(sa.text("CREATE TABLE events (id INTEGER, kind VARCHAR(8))"))
    ...     _ = connection.execute(sa.text("INSERT INTO events VALUES (1, 'a'), (3, 'a')"))
    >>> from_table(engine, "events", where="kind = :kind", params={"kind": "a"},
    ...            between=("id", 1, 3), order_by="id").to_dict()
    {'id': [3], 'kind': ['a']}
    >>> from_table(engine, "events; DROP TABLE events")
    Traceback (most recent call last):
    ...
    LookupError: table 'events; DROP TABLE events' not found in sqlite://
    """
    engine = _engine(engine)
    with engine.connect() as connection:
        types = _reflect(connection, table, schema)
    label = _table_label(engine, table, schema)
    names = _selected(columns, types, label)
    relation = _relation(table, schema, types)
    # the values come untyped: their result processing is applied per column, batch by batch
    statement = sa.select(*[sa.type_coerce(relation.c[name], sa.types.NULLTYPE).label(name)
                            for name in names])  # fmt: skip
    if where is not None:
        statement = statement.where(_where(where, params, label))
    elif params:
        raise ValueError(f"{label}: params {sorted(params)} given without a where fragment")
    if between is not None:
        statement = statement.where(*_between(relation, types, between, label))
    if order_by is not None:
        statement = statement.order_by(relation.c[_known_column(order_by, types, label)])
    dialect = engine.dialect.name
    specs = [
        _ColumnSpec(
            name,
            _processed(_read_type(types[name]), dialect),
            *_feature_of_type(types[name], dialect),
        )
        for name in names
    ]
    source = _Source(engine, statement, {}, _batch_size(batch_size), label, specs)
    return _read(source, _overrides(features), streaming)


def features_of(
    engine: Engine | str,
    table: str | None = None,
    *,
    query: str | sa.sql.Executable | None = None,
    params: Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    schema: str | None = None,
    features: Features | Mapping[str, Any] | None = None,
) -> Features:
    """The `Features` that `from_table(engine, table, ...)` or `from_query(engine, query, ...)`
    gives. A table's come from reflection alone, unless a column's type is unknown to the
    mapping; a query's need its first batch.

    >>> import sqlalchemy as sa
    >>> engine = sa.create_engine("sqlite://")
    >>> with engine.begin() as connection:
    ...     _ = connection.execute(sa.text("CREATE TABLE t (x REAL, at DATETIME, doc JSON)"))
    >>> features_of(engine, "t")
    {'x': Value('float64'), 'at': Value('timestamp[us]'), 'doc': Json(decode=True)}
    >>> features_of(engine, query="SELECT 1 AS one, 'a' AS letter")
    {'one': Value('int64'), 'letter': Value('string')}
    """
    if (table is None) == (query is None):
        raise TypeError("features_of: give either a table name or query=, not both or neither")
    if query is not None:
        return from_query(engine, query, params, streaming=True, features=features).features
    dataset = from_table(engine, table, columns, schema=schema, streaming=True, features=features)
    return dataset.features


def new_row_ranges(
    engine: Engine | str,
    table: str,
    cursor_column: str,
    after: Any = None,
    rows_per_range: int = 100_000,
    max_ranges: int = 10,
    schema: str | None = None,
    through: Any = None,
) -> list[RowRange]:
    """Consecutive ranges `(low, high]` of `cursor_column` over its values above `after` (all
    values if None) and up to `through` (no upper bound if None), at most `max_ranges`, each of
    about `rows_per_range` rows: a range ends at the value at offset `rows_per_range - 1` and
    holds every row equal to it, so rows with equal cursor values are never split; the last
    range may be smaller.

    Each range costs two queries that walk the cursor column's index from `low`
    (`WHERE col > :low ORDER BY col LIMIT 1 OFFSET n`, then a count), so the cost follows the
    new rows, not the table. Cursor values may be integers, decimals, dates or timestamps; rows
    whose cursor is NULL are never in a range.

    >>> import sqlalchemy as sa
    >>> engine = sa.create_engine("sqlite://")
    >>> with engine.begin() as connection:
    ...     _ = connection.execute(sa.text("CREATE TABLE log (id INTEGER)"))
    ...     _ = connection.execute(sa.text("INSERT INTO log VALUES (1), (2), (2), (3), (4), (5)"))
    >>> for row_range in new_row_ranges(engine, "log", "id", rows_per_range=2):
    ...     print(row_range)
    RowRange(low=None, high=2, num_rows=3)
    RowRange(low=2, high=4, num_rows=2)
    RowRange(low=4, high=5, num_rows=1)
    """
    engine = _engine(engine)
    if rows_per_range < 1 or max_ranges < 1:
        raise ValueError(
            f"new_row_ranges: rows_per_range ({rows_per_range}) and max_ranges ({max_ranges}) "
            "must be at least 1"
        )
    ranges: list[RowRange] = []
    with engine.connect() as connection:
        types = _reflect(connection, table, schema)
        label = _table_label(engine, table, schema)
        relation = _relation(table, schema, types)
        column = relation.c[_cursor_column(cursor_column, types, label)]
        low = after
        while len(ranges) < max_ranges:
            newer = column.is_not(None) if low is None else column > low
            if through is not None:
                newer = sa.and_(newer, column <= through)
            boundary = sa.select(column).where(newer).order_by(column)
            high = connection.execute(boundary.limit(1).offset(rows_per_range - 1)).scalar()
            is_last = high is None
            if is_last:
                high = connection.execute(sa.select(sa.func.max(column)).where(newer)).scalar()
                if high is None:
                    break
            if low is not None and not _above(high, low):
                raise ValueError(
                    f"{label}: column {cursor_column!r}: the database ranks the value {high!r} "
                    f"above {low!r}, but they compare equal in Python (values stored in mixed "
                    "formats, such as SQLite text dates with and without a 'T'?): the rows "
                    "cannot be split into ranges by this column"
                )
            count = sa.select(sa.func.count()).select_from(relation).where(newer, column <= high)
            ranges.append(RowRange(low, high, connection.execute(count).scalar_one()))
            if is_last:
                break
            low = high
    return ranges


def _above(high: Any, low: Any) -> bool:
    try:
        return bool(high > low)
    except TypeError:
        return True  # values Python cannot order: the database's order stands


def highest_cursor_value(
    engine: Engine | str, table: str, cursor_column: str, schema: str | None = None
) -> Any:
    """The highest value of `cursor_column` in `table` now (None if no row has one): one
    `max()` query, which an index on the column answers without a scan.

    >>> import sqlalchemy as sa
    >>> engine = sa.create_engine("sqlite://")
    >>> with engine.begin() as connection:
    ...     _ = connection.execute(sa.text("CREATE TABLE log (id INTEGER)"))
    ...     _ = connection.execute(sa.text("INSERT INTO log VALUES (3), (7), (NULL)"))
    >>> highest_cursor_value(engine, "log", "id")
    7
    """
    engine = _engine(engine)
    with engine.connect() as connection:
        types = _reflect(connection, table, schema)
        relation = _relation(table, schema, types)
        column = relation.c[
            _cursor_column(cursor_column, types, _table_label(engine, table, schema))
        ]
        return connection.execute(sa.select(sa.func.max(column))).scalar()


# -- arguments ---------------------------------------------------------------------------------


def _engine(engine: Engine | str) -> Engine:
    if isinstance(engine, Engine):
        return engine
    if isinstance(engine, (str, sa.URL)):
        return sa.create_engine(engine)
    raise TypeError(f"expected a SQLAlchemy Engine or a database URL, got {type(engine).__name__}")


SECRET_QUERY_KEYS = re.compile(r"passw|pwd|secret|token", re.IGNORECASE)


def secret_query_keys(url: sa.URL) -> list[str]:
    """The query-string keys of `url` that carry a secret (`?password=`, `sslpassword`,
    `pwd`, `auth_token`), which `render_as_string(hide_password=True)` would show.

    >>> secret_query_keys(sa.make_url("postgresql://u@db/x?sslmode=require&password=p"))
    ['password']
    """
    return sorted(key for key in url.query if SECRET_QUERY_KEYS.search(key))


def safe_url(url: sa.URL) -> str:
    """`url` as it may be shown: its password and secret query values as `***`.

    >>> safe_url(sa.make_url("postgresql://u:pw@db/x?password=pw&sslmode=require"))
    'postgresql://u:***@db/x?password=***&sslmode=require'
    """
    hidden = {key: "HIDDEN" for key in secret_query_keys(url)}  # "***" would be %-escaped
    shown = url.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown.replace("=HIDDEN", "=***")


def _safe_url(engine: Engine) -> str:
    return safe_url(engine.url)


def _table_label(engine: Engine, table: str, schema: str | None) -> str:
    name = table if schema is None else f"{schema}.{table}"
    return f"table {name!r} at {_safe_url(engine)}"


def _statement(sql: str | sa.sql.Executable) -> sa.sql.Executable:
    if isinstance(sql, str):
        return sa.text(sql)
    if isinstance(sql, sa.sql.Executable):
        return sql
    raise TypeError(f"sql: expected SQL text or a SQLAlchemy statement, got {type(sql).__name__}")


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params: expected a mapping of placeholder names (:name) to values, "
            f"got {type(params).__name__}"
        )
    return dict(params)


def _batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive number of rows, got {batch_size!r}")
    return batch_size


def _overrides(features: Features | Mapping[str, Any] | None) -> dict[str, Any]:
    if features is None:
        return {}
    if not isinstance(features, Mapping):
        raise TypeError(f"features: expected Features or a mapping, got {type(features).__name__}")
    return dict(features)


# -- tables ------------------------------------------------------------------------------------


def _reflect(connection: Connection, table: str, schema: str | None) -> dict[str, Any]:
    """Column name -> SQLAlchemy type of the table as the database has it."""
    if not isinstance(table, str) or not table:
        raise TypeError(f"table: expected a table name, got {table!r}")
    name = table if schema is None else f"{schema}.{table}"
    try:
        with warnings.catch_warnings():
            # unknown column types are inferred from values; the warning would only alarm
            warnings.filterwarnings("ignore", "Did not recognize type", sa.exc.SAWarning)
            columns = sa.inspect(connection).get_columns(table, schema=schema)
    except sa.exc.NoSuchTableError:
        columns = []
    except sa.exc.DBAPIError as error:
        if schema is None:
            raise
        # SQLite reports an unknown schema (attached database) as an error, not a missing table
        raise LookupError(
            f"table {name!r} not found in {_safe_url(connection.engine)}: {error.orig}"
        ) from None
    if not columns:
        raise LookupError(f"table {name!r} not found in {_safe_url(connection.engine)}")
    return {column["name"]: column["type"] for column in columns}


def _known_column(name: str, types: Mapping[str, Any], label: str) -> str:
    if name not in types:
        raise LookupError(f"{label}: no column {name!r}; its columns are {list(types)}")
    return name


_CURSOR_TYPES = (int, float, decimal.Decimal, datetime.date)  # date: datetime too


def _cursor_column(name: str, types: Mapping[str, Any], label: str) -> str:
    """`name` if it is a column whose values can bound row ranges (numbers, dates,
    timestamps); a text or UUID column is refused here, at the first query, even while the
    table is empty, rather than at the first row. A column of no declared type (SQLite) is
    taken on trust."""
    _known_column(name, types, label)
    try:
        python_type = types[name].python_type
    except NotImplementedError:
        return name
    if issubclass(python_type, bool) or not issubclass(python_type, _CURSOR_TYPES):
        raise TypeError(
            f"{label}: cursor column {name!r} is {types[name]} ({python_type.__name__} values); "
            "a cursor column must hold integers, decimals, floats, dates or timestamps that "
            "grow as rows arrive (an auto-increment id or an insertion time)"
        )
    return name


def _selected(columns: Sequence[str] | None, types: Mapping[str, Any], label: str) -> list[str]:
    if columns is None:
        return list(types)
    if isinstance(columns, str):
        raise TypeError(f"{label}: columns must be a list of names, got the string {columns!r}")
    names = [_known_column(name, types, label) for name in columns]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{label}: columns {repeated} are selected more than once")
    if not names:
        raise ValueError(f"{label}: columns is empty; give at least one column")
    return names


def _relation(table: str, schema: str | None, types: Mapping[str, Any]) -> sa.TableClause:
    """The table as SQLAlchemy Core knows it: names quoted by the dialect, reflected types."""
    columns = [sa.column(name, _read_type(kind)) for name, kind in types.items()]
    return sa.table(table, *columns, schema=schema)


def _read_type(kind: Any) -> Any:
    """The type to select a column as: the reflected one, except where its result processing
    would get in the way of Arrow (MySQL DOUBLE reflects as `asdecimal=True`; a SET would come
    back as a Python set)."""
    if isinstance(kind, sa.Float):
        return sa.Double() if _float_dtype(kind, "") == "float64" else sa.Float()
    if isinstance(kind, mysql.SET):
        return sa.String()
    return kind


def _where(where: str | sa.ColumnElement[bool], params: Mapping[str, Any] | None, label: str):
    if not isinstance(where, str):
        if params:
            raise ValueError(f"{label}: params are for a where text fragment, not a clause")
        return where
    try:
        return sa.text(where).bindparams(**_params(params))
    except sa.exc.ArgumentError as error:
        raise ValueError(f"{label}: where {where!r}: {error}") from None


def _between(relation: sa.TableClause, types: Mapping[str, Any], between: Any, label: str):
    if not isinstance(between, (tuple, list)) or len(between) != 3:
        raise ValueError(
            f"{label}: between must be (column, low_exclusive, high_inclusive), got {between!r}"
        )
    name, low, high = between
    column = relation.c[_known_column(name, types, label)]
    conditions = []
    if low is not None:
        conditions.append(column > low)
    if high is not None:
        conditions.append(column <= high)
    return conditions


# -- types -> features -------------------------------------------------------------------------


def _feature_of_type(kind: Any, dialect: str) -> tuple[Any, Prepare | None, Any]:
    """(feature or None to infer it from values, preparation of each non-NULL value, feature
    to use when inference sees only NULLs) of a SQLAlchemy column type."""
    if isinstance(kind, postgresql.DOMAIN):
        kind = kind.data_type
    if isinstance(kind, sa.ARRAY) and isinstance(kind.item_type, sa.JSON):
        return Json(), json_text.dumps, None  # the array as one JSON value, as a query reads it
    if isinstance(kind, sa.ARRAY):
        item, prepare, _ = _feature_of_type(kind.item_type, dialect)
        if item is None:
            return None, None, None
        return List(item), prepare and _list_coercion(prepare), None
    if isinstance(kind, sa.JSON):
        return Json(), json_text.dumps, None
    if isinstance(kind, sa.Boolean):
        return Value("bool"), None, None
    if isinstance(kind, sa.Integer):
        return Value(_integer_dtype(kind, dialect)), None, None
    if isinstance(kind, mysql.YEAR):
        return Value("int16"), None, None
    if isinstance(kind, mysql.BIT):
        return Value("bool" if (kind.length or 1) == 1 else "uint64"), None, None
    if isinstance(kind, sa.Float):
        return Value(_float_dtype(kind, dialect)), None, None
    if isinstance(kind, sa.Numeric):
        return _decimal_feature(kind.precision, kind.scale), None, None
    if isinstance(kind, sa.DateTime):
        return Value("timestamp[us, tz=UTC]" if kind.timezone else "timestamp[us]"), None, None
    if isinstance(kind, sa.Date):
        return Value("date32"), None, None
    if isinstance(kind, sa.Time):
        if dialect in ("mysql", "mariadb"):
            return Value("duration[us]"), None, None  # -838:59:59 to 838:59:59, see _processed
        if kind.timezone:
            return Value("string"), _time_with_offset, None  # time64 has no offset to keep
        return Value("time64[us]"), None, None
    if isinstance(kind, sa.Interval):
        return Value("duration[us]"), None, None
    if isinstance(kind, sa.sql.sqltypes._Binary):
        return Value("binary"), None, None
    if isinstance(kind, sa.Uuid):
        return Value("string"), _uuid_text, None
    if isinstance(kind, sa.String):
        return Value("string"), None, None
    # psycopg2 gives the text of the types it has no conversion for (inet, money, tsvector...)
    return None, None, (Value("string") if dialect == "postgresql" else None)


def _time_with_offset(value: datetime.time) -> str:
    if not isinstance(value, datetime.time):  # a nested array's list, say
        raise TypeError("expected a time")
    return value.isoformat()


def _uuid_text(value: uuid.UUID) -> str:
    if not isinstance(value, uuid.UUID):
        raise TypeError("expected a UUID")
    return str(value)


def _processed(kind: Any, dialect: str) -> Any:
    """The type whose result processing a column's values get: `kind`, or None where that
    processing loses information (MySQL's TIME processor wraps durations into a day)."""
    if dialect in ("mysql", "mariadb") and isinstance(kind, sa.Time):
        return None  # the driver's timedelta is the value
    if isinstance(kind, sa.ARRAY) and _feature_of_type(kind.item_type, dialect)[0] is None:
        return None  # psycopg2 gives such an array's text, which the processor splits into chars
    if dialect == "sqlite" and isinstance(kind, (sa.Boolean, sa.Numeric)):
        # SQLAlchemy's processors read any truthy value as True, and numbers through floats
        # rounded to the declared scale: the stored value is checked as it is instead
        return None
    return kind


def _integer_dtype(kind: Any, dialect: str) -> str:
    if dialect == "sqlite":
        return "int64"  # SQLite stores any 64-bit integer whatever the declared type
    if isinstance(kind, sa.BigInteger):
        bits = 64
    elif isinstance(kind, mysql.TINYINT):
        bits = 8
    elif isinstance(kind, sa.SmallInteger):
        bits = 16
    elif dialect in ("postgresql", "mysql", "mariadb", "mssql"):
        bits = 32
    else:
        bits = 64  # other dialects' INTEGER may be wider
    return f"{'uint' if getattr(kind, 'unsigned', False) else 'int'}{bits}"


def _float_dtype(kind: Any, dialect: str) -> str:
    if dialect == "sqlite" or isinstance(kind, sa.Double):
        return "float64"  # SQLite's REAL is 8 bytes
    if kind.precision is not None:
        return "float32" if kind.precision <= 24 else "float64"
    if isinstance(kind, (sa.REAL, mysql.FLOAT)):
        return "float32"
    return "float64"


def _decimal_feature(precision: int | None, scale: int | None) -> Any:
    if precision is None:
        return None  # unconstrained NUMERIC: precision and scale from the values
    scale = scale or 0
    if scale < 0:  # PostgreSQL numeric(5, -2) rounds to hundreds: 7 digits, none after the point
        precision, scale = precision - scale, 0
    if precision <= 38:
        return Value(f"decimal128({precision}, {scale})")
    if precision <= 76:
        return Value(f"decimal256({precision}, {scale})")
    return Value("string")  # exact, as text: wider than any Arrow decimal


# The built-in PostgreSQL types by OID (pg_type), for the cursor description of a query.
_POSTGRESQL_MAX_PRECISION = 1000
_POSTGRESQL_TYPES: dict[int, Any] = {
    16: sa.Boolean(), 17: sa.LargeBinary(), 18: sa.String(), 19: sa.String(),
    20: sa.BigInteger(), 21: sa.SmallInteger(), 23: sa.Integer(), 25: sa.Text(),
    26: sa.BigInteger(), 114: sa.JSON(), 700: sa.REAL(), 701: sa.Double(), 1042: sa.String(),
    1043: sa.String(), 1082: sa.Date(), 1083: sa.Time(), 1114: sa.DateTime(),
    1184: sa.DateTime(timezone=True), 1186: sa.Interval(), 2950: sa.Uuid(), 3802: sa.JSON(),
    1000: sa.ARRAY(sa.Boolean()), 1005: sa.ARRAY(sa.SmallInteger()),
    1007: sa.ARRAY(sa.Integer()), 1016: sa.ARRAY(sa.BigInteger()), 1009: sa.ARRAY(sa.Text()),
    1015: sa.ARRAY(sa.String()), 1021: sa.ARRAY(sa.REAL()), 1022: sa.ARRAY(sa.Double()),
    1266: sa.Time(timezone=True), 1182: sa.ARRAY(sa.Date()), 1183: sa.ARRAY(sa.Time()),
    1115: sa.ARRAY(sa.DateTime()), 1185: sa.ARRAY(sa.DateTime(timezone=True)),
    1187: sa.ARRAY(sa.Interval()), 1231: sa.ARRAY(sa.Numeric()),
    1270: sa.ARRAY(sa.Time(timezone=True)), 2951: sa.ARRAY(sa.Uuid()),
    199: sa.ARRAY(sa.JSON()), 3807: sa.ARRAY(sa.JSON()),
}  # fmt: skip
_POSTGRESQL_NUMERIC = 1700

# MySQL/MariaDB field types (include/mysql_com.h). The description does not say whether an
# integer is unsigned: pymysql's field flags do (`_field_flags`); without them integers are
# read as int64 whatever their width. BLOB and CHAR codes cover both text and bytes (the
# charset decides), so those are inferred, defaulting to text.
_MYSQL_TYPES: dict[int, Any] = {
    4: sa.REAL(), 5: sa.Double(), 7: sa.DateTime(), 12: sa.DateTime(), 10: sa.Date(),
    14: sa.Date(), 11: sa.Time(), 13: mysql.YEAR(), 245: sa.JSON(), 247: sa.String(),
    248: sa.String(), 15: sa.String(),
}  # fmt: skip
_MYSQL_INTEGERS = {1: mysql.TINYINT, 2: mysql.SMALLINT, 9: mysql.MEDIUMINT, 3: mysql.INTEGER,
                   8: mysql.BIGINT}  # fmt: skip
_MYSQL_DECIMALS = (0, 246)
_MYSQL_BIT = 16
_MYSQL_NULL = 6
_MYSQL_UNSIGNED_FLAG = 32


def _described_spec(
    name: str, entry: Sequence[Any], dialect: sa.engine.Dialect, flags: int | None = None
) -> _ColumnSpec:
    """What a query's cursor description says of a column: the SQLAlchemy type whose result
    processing its values get (as a typed table column's would), and its feature. `flags` are
    the MySQL field flags where the driver exposes them (they tell unsigned integers)."""
    kind, fallback = None, None
    code = entry[1]
    if dialect.name == "postgresql" and isinstance(code, int):
        kind = _POSTGRESQL_TYPES.get(code)
        if code == _POSTGRESQL_NUMERIC:
            kind = _postgresql_numeric(entry[4], entry[5])
        # psycopg2 gives the text of the types it has no conversion for (inet, money...)
        fallback = Value("string") if kind is None else None
    elif dialect.name in ("mysql", "mariadb") and isinstance(code, int):
        unsigned = flags is not None and bool(flags & _MYSQL_UNSIGNED_FLAG)
        kind = _MYSQL_TYPES.get(code)
        if code in _MYSQL_INTEGERS:
            kind = (
                _MYSQL_INTEGERS[code](unsigned=unsigned) if flags is not None else sa.BigInteger()
            )
        elif code in _MYSQL_DECIMALS:
            # the display length counts the decimal point, and the sign unless unsigned
            signs = 0 if unsigned else 1
            kind = sa.Numeric(max(1, entry[3] - (1 if entry[5] else 0) - signs), entry[5])
        elif code == _MYSQL_BIT:
            kind = mysql.BIT(entry[3])
        fallback = Value("null") if code == _MYSQL_NULL else Value("string")
    if kind is None:
        return _ColumnSpec(name, None, None, None, fallback)
    feature, prepare, _ = _feature_of_type(kind, dialect.name)
    return _ColumnSpec(name, _processed(kind, dialect.name), feature, prepare, fallback)


def _postgresql_numeric(precision: int | None, scale: int | None) -> sa.Numeric:
    # psycopg2 reports an unconstrained NUMERIC (no typmod) as precision 65535, and a negative
    # scale (numeric(5, -2), PostgreSQL 15) as the 11-bit two's complement of the typmod
    if precision is None or not 0 < precision <= _POSTGRESQL_MAX_PRECISION:
        return sa.Numeric()
    if scale is not None and scale > _POSTGRESQL_MAX_PRECISION:
        scale -= 2048
    return sa.Numeric(precision, scale)


def _field_flags(cursor: Any, columns: int) -> list[int | None]:
    """MySQL field flags of each column of a pymysql result (None for other drivers)."""
    fields = getattr(getattr(cursor, "_result", None), "fields", None)
    if not fields or len(fields) != columns:
        return [None] * columns
    return [getattr(field, "flags", None) for field in fields]


def _compose(first: Prepare, then: Prepare) -> Prepare:
    def both(value: Any) -> Any:
        value = first(value)
        return None if value is None else then(value)

    return both


def _infer(values: Sequence[Any], fallback: Any) -> tuple[Any, Prepare | None]:
    """(feature, preparation) from the non-NULL values of a column's first batch."""
    present = [value for value in values if value is not None]
    if not present:
        return (fallback if fallback is not None else Value("null")), None
    if all(isinstance(value, decimal.Decimal) for value in present):
        return _decimal_of_values(present), None
    if all(isinstance(value, uuid.UUID) for value in present):
        return Value("string"), _uuid_text
    if any(isinstance(value, (dict, list, tuple)) for value in present):
        try:
            inferred = pa.array(present).type
        except (pa.ArrowException, TypeError, ValueError):
            return Json(), json_text.dumps
        if _has_struct(inferred):
            return Json(), json_text.dumps  # objects' keys vary from row to row: keep them as JSON
        return Features.from_arrow_schema(pa.schema({"x": inferred}))["x"], None
    try:
        inferred = pa.array(present).type
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as error:
        kinds = sorted({type(value).__name__ for value in present})
        raise _InferenceError(kinds, error) from None
    if pa.types.is_timestamp(inferred) and inferred.tz is not None:
        return Value("timestamp[us, tz=UTC]"), None
    if pa.types.is_timestamp(inferred) or pa.types.is_time(inferred):
        return Value(f"{'timestamp' if pa.types.is_timestamp(inferred) else 'time64'}[us]"), None
    return Features.from_arrow_schema(pa.schema({"x": inferred}))["x"], None


class _InferenceError(Exception):
    def __init__(self, kinds: list[str], error: Exception):
        super().__init__(f"its values have types {kinds}: {error}")


def _has_struct(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_struct(kind.value_type)
    return False


def _decimal_of_values(values: Sequence[decimal.Decimal]) -> Any:
    scale, integer_digits = 0, 1
    for value in values:
        if not value.is_finite():
            continue  # NaN and infinities fit no Arrow decimal: the conversion says so
        sign, digits, exponent = value.as_tuple()
        scale = max(scale, -exponent)
        integer_digits = max(integer_digits, len(digits) + exponent)
    if integer_digits + scale <= 38:
        return Value(f"decimal128(38, {scale})")
    if integer_digits + scale <= 76:
        return Value(f"decimal256(76, {scale})")
    return Value("string")


# -- values -> Arrow ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _ColumnSpec:
    """What is known of a column before reading: the SQLAlchemy type whose result processing
    its values get (None: none), a feature (None: infer it from the first batch), a preparation
    of each non-NULL value, and the feature to use if the first batch is all NULL."""

    name: str
    kind: Any
    feature: Any
    prepare: Prepare | None
    fallback: Any


@dataclass(frozen=True)
class _Converter:
    name: str
    feature: Any
    arrow_type: pa.DataType
    prepare: Prepare | None
    encode: bool  # values go through the feature's encode_example (ClassLabel, Image, ...)
    hint: str

    def array(self, values: Sequence[Any], first_row: int, label: str) -> pa.Array:
        if self.prepare is not None:
            values = _prepared(values, self.prepare, self, first_row, label)
        # pyarrow converts some values lossily without a word (2.5 to an int64 2, a decimal of
        # more than 38 digits to 0, [True, False] to a bool True): only values whose Python
        # types it takes exactly go straight to it, the others through the checked coercion
        if not self.encode and _takes_exactly(self.arrow_type, values):
            try:
                return pa.array(values, type=self.arrow_type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                pass  # the slow path below coerces what it can and names what it cannot
        if not self.encode and pa.types.is_decimal(self.arrow_type):
            exact = _numbers_as_decimals(values, self.arrow_type)
            if exact is not None:
                return exact
        coerce = self._coercion()
        converted = []
        for row, value in enumerate(values):
            try:
                converted.append(None if value is None else coerce(value))
            except (TypeError, ValueError, OverflowError, ArithmeticError) as error:
                raise self._error(label, first_row + row, value, error) from None
        try:
            return pa.array(converted, type=self.arrow_type)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            for row, value in enumerate(converted):
                try:
                    pa.array([value], type=self.arrow_type)
                except (pa.ArrowException, TypeError, ValueError, OverflowError) as error:
                    raise self._error(label, first_row + row, values[row], error) from None
            raise

    def _coercion(self) -> Prepare:
        if self.encode:
            return lambda value: encode_nested_example(self.feature, value)
        return _coercion_to(self.arrow_type)

    def _error(self, label: str, row: int, value: Any, error: Exception) -> ValueError:
        shown = _shown(value)
        return ValueError(
            f"{label}: column {self.name!r}, row {row}: cannot read {shown} "
            f"({type(value).__name__}) as {self.feature} ({error}){self.hint}; pass "
            f"features={{{self.name!r}: ...}} to read the column as another type"
        )


def _prepared(
    values: Sequence[Any], prepare: Prepare, converter: _Converter, first_row: int, label: str
) -> list[Any]:
    try:
        return _applied(prepare, values)
    except _ProcessingError as error:
        raise converter._error(label, first_row + error.row, error.value, error.error) from None


_NONE = type(None)


def _takes_exactly(kind: pa.DataType, values: Sequence[Any]) -> bool:
    """Whether `pa.array(values, type=kind)` either converts every value exactly or raises:
    the values' Python types are the ones Arrow maps to `kind` (and decimals fit it)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        if not set(map(type, values)) <= {list, _NONE}:
            return False
        items = [item for value in values if value is not None for item in value]
        return _takes_exactly(kind.value_type, items)
    accepted = _EXACT_TYPES.get(kind.id)
    if accepted is None:
        return True  # other types (structs...): pyarrow's conversion, as before
    if getattr(kind, "unit", "us") in ("s", "ms"):
        return False  # pyarrow would cut off the finer part: checked by the coercion
    if not set(map(type, values)) <= accepted:
        return False
    if pa.types.is_floating(kind) and kind.bit_width < 64:
        # pyarrow narrows a double past float32's range to infinity without a word
        present = np.fromiter((v for v in values if v is not None), np.float64)
        limit = np.finfo(np.float16 if kind.bit_width == 16 else np.float32).max
        return bool((np.abs(present[np.isfinite(present)]) <= limit).all())
    if pa.types.is_decimal(kind):
        # pyarrow checks a decimal's scale and precision against the type, except that it first
        # converts a Decimal at its own precision: more digits than the type's width can hold
        # (38 or 76) come out as garbage. A value's text is at least as long as its digits.
        width = 38 if pa.types.is_decimal128(kind) else 76
        return max(map(len, map(str, values)), default=0) <= width
    if pa.types.is_time(kind):
        return not any(value.tzinfo for value in values if value is not None)
    return True


_EXACT_TYPES = {
    **{kind.id: {int, _NONE} for kind in (pa.int8(), pa.int16(), pa.int32(), pa.int64())},
    **{kind.id: {int, _NONE} for kind in (pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64())},
    **{kind.id: {float, int, _NONE} for kind in (pa.float16(), pa.float32(), pa.float64())},
    pa.decimal128(1).id: {decimal.Decimal, int, _NONE},
    pa.decimal256(1).id: {decimal.Decimal, int, _NONE},
    pa.string().id: {str, _NONE},
    pa.large_string().id: {str, _NONE},
    pa.binary().id: {bytes, _NONE},
    pa.large_binary().id: {bytes, _NONE},
    pa.bool_().id: {bool, _NONE},
    pa.timestamp("us").id: {datetime.datetime, _NONE},
    pa.date32().id: {datetime.date, _NONE},
    pa.time64("us").id: {datetime.time, _NONE},
    pa.duration("us").id: {datetime.timedelta, _NONE},
    pa.null().id: {_NONE},
}


def _coercion_to(kind: pa.DataType) -> Prepare:
    """How a value of another Python type becomes one Arrow takes for `kind` (or raises)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _list_coercion(_coercion_to(kind.value_type))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _to_text
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _to_bytes
    if pa.types.is_boolean(kind):
        return _to_bool
    if pa.types.is_integer(kind):
        return _to_int
    if pa.types.is_floating(kind):
        return _float_coercion(np.dtype(kind.to_pandas_dtype()))
    if pa.types.is_decimal(kind):
        return _decimal_coercion(kind.precision, kind.scale)
    if pa.types.is_timestamp(kind):
        return _in_unit(_to_datetime, kind.unit)
    if pa.types.is_date(kind):
        return _to_date
    if pa.types.is_time(kind):
        return _in_unit(_to_time, kind.unit)
    if pa.types.is_duration(kind):
        return _in_unit(lambda value: value, kind.unit)
    return lambda value: value


def _list_coercion(item: Prepare) -> Prepare:
    def coerce(value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise TypeError("expected a list")
        return [None if element is None else item(element) for element in value]

    return coerce


# Values whose str() is their exact text; other objects (lists, ranges, ...) are refused
_TEXT_LIKE = (int, float, decimal.Decimal, uuid.UUID)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8")
    if isinstance(value, _TEXT_LIKE):
        return str(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    raise TypeError("expected text, a number or a date; cast the column to text in SQL")


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("expected bytes or text")  # bytes(5) would make five zero bytes


def _to_bool(value: Any) -> bool:
    if isinstance(value, (int, decimal.Decimal)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return value.strip().lower() in ("1", "true")
    raise ValueError("expected a boolean, 0 or 1")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, decimal.Decimal)) and value != int(value):
        raise ValueError("not a whole number")
    if not isinstance(value, (int, float, decimal.Decimal, str)):
        raise TypeError("expected a whole number")
    return int(value)


def _float_coercion(dtype: np.dtype) -> Prepare:
    def coerce(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal, str)):
            raise TypeError("expected a number")
        number = float(value)
        with np.errstate(over="ignore"):
            stored = dtype.type(number)
        if bool(np.isfinite(stored)) != _finite_number(value) or (
            isinstance(value, (int, decimal.Decimal)) and decimal.Decimal(float(stored)) != value
        ):
            raise ValueError(f"{dtype} cannot hold it exactly")
        return number

    return coerce


def _finite_number(value: int | float | decimal.Decimal | str) -> bool:
    if isinstance(value, str):
        return value.strip().lower().lstrip("+-") not in ("inf", "infinity", "nan")
    return isinstance(value, int) or math.isfinite(value)


_UNIT_MICROSECONDS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}


def _in_unit(coerce: Prepare, unit: str) -> Prepare:
    """`coerce`, then a check that the value has no part finer than `unit` (Arrow would cut
    it off without a word: 10:30:00.5 as timestamp[s])."""
    step = _UNIT_MICROSECONDS[unit]
    if step == 1:
        return coerce

    def checked(value: Any) -> Any:
        value = coerce(value)
        microseconds = getattr(value, "microsecond", None)
        if microseconds is None and isinstance(value, datetime.timedelta):
            microseconds = value.microseconds
        if microseconds is not None and microseconds % step:
            raise ValueError(f"it has a fraction of a second finer than the unit {unit!r}")
        return value

    return checked


# Quantizing in this context raises instead of rounding (Inexact) or overflowing
_EXACT = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.InvalidOperation])


def _decimal_coercion(precision: int, scale: int) -> Prepare:
    exponent = decimal.Decimal(1).scaleb(-scale)
    integer_digits = precision - scale

    def coerce(value: Any) -> decimal.Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal, str)):
            raise TypeError("expected a number")
        number = decimal.Decimal(repr(value) if isinstance(value, float) else value)
        if not number.is_finite():
            raise ValueError("not a finite number")
        try:
            exact = number.quantize(exponent, context=_EXACT)
        except decimal.Inexact:
            raise ValueError(f"more than {scale} digits after the point") from None
        if exact and exact.adjusted() >= integer_digits:
            raise ValueError(f"more than {integer_digits} digits before the point")
        return exact

    return coerce


def _numbers_as_decimals(values: Sequence[Any], kind: pa.DataType) -> pa.Array | None:
    """`values` (floats, ints, None) as the decimals `_decimal_coercion` makes of them, computed
    with numpy (SQLite hands NUMERIC columns over as floats: the per-value path was most of a
    SQLite read); None where that path must decide, as it does for any value that it refuses.

    A float x is exact at scale s if n = rint(x * 10**s) gives n / 10**s == x: n and 10**s are
    exact, so the division rounds the decimal n * 10**-s to x. Below |x| * 10**s < 2**51 an ulp
    of x is less than 10**-s, so no other decimal of scale s rounds to x, and `repr(x)` (the
    shortest decimal that rounds to x, which the per-value path reads) is that one.

    >>> _numbers_as_decimals([0.1, None, 7, -2.5], pa.decimal128(12, 2)).to_pylist()
    [Decimal('0.10'), None, Decimal('7.00'), Decimal('-2.50')]
    >>> _numbers_as_decimals([0.125], pa.decimal128(12, 2)) is None  # refused by that path
    True
    """
    if not 0 <= kind.scale <= 15 or sys.byteorder != "little" or not values:
        return None
    if not set(map(type, values)) <= {float, int, _NONE}:
        return None
    missing = np.fromiter((value is None for value in values), bool, len(values))
    try:
        numbers = np.array([0.0 if value is None else value for value in values], np.float64)
    except OverflowError:
        return None
    factor = 10.0**kind.scale
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.rint(numbers * factor)
        fits = np.abs(scaled) < min(2.0**51, 10.0**kind.precision)
        if not (fits.all() and (scaled / factor == numbers).all()):
            return None
    unscaled = scaled.astype(np.int64)
    words = np.empty((len(values), kind.bit_width // 64), np.int64)  # little-endian integers
    words[:, 0] = unscaled
    words[:, 1:] = (unscaled >> 63)[:, None]
    validity = pa.array(~missing).buffers()[1] if missing.any() else None
    return pa.Array.from_buffers(kind, len(values), [validity, pa.py_buffer(words)])


def _to_datetime(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, datetime.date):
        return datetime.datetime.combine(value, datetime.time())
    return datetime.datetime.fromisoformat(value)


def _to_date(value: Any) -> datetime.date:
    if isinstance(value, datetime.datetime):
        if value.time() != datetime.time() or value.tzinfo is not None:
            raise ValueError("a timestamp with a time of day (or a zone): date32 has none")
        return value.date()
    return value if isinstance(value, datetime.date) else datetime.date.fromisoformat(value)


def _to_time(value: Any) -> datetime.time:
    if isinstance(value, datetime.timedelta) and datetime.timedelta(0) <= value < _DAY:
        return (datetime.datetime.min + value).time()
    time = value if isinstance(value, datetime.time) else datetime.time.fromisoformat(value)
    if time.tzinfo is not None:
        raise ValueError("a time with a UTC offset, which time64 cannot hold; read it as string")
    return time


_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class _Plan:
    """How each batch of rows becomes an Arrow table of `features`."""

    features: Features
    schema: pa.Schema
    converters: tuple[_Converter, ...]

    @property
    def names(self) -> list[str]:
        return [converter.name for converter in self.converters]

    def table(
        self, rows: Sequence[Sequence[Any]], processors: Sequence[Prepare | None], first_row: int,
        label: str,
    ) -> pa.Table:  # fmt: skip
        arrays = []
        for index, (converter, processor) in enumerate(
            zip(self.converters, processors, strict=True)
        ):
            try:
                values = _column(rows, index, processor)
            except _ProcessingError as error:
                raise error.named(label, converter.name, first_row) from None
            arrays.append(converter.array(values, first_row, label))
        return pa.Table.from_arrays(arrays, schema=self.schema)


_PROCESSING_ERRORS = (TypeError, ValueError, OverflowError, ArithmeticError, AttributeError)


def _column(rows: Sequence[Sequence[Any]], index: int, processor: Prepare | None) -> list[Any]:
    """The values of one column of `rows`, through the column type's result processing."""
    # one pass per column with itemgetter is several times faster than zip(*rows)
    values = list(map(itemgetter(index), rows))
    return values if processor is None else _applied(processor, values)


def _shown(value: Any) -> str:
    """`repr(value)`, cut to 80 characters for messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _applied(function: Prepare, values: Sequence[Any]) -> list[Any]:
    """`function` of each non-NULL value; `_ProcessingError` naming the first it refuses."""
    try:
        return [None if value is None else function(value) for value in values]
    except _PROCESSING_ERRORS:
        for row, value in enumerate(values):
            try:
                None if value is None else function(value)
            except _PROCESSING_ERRORS as error:
                raise _ProcessingError(row, value, error) from None
        raise


class _ProcessingError(Exception):
    """A stored value that the column type's result processing (SQLAlchemy's) cannot read,
    such as text in an SQLite DATETIME column."""

    def __init__(self, row: int, value: Any, error: Exception) -> None:
        super().__init__(row, value, error)
        self.row, self.value, self.error = row, value, error

    def named(self, label: str, column: str, first_row: int) -> ValueError:
        shown = _shown(self.value)
        return ValueError(
            f"{label}: column {column!r}, row {first_row + self.row}: the value {shown} does "
            f"not fit the column's declared type ({type(self.error).__name__}: {self.error}); "
            "read it through from_query with a CAST in the SQL"
        )


def _plan(
    specs: Sequence[_ColumnSpec],
    overrides: Mapping[str, Any],
    first_rows: Sequence[Sequence[Any]] | None,
    processors: Sequence[Prepare | None] | None,
    label: str,
) -> _Plan:
    _check_names([spec.name for spec in specs], overrides, label)
    features, prepares, encodes, hints = {}, [], [], []
    for index, spec in enumerate(specs):
        feature, prepare, hint = spec.feature, spec.prepare, ""
        if feature is None and spec.name not in overrides:
            processor = processors[index] if processors else None
            try:
                values = _column(first_rows or (), index, processor)
            except _ProcessingError as error:
                raise error.named(label, spec.name, 0) from None
            feature, prepare, hint = _inferred(spec, values, label)
        wanted = overrides.get(spec.name, feature)
        features[spec.name] = wanted
        prepares.append(prepare)
        # JSON text from a column not typed JSON goes through Json's encoding (kept if it is
        # JSON, else stored as a JSON string); values of a JSON column are dumped already
        encodes.append(_needs_encoding(wanted) or (wanted == Json() and feature != Json()))
        hints.append(hint)
    features = Features(features)
    schema = features.arrow_schema
    converters = tuple(
        _Converter(name, features[name], schema.field(name).type, prepare, encode, hint)
        for name, prepare, encode, hint in zip(features, prepares, encodes, hints, strict=True)
    )
    return _Plan(features, schema, converters)


def _check_names(names: list[str], overrides: Mapping[str, Any], label: str) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"{label}: columns {repeated} appear more than once in the result; "
            "give each column its own name (SELECT a.id AS a_id, b.id AS b_id ...)"
        )
    unknown = [name for name in overrides if name not in names]
    if unknown:
        raise LookupError(f"{label}: features given for {unknown}, not columns of {names}")


def _inferred(spec: _ColumnSpec, values: list[Any], label: str) -> tuple[Any, Prepare | None, str]:
    """(feature, preparation, hint for errors) of a column from its first batch's values."""
    prepare = spec.prepare
    if prepare is not None:
        values = [None if value is None else prepare(value) for value in values]
    try:
        feature, inferred_prepare = _infer(values, spec.fallback)
    except _InferenceError as error:
        raise ValueError(
            f"{label}: cannot infer the type of column {spec.name!r} from its first "
            f"{len(values)} rows: {error}; pass features={{{spec.name!r}: ...}}"
        ) from None
    if inferred_prepare is not None:
        prepare = inferred_prepare if prepare is None else _compose(prepare, inferred_prepare)
    hint = ""
    if feature == Value("null"):
        hint = f" (its first {len(values)} values were all NULL: no type to infer)"
    return feature, prepare, hint


def _needs_encoding(feature: Any) -> bool:
    return require_storage_cast(feature) and not isinstance(feature, Json)


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """A statement to run, and what is known of its columns before it runs (None: a query)."""

    engine: Engine
    statement: sa.sql.Executable
    params: Mapping[str, Any]
    batch_size: int
    label: str
    specs: list[_ColumnSpec] | None


class _Execution:
    """One run of the source's statement on a connection of its own, read `batch_size` rows at
    a time through a server-side cursor where the driver has one."""

    def __init__(self, source: _Source):
        self.source = source
        self.exhausted = False
        self._connection = source.engine.connect()
        try:
            streaming = self._connection.execution_options(stream_results=True)
            try:
                self._result: CursorResult = streaming.execute(
                    source.statement, dict(source.params)
                )
            except _PROCESSING_ERRORS as error:  # SQLAlchemy fetches the first row ahead
                raise _unconvertible(source.label, 0, source.batch_size, error) from None
            if not self._result.returns_rows:
                raise ValueError(f"{source.label}: the statement returns no rows")
            self.names = list(self._result.keys())
            self.description = self._result.cursor.description
            self.flags = _field_flags(self._result.cursor, len(self.names))
            self._fetched_any = False
            self.rows_read = 0
        except BaseException:
            self._connection.close()
            raise

    def specs(self) -> list[_ColumnSpec]:
        if self.source.specs is not None:
            return self.source.specs
        dialect = self.source.engine.dialect
        return [
            _described_spec(name, entry, dialect, flags)
            for name, entry, flags in zip(self.names, self.description, self.flags, strict=True)
        ]

    def processors(self, specs: Sequence[_ColumnSpec]) -> list[Prepare | None]:
        """SQLAlchemy's result processing of each column's type, for this dialect and driver."""
        dialect = self.source.engine.dialect
        return [
            None if spec.kind is None
            else spec.kind.dialect_impl(dialect).result_processor(dialect, entry[1])
            for spec, entry in zip(specs, self.description, strict=True)
        ]  # fmt: skip

    def next_batch(self) -> Sequence[Sequence[Any]]:
        """The next rows as the driver gives them, or an empty list at the end."""
        size = self.source.batch_size
        try:
            if not self._fetched_any:
                # SQLAlchemy may hold rows it fetched ahead (a server-side cursor's first row);
                # fetching a whole batch through it hands them over and leaves its buffer empty
                self._fetched_any = True
                batch = self._result.fetchmany(size)
            else:
                # then straight from the DB-API cursor: plain tuples, no Row object per row
                cursor = self._result.cursor
                batch = cursor.fetchmany(size) if cursor is not None else []
        except (*_PROCESSING_ERRORS, *self._data_errors()) as error:
            # the driver converts values as it fetches: psycopg2 raises for a year past 9999
            raise _unconvertible(self.source.label, self.rows_read, size, error) from None
        self.rows_read += len(batch)
        # a DB-API fetchmany returns fewer rows than asked only at the end of the result
        self.exhausted = len(batch) < size
        return batch

    def _data_errors(self) -> tuple[type[Exception], ...]:
        """The driver's own DataError (psycopg2: "unable to parse date" in an array)."""
        dbapi = self.source.engine.dialect.loaded_dbapi
        return (sa.exc.DataError, *([dbapi.DataError] if hasattr(dbapi, "DataError") else []))

    def close(self) -> None:
        if self._connection.closed:
            return
        try:
            if not self.exhausted and self.source.engine.dialect.name in ("mysql", "mariadb"):
                # if this fails, closing reads the rest of the result: slow, still correct
                with contextlib.suppress(Exception):
                    self._interrupt_mysql()
        finally:
            self._connection.close()

    def _interrupt_mysql(self) -> None:
        """End an unbuffered MySQL read early. The driver's cursor close would otherwise read
        and discard every remaining row (the protocol cannot cancel a result being sent), so the
        server is told to stop the query first and the cursor reads only what is in flight."""
        cursor = self._result.cursor
        dbapi_connection = self._connection.connection.dbapi_connection
        thread_id = getattr(dbapi_connection, "thread_id", None)
        if cursor is None or thread_id is None:
            return
        with self.source.engine.connect() as other:
            other.execute(sa.text("KILL QUERY :thread"), {"thread": thread_id()})
        # the cursor then reads up to the server's "query execution was interrupted"
        with contextlib.suppress(self.source.engine.dialect.loaded_dbapi.Error):
            cursor.close()


def _unconvertible(label: str, first: int, size: int, error: Exception) -> ValueError:
    cause = getattr(error, "orig", None) or error
    return ValueError(
        f"{label}: rows {first} to {first + size - 1}: the database driver cannot convert a "
        f"value ({type(cause).__name__}: {str(cause).strip()}); cast the column in the SQL "
        "(to text, say)"
    )


def _read(source: _Source, overrides: Mapping[str, Any], streaming: bool):
    if streaming and source.specs is not None and _all_known(source.specs, overrides):
        plan = _plan(source.specs, overrides, None, None, source.label)
        return _dataset(source, plan, streaming=True)
    execution = _Execution(source)
    try:
        first = execution.next_batch()
        specs = execution.specs()
        plan = _plan(specs, overrides, first, execution.processors(specs), source.label)
    except BaseException:
        execution.close()
        raise
    if streaming:
        execution.close()  # it was read for its features only; every pass runs anew
        return _dataset(source, plan, streaming=True)
    try:
        return to_dataset(
            _tables_of, {"execution": execution, "first": first, "plan": plan},
            plan.features, description=_description(source),
        )  # fmt: skip
    finally:
        execution.close()


def _all_known(specs: Sequence[_ColumnSpec], overrides: Mapping[str, Any]) -> bool:
    return all(spec.feature is not None or spec.name in overrides for spec in specs)


def _dataset(source: _Source, plan: _Plan, streaming: bool) -> IterableDataset:
    return to_dataset(
        _stream_tables, {"source": source, "plan": plan}, plan.features,
        streaming=streaming, description=_description(source),
    )  # fmt: skip


def _description(source: _Source) -> str:
    return f"rows of the {source.label}"


def _tables_of(
    execution: _Execution, first: Sequence[Sequence[Any]], plan: _Plan
) -> Iterator[pa.Table]:
    """The tables of an execution whose first batch was already fetched."""
    label, offset, batch = execution.source.label, 0, first
    try:
        processors = execution.processors(execution.specs())
        while batch:
            yield plan.table(batch, processors, offset, label)
            offset += len(batch)
            batch = execution.next_batch()
    finally:
        execution.close()


def _stream_tables(source: _Source, plan: _Plan) -> Iterator[pa.Table]:
    """One pass: the statement runs again, and its columns must still be the planned ones."""
    execution = _Execution(source)
    try:
        if execution.names != plan.names:
            raise ValueError(
                f"{source.label}: the result's columns are now {execution.names}, "
                f"not {plan.names} as when the dataset was made"
            )
        yield from _tables_of(execution, execution.next_batch(), plan)
    finally:
        execution.close()
