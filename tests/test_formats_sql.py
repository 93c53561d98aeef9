"""The SQL reader against real PostgreSQL and MariaDB servers on 127.0.0.1, and SQLite.

Expected values come from SQLAlchemy itself (a typed `select` of the same table) or from
`datasets.Dataset.from_sql`. Each test makes its own uniquely named tables and drops them.
"""

import datetime
import decimal
import json
import os
import subprocess
import sys
import uuid

import pyarrow as pa
import pytest
import sqlalchemy as sa
from datasets import ClassLabel, Dataset, Features, IterableDataset, Json, List, Value
from sqlalchemy.dialects import mysql

from ds_assets.formats import sql
from ds_assets.formats.rows import parse_range_key, range_key
from tests.sql_servers import URLS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_ROWS = 5_000_000
MEMORY_LIMIT_MB = 300
UTC = datetime.timezone.utc
PRECISE_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")  # MariaDB: µs


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def engine(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def tables(engine):
    """Make uniquely named tables from column definitions; all are dropped after the test."""
    metadata = sa.MetaData()

    def make(*columns: sa.Column, rows=(), prefix: str = "t") -> sa.Table:
        table = sa.Table(f"{prefix}_{uuid.uuid4().hex[:10]}", metadata, *columns)
        table.create(engine)
        if rows:
            with engine.begin() as connection:
                connection.execute(table.insert(), list(rows))
        return table

    yield make
    metadata.drop_all(engine)


def sqlalchemy_rows(engine, table, *columns, order_by="id"):
    """What SQLAlchemy itself reads from the typed table, as dictionaries."""
    selected = [table.c[name] for name in columns] or [table]
    with engine.connect() as connection:
        result = connection.execute(sa.select(*selected).order_by(table.c[order_by]))
        return [dict(row._mapping) for row in result]


# -- types ---------------------------------------------------------------------------------------


def typed_columns():
    """One column of each mapped kind (fresh objects: a Column belongs to one table)."""
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("small", sa.SmallInteger),
        sa.Column("big", sa.BigInteger),
        sa.Column("single", sa.REAL),
        sa.Column("double", sa.Double),
        sa.Column("price", sa.Numeric(12, 3)),
        sa.Column("title", sa.String(20)),
        sa.Column("body", sa.Text),
        sa.Column("blob", sa.LargeBinary),
        sa.Column("flag", sa.Boolean),
        sa.Column("day", sa.Date),
        sa.Column("at", PRECISE_DATETIME),
        sa.Column("at_tz", sa.DateTime(timezone=True)),
        sa.Column("doc", sa.JSON),
    ]


COLUMN_NAMES = [column.name for column in typed_columns()]
TYPED_ROWS = [
    dict(
        id=1,
        small=-3,
        big=2**40,
        single=1.5,
        double=0.25,
        price=decimal.Decimal("1234.567"),
        title="O'Brien",
        body="héllo\nworld",
        blob=b"\x00\xff",
        flag=True,
        day=datetime.date(2024, 2, 29),
        at=datetime.datetime(2024, 1, 2, 3, 4, 5, 123456),
        at_tz=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        doc={"a": [1, "x"]},
    ),
    dict(
        id=2,
        small=7,
        big=-1,
        single=-2.0,
        double=1e100,
        price=decimal.Decimal("-0.001"),
        title="",
        body="",
        blob=b"",
        flag=False,
        day=datetime.date(1970, 1, 1),
        at=datetime.datetime(1999, 12, 31, 23, 59, 59),
        doc=["list", 2],
        at_tz=datetime.datetime(
            2024, 6, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        ),
    ),
    {"id": 3, **{name: None for name in COLUMN_NAMES[1:]}},
]
COMMON_FEATURES = {
    "price": Value("decimal128(12, 3)"),
    "title": Value("string"),
    "body": Value("string"),
    "blob": Value("binary"),
    "day": Value("date32"),
    "at": Value("timestamp[us]"),
}
EXPECTED_FEATURES = {
    "sqlite": {
        "id": Value("int64"),
        "small": Value("int64"),
        "big": Value("int64"),
        "single": Value("float64"),
        "double": Value("float64"),
        "flag": Value("bool"),
        "at_tz": Value("timestamp[us]"),
        "doc": Json(),
    },
    "postgresql": {
        "id": Value("int32"),
        "small": Value("int16"),
        "big": Value("int64"),
        "single": Value("float32"),
        "double": Value("float64"),
        "flag": Value("bool"),
        "at_tz": Value("timestamp[us, tz=UTC]"),
        "doc": Json(),
    },
    # MariaDB: REAL is DOUBLE, BOOLEAN is TINYINT(1), JSON is LONGTEXT, DATETIME has no zone
    "mariadb": {
        "id": Value("int32"),
        "small": Value("int16"),
        "big": Value("int64"),
        "single": Value("float64"),
        "double": Value("float64"),
        "flag": Value("int8"),
        "at_tz": Value("timestamp[us]"),
        "doc": Value("string"),
    },
}


def test_column_types_map_to_features_and_values_match_sqlalchemy(engine, tables):
    table = tables(*typed_columns(), rows=TYPED_ROWS)

    dataset = sql.from_table(engine, table.name, batch_size=2)

    dialect = "mariadb" if engine.dialect.name == "mysql" else engine.dialect.name
    expected = {**COMMON_FEATURES, **EXPECTED_FEATURES[dialect]}
    assert dataset.features == Features({name: expected[name] for name in COLUMN_NAMES})
    ours = dataset.to_list()
    for row, reference in zip(ours, sqlalchemy_rows(engine, table), strict=True):
        if dialect == "mariadb" and row["doc"] is not None:
            row["doc"] = json.loads(row["doc"])  # MariaDB's JSON is text
        if dialect != "postgresql" and reference["at_tz"] is not None:
            reference["at_tz"] = reference["at_tz"].replace(tzinfo=None)  # stored without zone
        assert row == reference
    assert ours[2] == {"id": 3, **{name: None for name in COLUMN_NAMES[1:]}}
    assert ours[1]["at_tz"] in (
        datetime.datetime(2024, 6, 1, 10, tzinfo=UTC),  # instant kept
        datetime.datetime(2024, 6, 1, 12),
    )


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_a_query_reads_the_values_its_table_reads(request, server):
    engine, metadata = request.getfixturevalue(server), sa.MetaData()
    table = sa.Table(f"q_{uuid.uuid4().hex[:10]}", metadata, *typed_columns())
    metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            connection.execute(table.insert(), TYPED_ROWS)
        of_table = sql.from_table(engine, table.name)
        of_query = sql.from_query(engine, f"SELECT * FROM {table.name} ORDER BY id", batch_size=2)
        assert of_query.to_list() == of_table.to_list()
        # MariaDB's description leaves out signedness: pymysql's field flags tell it
        assert of_query.features == of_table.features
    finally:
        metadata.drop_all(engine)


def test_postgresql_specific_types(postgresql):
    name = f"pg_{uuid.uuid4().hex[:10]}"
    with postgresql.begin() as connection:
        connection.execute(
            sa.text(
                f"CREATE TABLE {name} (id int, wide numeric(50, 5), huge numeric(100, 2), "
                "free numeric, doc jsonb, tags text[], counts int[], key uuid, span interval, "
                "clock time, addr inet)"
            )
        )
        connection.execute(
            sa.text(
                f"INSERT INTO {name} VALUES (1, 12345678901234567890123456789012345678901.5, 1.25, "
                "3.14159, '{\"k\": null}', '{a,b}', '{1,2}', "
                "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 2 hours', '03:04:05', '10.0.0.1'), "
                "(2, NULL, NULL, -2, '\"just a string\"', '{}', NULL, NULL, NULL, NULL, NULL)"
            )
        )
    try:
        for dataset in (
            sql.from_table(postgresql, name, order_by="id"),
            sql.from_query(postgresql, f"SELECT * FROM {name} ORDER BY id"),
        ):
            assert dataset.features == Features(
                {
                    "id": Value("int32"),
                    "wide": Value("decimal256(50, 5)"),
                    "huge": Value("string"),
                    "free": Value("decimal128(38, 5)"),
                    "doc": Json(),
                    "tags": List(Value("string")),
                    "counts": List(Value("int32")),
                    "key": Value("string"),
                    "span": Value("duration[us]"),
                    "clock": Value("time64[us]"),
                    "addr": Value("string"),
                }
            )
            first, second = dataset.to_list()
            assert first["wide"] == decimal.Decimal("12345678901234567890123456789012345678901.5")
            assert (first["huge"], first["free"]) == ("1.25", decimal.Decimal("3.14159"))
            assert (first["doc"], second["doc"]) == ({"k": None}, "just a string")
            assert (first["tags"], second["tags"], first["counts"]) == (["a", "b"], [], [1, 2])
            assert first["key"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
            assert first["span"] == datetime.timedelta(days=1, hours=2)
            assert (first["clock"], first["addr"]) == (datetime.time(3, 4, 5), "10.0.0.1")
    finally:
        with postgresql.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {name}"))


def test_timestamptz_read_in_another_session_time_zone_is_the_same_instant(postgresql):
    tokyo = sa.create_engine(URLS["postgresql"], connect_args={"options": "-c timezone=Asia/Tokyo"})
    name = f"tz_{uuid.uuid4().hex[:10]}"
    with postgresql.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {name} (at timestamptz)"))
        connection.execute(sa.text(f"INSERT INTO {name} VALUES ('2024-01-02 03:04:05+00')"))
    try:
        dataset = sql.from_table(tokyo, name)
        assert dataset.features["at"] == Value("timestamp[us, tz=UTC]")
        assert dataset.to_list() == [{"at": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)}]
        assert dataset.data.column("at").type == pa.timestamp("us", tz="UTC")
    finally:
        tokyo.dispose()
        with postgresql.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {name}"))


def test_the_same_rows_as_datasets_from_sql(engine, tables, tmp_path):
    rows = [{"id": i, "score": i / 4, "name": f"name {i}"} for i in range(1, 26)]
    table = tables(
        sa.Column("id", sa.BigInteger),
        sa.Column("score", sa.Double),
        sa.Column("name", sa.String(32)),
        rows=rows,
    )
    url = engine.url.render_as_string(hide_password=False)

    reference = Dataset.from_sql(table.name, url, cache_dir=str(tmp_path / "hf"))

    ours = sql.from_table(engine, table.name, order_by="id", batch_size=7)
    assert ours.to_list() == sorted(reference.to_list(), key=lambda row: row["id"])
    # pandas 3 hands strings to datasets as large_string; the values are the same
    assert {
        name: feature.dtype.replace("large_", "") for name, feature in ours.features.items()
    } == {name: feature.dtype.replace("large_", "") for name, feature in reference.features.items()}


# -- queries -------------------------------------------------------------------------------------


def test_query_parameters_are_bound_not_formatted(engine, tables):
    hostile = "x'; DROP TABLE users; --"
    table = tables(
        sa.Column("id", sa.Integer),
        sa.Column("name", sa.String(64)),
        rows=[{"id": 1, "name": hostile}, {"id": 2, "name": "plain"}],
    )

    found = sql.from_query(
        engine, f"SELECT id FROM {table.name} WHERE name = :name", {"name": hostile}
    )
    also = sql.from_table(engine, table.name, where="name = :name", params={"name": hostile})

    assert found.to_dict() == {"id": [1]}
    assert also["id"][:] == [1]
    assert len(sqlalchemy_rows(engine, table)) == 2


def test_sqlite_query_columns_are_inferred_from_the_first_batch(sqlite):
    dataset = sql.from_query(
        sqlite,
        "SELECT 1 AS n, 2.5 AS x, 'a' AS s, x'00ff' AS b, NULL AS empty, '{\"k\": 1}' AS doc",
        features={"doc": Json()},
    )
    assert dataset.features == Features(
        {
            "n": Value("int64"),
            "x": Value("float64"),
            "s": Value("string"),
            "b": Value("binary"),
            "empty": Value("null"),
            "doc": Json(),
        }
    )
    assert dataset.to_list() == [
        {"n": 1, "x": 2.5, "s": "a", "b": b"\x00\xff", "empty": None, "doc": {"k": 1}}
    ]


def test_a_column_null_in_the_first_batch_then_set_is_an_error_naming_it(sqlite):
    with sqlite.begin() as connection:
        connection.execute(sa.text("CREATE TABLE notes (id INTEGER, note)"))
        connection.execute(sa.text("INSERT INTO notes VALUES (1, NULL), (2, NULL), (3, 'late')"))
    with pytest.raises(ValueError) as caught:
        sql.from_query(sqlite, "SELECT * FROM notes ORDER BY id", batch_size=2)
    message = str(caught.value)
    assert "column 'note', row 2" in message and "'late'" in message
    assert "first 2 values were all NULL" in message and "features=" in message
    fixed = sql.from_query(
        sqlite, "SELECT * FROM notes ORDER BY id", batch_size=2, features={"note": Value("string")}
    )
    assert fixed["note"][:] == [None, None, "late"]


def test_mixed_value_types_in_a_sqlite_column_are_an_error_naming_it(sqlite):
    with pytest.raises(ValueError, match=r"type of column 'v' .* \['int', 'str'\]"):
        sql.from_query(sqlite, "SELECT 1 AS v UNION ALL SELECT 'x'")


def test_a_value_that_does_not_fit_names_the_table_column_and_row(sqlite):
    with sqlite.begin() as connection:
        connection.execute(sa.text("CREATE TABLE counts (id INTEGER, n INTEGER)"))
        connection.execute(sa.text("INSERT INTO counts VALUES (0, 1), (1, 2), (2, 3), (3, 'abc')"))
    with pytest.raises(ValueError) as caught:
        sql.from_table(sqlite, "counts", order_by="id", batch_size=3)
    message = str(caught.value)
    assert message.startswith(f"table 'counts' at {sqlite.url}: column 'n', row 3: ")
    assert "'abc' (str) as Value('int64')" in message


def test_duplicate_column_names_in_a_query_are_an_error(engine):
    with pytest.raises(ValueError, match=r"columns \['a'\] appear more than once"):
        sql.from_query(engine, "SELECT 1 AS a, 2 AS a")


def test_an_empty_result_keeps_its_features(engine, tables):
    table = tables(sa.Column("id", sa.Integer), sa.Column("name", sa.Text))
    dataset = sql.from_table(engine, table.name)
    assert dataset.num_rows == 0
    assert dataset.features == Features(
        {"id": Value("int64" if engine.name == "sqlite" else "int32"), "name": Value("string")}
    )
    assert list(sql.from_table(engine, table.name, streaming=True)) == []


# -- tables: names, where, between, order -------------------------------------------------------


def test_a_table_name_with_sql_in_it_is_an_unknown_table_and_the_table_survives(engine, tables):
    table = tables(sa.Column("id", sa.Integer), rows=[{"id": 1}], prefix="users")
    hostile = f"{table.name}; DROP TABLE {table.name}"
    safe_url = engine.url.render_as_string(hide_password=True)

    for attempt in (
        lambda: sql.from_table(engine, hostile),
        lambda: sql.from_table(engine, hostile, streaming=True),
        lambda: sql.features_of(engine, hostile),
        lambda: sql.new_row_ranges(engine, hostile, "id"),
    ):
        with pytest.raises(LookupError) as caught:
            attempt()
        assert str(caught.value) == f"table {hostile!r} not found in {safe_url}"
    for bad_column in (
        dict(columns=["id", "id; DROP TABLE x"]),
        dict(order_by="id; DROP TABLE x"),
        dict(between=("id) OR (1=1", 0, 1)),
    ):
        with pytest.raises(LookupError, match=r"no column .*; its columns are \['id'\]"):
            sql.from_table(engine, table.name, **bad_column)
    assert sqlalchemy_rows(engine, table) == [{"id": 1}]


def test_identifiers_that_need_quoting_are_quoted_by_the_dialect(engine, tables):
    table = tables(
        sa.Column("select", sa.Integer),
        sa.Column("Mixed Case", sa.Text),
        rows=[{"select": 1, "Mixed Case": "a"}, {"select": 2, "Mixed Case": "b"}],
        prefix="Order Table",
    )
    dataset = sql.from_table(
        engine,
        table.name,
        columns=["Mixed Case", "select"],
        between=("select", 1, None),
        order_by="select",
    )
    assert dataset.to_dict() == {"Mixed Case": ["b"], "select": [2]}


def test_where_between_and_order_by_select_what_sqlalchemy_selects(engine, tables):
    start = datetime.datetime(2024, 1, 1)
    rows = [
        {"id": i, "kind": "ab"[i % 2], "at": start + datetime.timedelta(hours=i)} for i in range(20)
    ]
    table = tables(
        sa.Column("id", sa.Integer),
        sa.Column("kind", sa.String(1)),
        sa.Column("at", sa.DateTime),
        rows=reversed(rows),
    )

    dataset = sql.from_table(
        engine,
        table.name,
        columns=["id", "at"],
        where="kind = :kind",
        params={"kind": "a"},
        between=("id", 4, 12),
        order_by="id",
        batch_size=3,
    )
    assert dataset.to_list() == [
        {"id": r["id"], "at": r["at"]} for r in rows if r["kind"] == "a" and 4 < r["id"] <= 12
    ]
    by_time = sql.from_table(
        engine,
        table.name,
        columns=["id"],
        order_by="at",
        between=("at", None, start + datetime.timedelta(hours=2)),
    )
    assert by_time["id"][:] == [0, 1, 2]


def test_where_parameters_must_match_the_fragment(sqlite):
    with sqlite.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (id INTEGER)"))
    with pytest.raises(ValueError, match="where 'id = :wanted'.*named 'other'"):
        sql.from_table(sqlite, "t", where="id = :wanted", params={"other": 1})
    with pytest.raises(ValueError, match=r"params \['id'\] given without a where fragment"):
        sql.from_table(sqlite, "t", params={"id": 1})


def test_an_unknown_schema_or_table_is_a_lookup_error(engine):
    with pytest.raises(LookupError, match=r"table 'no_such_schema.nothing' not found"):
        sql.from_table(engine, "nothing", schema="no_such_schema")


def test_errors_never_show_the_password(postgresql):
    # trust authentication ignores the password; the URL still holds it
    engine = sa.create_engine(URLS["postgresql"].replace("postgres@", "postgres:s3cret-pw@"))
    name = f"pw_{uuid.uuid4().hex[:10]}"
    with postgresql.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {name} (id int, label text)"))
        connection.execute(sa.text(f"INSERT INTO {name} VALUES (1, 'x')"))
    messages = []
    try:
        for attempt in (
            lambda: sql.from_table(engine, "no_such_table"),
            lambda: sql.from_table(engine, name, columns=["nope"]),
            lambda: sql.from_table(engine, name, features={"label": Value("int32")}),
            lambda: sql.from_query(engine, f"SELECT label, label FROM {name}"),
            lambda: sql.new_row_ranges(engine, name, "nope"),
        ):
            with pytest.raises((LookupError, ValueError)) as caught:
                attempt()
            messages.append(str(caught.value))
        dataset = sql.from_table(engine, name)
        messages += [
            dataset.info.description,
            str(sql.from_query(engine, f"SELECT * FROM {name}", streaming=True).info.description),
        ]
    finally:
        engine.dispose()
        with postgresql.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {name}"))
    assert all("s3cret" not in message for message in messages), messages
    assert all("postgres:***@127.0.0.1" in message for message in messages), messages


# -- features ------------------------------------------------------------------------------------


def test_features_given_by_the_caller_override_inference(engine, tables):
    table = tables(
        sa.Column("id", sa.Integer),
        sa.Column("label", sa.String(8)),
        sa.Column("flag", sa.SmallInteger),
        rows=[{"id": 1, "label": "cat", "flag": 1}, {"id": 2, "label": "dog", "flag": 0}],
    )
    features = {
        "label": ClassLabel(names=["cat", "dog"]),
        "flag": Value("bool"),
        "id": Value("string"),
    }

    dataset = sql.from_table(engine, table.name, order_by="id", features=features)
    stream = sql.from_query(
        engine, f"SELECT * FROM {table.name} ORDER BY id", streaming=True, features=features
    )

    assert dataset.features == stream.features == Features(features)
    expected = [{"id": "1", "label": 0, "flag": True}, {"id": "2", "label": 1, "flag": False}]
    assert dataset.to_list() == list(stream) == expected
    with pytest.raises(LookupError, match=r"features given for \['nope'\], not columns of"):
        sql.from_table(engine, table.name, features={"nope": Value("int8")})
    assert sql.features_of(engine, table.name, features=features) == dataset.features
    partial = sql.features_of(
        engine, query=f"SELECT * FROM {table.name}", features={"flag": Value("bool")}
    )
    assert partial["flag"] == Value("bool") and partial["label"] == Value("string")


def test_features_of_a_table_or_query_is_what_the_reader_gives(engine, tables):
    table = tables(
        sa.Column("id", sa.BigInteger),
        sa.Column("at", sa.Date),
        rows=[{"id": 1, "at": datetime.date(2024, 1, 1)}],
    )
    assert sql.features_of(engine, table.name) == sql.from_table(engine, table.name).features
    query = f"SELECT id FROM {table.name}"
    assert sql.features_of(engine, query=query) == sql.from_query(engine, query).features
    assert sql.features_of(engine, table.name, columns=["at"]) == Features({"at": Value("date32")})
    with pytest.raises(TypeError, match="either a table name or query="):
        sql.features_of(engine, table.name, query=query)


# -- streaming and cursors ----------------------------------------------------------------------


def test_a_stream_runs_the_statement_again_on_every_pass(engine, tables):
    table = tables(
        sa.Column("id", sa.Integer),
        sa.Column("name", sa.Text),
        rows=[{"id": i, "name": f"n{i}"} for i in range(5)],
    )
    stream = sql.from_table(engine, table.name, order_by="id", streaming=True, batch_size=2)
    query = sql.from_query(engine, f"SELECT * FROM {table.name} ORDER BY id", streaming=True)

    assert isinstance(stream, IterableDataset) and isinstance(query, IterableDataset)
    in_order = sql.from_table(engine, table.name, order_by="id").to_list()
    assert list(stream) == list(query) == in_order
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"id": 5, "name": "n5"}])
    assert [row["id"] for row in stream] == [0, 1, 2, 3, 4, 5]
    assert [row["id"] for row in query] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
@pytest.mark.parametrize("streaming", [False, True])
def test_rows_come_through_a_server_side_cursor(request, server, streaming):
    engine = request.getfixturevalue(server)
    name = f"cur_{uuid.uuid4().hex[:10]}"
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {name} (id int)"))
        connection.execute(
            sa.text(f"INSERT INTO {name} VALUES (:id)"), [{"id": i} for i in range(250)]
        )
    cursors = []

    def record(connection, cursor, statement, parameters, context, executemany):
        if name in statement and "SELECT" in statement.upper():
            cursors.append(cursor)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        dataset = sql.from_table(engine, name, order_by="id", batch_size=100, streaming=streaming)
        assert [row["id"] for row in dataset] == list(range(250))
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {name}"))
    assert cursors
    for cursor in cursors:
        if server == "postgresql":
            assert cursor.name, "psycopg2 named (server-side) cursor expected"
        else:
            import pymysql.cursors

            assert isinstance(cursor, pymysql.cursors.SSCursor), type(cursor)


def test_stopping_a_mariadb_stream_early_leaves_the_pool_usable(mariadb):
    name = f"early_{uuid.uuid4().hex[:10]}"
    with mariadb.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {name} AS SELECT seq AS id FROM seq_1_to_200000"))
    try:
        stream = sql.from_query(
            mariadb, f"SELECT id FROM {name} ORDER BY id", streaming=True, batch_size=1000
        )
        assert [row["id"] for row in stream.take(3)] == [1, 2, 3]
        for _ in range(3):  # more stops than idle connections: each one went back healthy
            iterator = iter(stream)
            assert next(iterator) == {"id": 1}
            iterator.close()
        assert sql.from_table(mariadb, name).num_rows == 200_000
    finally:
        with mariadb.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {name}"))


# -- row ranges ----------------------------------------------------------------------------------


def read_range(engine, table, column, row_range):
    return sql.from_table(
        engine, table, between=(column, row_range.low, row_range.high), order_by=column
    )[column][:]


def test_new_row_ranges_never_split_ties_and_cover_each_row_once(engine, tables):
    ids = [1, 2, 2, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]
    table = tables(
        sa.Column("id", sa.Integer, index=True),
        sa.Column("note", sa.Text),
        rows=[{"id": i, "note": None} for i in ids] + [{"id": None, "note": "x"}],
    )

    ranges = sql.new_row_ranges(engine, table.name, "id", rows_per_range=3, max_ranges=10)

    assert ranges == [
        sql.RowRange(None, 2, 4),
        sql.RowRange(2, 5, 4),
        sql.RowRange(5, 8, 3),
        sql.RowRange(8, 10, 2),
    ]
    assert [i for r in ranges for i in read_range(engine, table.name, "id", r)] == ids
    assert (
        sql.new_row_ranges(engine, table.name, "id", rows_per_range=3, max_ranges=2) == ranges[:2]
    )
    assert sql.new_row_ranges(engine, table.name, "id", after=5, rows_per_range=3) == ranges[2:]
    assert sql.new_row_ranges(engine, table.name, "id", after=10) == []
    # up to `through` only: the last range ends at the highest value not above it
    assert sql.new_row_ranges(engine, table.name, "id", rows_per_range=3, through=7) == [
        *ranges[:2], sql.RowRange(5, 7, 2)
    ]  # fmt: skip
    assert sql.new_row_ranges(engine, table.name, "id", after=2, through=2) == []
    assert sql.highest_cursor_value(engine, table.name, "id") == 10
    with pytest.raises(LookupError, match="no column 'nope'"):
        sql.new_row_ranges(engine, table.name, "nope")
    with pytest.raises(LookupError, match="no column 'nope'"):
        sql.highest_cursor_value(engine, table.name, "nope")


@pytest.mark.parametrize("kind", ["timestamp", "timestamptz", "date", "decimal"])
def test_new_row_ranges_of_timestamps_dates_and_decimals_round_trip_through_keys(
    engine, tables, kind
):
    if kind == "timestamptz" and engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL stores a timestamp's time zone")
    start = datetime.datetime(2024, 3, 1, 12, 0, 0, 250000)
    zoned = start.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
    column_type, values = {
        "timestamptz": (
            sa.DateTime(timezone=True),
            [zoned + datetime.timedelta(minutes=i // 2) for i in range(9)],
        ),
        "timestamp": (
            PRECISE_DATETIME,
            [start + datetime.timedelta(minutes=i // 2) for i in range(9)],
        ),
        "date": (
            sa.Date,
            [datetime.date(2024, 1, 1) + datetime.timedelta(days=i // 2) for i in range(9)],
        ),
        "decimal": (sa.Numeric(10, 2), [decimal.Decimal(i // 2) / 4 for i in range(9)]),
    }[kind]
    table = tables(
        sa.Column("id", sa.Integer),
        sa.Column("cursor", column_type, index=True),
        rows=[{"id": i, "cursor": value} for i, value in enumerate(values)],
    )

    ranges = sql.new_row_ranges(engine, table.name, "cursor", rows_per_range=3)

    assert [r.num_rows for r in ranges] == [4, 4, 1]  # ties (pairs) are never split
    assert ranges[0].high == values[3] and ranges[-1].high == values[-1]
    read = []
    for r in ranges:
        low, high = parse_range_key(range_key(r.low, r.high))  # as the sensor stores them
        assert (low, high) == (r.low, r.high)
        rows = sql.from_table(engine, table.name, between=("cursor", low, high), order_by="id")
        read += rows["id"][:]
    assert read == list(range(9))


def test_new_row_ranges_only_query_rows_after_the_cursor(engine, tables):
    table = tables(sa.Column("id", sa.Integer, index=True), rows=[{"id": i} for i in range(50)])
    statements = []

    def record(connection, cursor, statement, parameters, context, executemany):
        if table.name in statement:
            statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        ranges = sql.new_row_ranges(engine, table.name, "id", after=39, rows_per_range=4)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert ranges == [sql.RowRange(39, 43, 4), sql.RowRange(43, 47, 4), sql.RowRange(47, 49, 2)]
    reads = [
        (s, p)
        for s, p in statements
        if "count(" in s.lower() or "limit" in s.lower() or "max(" in s.lower()
    ]
    assert reads and len(reads) == 7  # per range: boundary and count; then the last max
    for statement, parameters in reads:
        bound = parameters.values() if isinstance(parameters, dict) else parameters
        assert ">" in statement and any(value in (39, 43, 47) for value in bound), statement


# -- memory --------------------------------------------------------------------------------------


def run_probes(url, table, readers):
    """`bench/sql_bench.py --probe` per reader, each in a fresh process (its own VmHWM), all at
    once to keep the test short."""
    processes = {
        reader: subprocess.Popen(
            [sys.executable, "bench/sql_bench.py", "--probe", reader, url, table],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
        )  # fmt: skip
        for reader in readers
    }
    reports = {}
    for reader, process in processes.items():
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        reports[reader] = json.loads(out.strip().splitlines()[-1])
    return reports


def assert_memory_table_read_within_limit(engine, name):
    """Read the MEMORY_ROWS table `name` map-style (Arrow file written, then mapped) and as a
    stream, each in its own process, within MEMORY_LIMIT_MB above baseline; then drop it."""
    try:
        url = engine.url.render_as_string(hide_password=False)
        reports = run_probes(url, name, ["ds_assets", "ds_assets-stream"])
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {name}"))
    for report in reports.values():
        assert report["rows"] == MEMORY_ROWS, report
        assert report["growth_mb"] < MEMORY_LIMIT_MB, report


def test_reading_5m_postgresql_rows_stays_under_300mb_above_baseline(postgresql):
    name = f"mem_{uuid.uuid4().hex[:10]}"
    with postgresql.begin() as connection:
        connection.execute(
            sa.text(
                f"CREATE UNLOGGED TABLE {name} AS SELECT g::bigint AS id, 'row ' || g AS name, "
                "g * 0.5::float8 AS score FROM generate_series(1, :rows) AS g"
            ),
            {"rows": MEMORY_ROWS},
        )
    assert_memory_table_read_within_limit(postgresql, name)


def test_reading_5m_mariadb_rows_stays_under_300mb_above_baseline(mariadb):
    name = f"mem_{uuid.uuid4().hex[:10]}"
    with mariadb.begin() as connection:  # MariaDB's SEQUENCE engine makes the rows server-side
        connection.execute(
            sa.text(
                f"CREATE TABLE {name} ENGINE=InnoDB AS SELECT CAST(seq AS SIGNED) AS id, "
                f"CONCAT('row ', seq) AS name, seq * 0.5e0 AS score FROM seq_1_to_{MEMORY_ROWS}"
            )
        )
    assert_memory_table_read_within_limit(mariadb, name)


def test_secrets_in_the_query_string_are_never_shown(sqlite):
    from resources import SQLResource

    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/test?sslmode=disable&password=Secret1"
    with pytest.raises(ValueError, match=r"holds password in its query string") as caught:
        SQLResource(url=url).get_engine()
    assert "Secret1" not in str(caught.value) and "password=***" in str(caught.value)
    engine = sa.create_engine(f"{sqlite.url}?auth_token=Secret2")
    try:
        with pytest.raises(LookupError) as missing:
            sql.from_table(engine, "no_such_table")
    finally:
        engine.dispose()
    assert "Secret2" not in str(missing.value) and "auth_token=***" in str(missing.value)
