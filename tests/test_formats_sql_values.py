"""Values that a driver, SQLAlchemy or pyarrow would change on the way: the SQL reader keeps
them exact or fails naming the column and row, never a silently different value.

Against the real PostgreSQL and MariaDB servers on 127.0.0.1, and SQLite (see
`test_formats_sql.py` for the fixtures' servers).
"""

import contextlib
import datetime
import decimal
import uuid

import pytest
import sqlalchemy as sa
from datasets import Json, List, Value

from ds_assets.formats import sql


@contextlib.contextmanager
def scratch_table(engine: sa.Engine, columns: str, values: str = ""):
    """A uniquely named table `(columns)` holding `values` (SQL text), dropped afterwards."""
    name = f"v_{uuid.uuid4().hex[:10]}"
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {name} ({columns})"))
        if values:
            connection.execute(sa.text(f"INSERT INTO {name} VALUES {values}"))
    try:
        yield name
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {name}"))


def both_readers(engine: sa.Engine, table: str, **options):
    """The table read by `from_table` and by `from_query`, map-style and streamed."""
    query = f"SELECT * FROM {table} ORDER BY id"
    yield sql.from_table(engine, table, order_by="id", **options)
    yield sql.from_query(engine, query, **options)
    yield sql.from_table(engine, table, order_by="id", streaming=True, **options)
    yield sql.from_query(engine, query, streaming=True, **options)


def rows_of(dataset) -> list[dict]:
    return list(dataset) if isinstance(dataset, sql.IterableDataset) else dataset.to_list()


# -- pyarrow's unchecked conversions -----------------------------------------------------------


def test_a_fraction_in_a_column_inferred_as_integers_is_an_error_not_truncated(sqlite):
    with scratch_table(sqlite, "id INTEGER, v", "(1, 1), (2, 2.5)") as table:
        for options in ({}, {"streaming": True}):
            with pytest.raises(ValueError, match=r"column 'v', row 1: cannot read 2\.5"):
                rows_of(sql.from_table(sqlite, table, order_by="id", batch_size=1, **options))
        assert sql.from_table(sqlite, table, order_by="id")["v"] == [1.0, 2.5]


def test_a_float_read_as_a_declared_integer_is_an_error_not_truncated(sqlite):
    with scratch_table(sqlite, "id INTEGER, d REAL", "(1, 2.0), (2, 2.5)") as table:
        with pytest.raises(ValueError, match=r"column 'd', row 1: .*not a whole number"):
            sql.from_table(sqlite, table, order_by="id", features={"d": Value("int64")})
        whole = sql.from_query(
            sqlite, f"SELECT d FROM {table} WHERE id = 1", features={"d": Value("int64")}
        )
        assert whole["d"] == [2]


def test_a_decimal_wider_than_the_inferred_type_is_an_error_not_zero(postgresql):
    wide = "1.123456789012345678901234567890123456789"  # 40 digits: more than a decimal128
    with scratch_table(postgresql, "id int, v numeric", f"(1, 1), (2, {wide})") as table:
        for dataset in (
            lambda: sql.from_table(postgresql, table, order_by="id", batch_size=1),
            lambda: sql.from_query(postgresql, f"SELECT * FROM {table} ORDER BY id", batch_size=1),
        ):
            with pytest.raises(ValueError, match=r"column 'v', row 1: cannot read Decimal"):
                dataset()
        exact = sql.from_table(postgresql, table, order_by="id")  # one batch sees both
        assert exact["v"] == [decimal.Decimal(1), decimal.Decimal(wide)]


def test_list_values_nested_deeper_than_the_feature_are_an_error(postgresql):
    with scratch_table(
        postgresql,
        "id int, words text[], flags bool[]",
        "(1, '{a,b}', '{t}'), (2, '{{a,b},{c,d}}', '{{t,f}}')",
    ) as table:
        for column in ("words", "flags"):
            query = f"SELECT {column} FROM {table} ORDER BY id"
            with pytest.raises(ValueError, match=rf"column '{column}', row 1: cannot read \[\["):
                sql.from_query(postgresql, query)
        first = sql.from_query(postgresql, f"SELECT * FROM {table} WHERE id = 1")
        assert first.to_list() == [{"id": 1, "words": ["a", "b"], "flags": [True]}]


# -- what the drivers convert ------------------------------------------------------------------


def test_mariadb_time_is_a_duration_past_a_day_and_below_zero(mariadb):
    values = "(1, '-12:30:00'), (2, '100:00:00'), (3, '838:59:59'), (4, '-00:00:01.5')"
    with scratch_table(mariadb, "id int, v time(1)", values) as table:
        expected = [
            -datetime.timedelta(hours=12, minutes=30),
            datetime.timedelta(hours=100),
            datetime.timedelta(hours=838, minutes=59, seconds=59),
            -datetime.timedelta(seconds=1.5),
        ]
        for dataset in both_readers(mariadb, table):
            assert dataset.features["v"] == Value("duration[us]")
            assert [row["v"] for row in rows_of(dataset)] == expected


def test_postgresql_time_with_time_zone_keeps_its_offset_as_text(postgresql):
    with scratch_table(
        postgresql,
        "id int, at timetz, ats timetz[]",
        "(1, '10:00+02', '{10:00-05,11:30:15.5+05:30}'), (2, NULL, NULL)",
    ) as table:
        for dataset in both_readers(postgresql, table):
            assert dataset.features["at"] == Value("string")
            assert dataset.features["ats"] == List(Value("string"))
            assert rows_of(dataset) == [
                {
                    "id": 1,
                    "at": "10:00:00+02:00",
                    "ats": ["10:00:00-05:00", "11:30:15.500000+05:30"],
                },
                {"id": 2, "at": None, "ats": None},
            ]
        with pytest.raises(ValueError, match=r"column 'at', row 0: .*UTC offset"):
            sql.from_table(postgresql, table, order_by="id", features={"at": Value("time64[us]")})


def test_a_postgresql_query_null_first_then_numbers_is_an_error_not_text(postgresql):
    with scratch_table(
        postgresql, "id int, v numeric, arr numeric[]", "(1, NULL, NULL), (2, 1.5, '{1.5}')"
    ) as table:
        query = f"SELECT * FROM {table} ORDER BY id"
        with pytest.raises(ValueError, match=r"column 'v', row 1: .*first 1 values were all NULL"):
            sql.from_query(postgresql, query, batch_size=1)
        with pytest.raises(ValueError, match=r"column 'arr', row 1: .*first 1 values were all"):
            sql.from_query(postgresql, query, batch_size=1, features={"v": Value("float64")})
        given = {"v": Value("string"), "arr": List(Value("float64"))}
        read = sql.from_query(postgresql, query, batch_size=1, features=given)
        assert read.to_list()[1] == {"id": 2, "v": "1.5", "arr": [1.5]}


def test_objects_without_a_text_form_are_not_read_as_their_python_repr(postgresql):
    query = "SELECT int4range(1, 5) AS r"
    with pytest.raises(ValueError, match=r"column 'r', row 0: cannot read NumericRange.*in SQL"):
        sql.from_query(postgresql, query, features={"r": Value("string")})
    text = sql.from_query(postgresql, "SELECT int4range(1, 5)::text AS r")
    assert text["r"] == ["[1,5)"]


def test_uuid_arrays_are_lists_of_strings(postgresql):
    key = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    with scratch_table(postgresql, "id int, keys uuid[]", f"(1, '{{{key},NULL}}')") as table:
        for dataset in both_readers(postgresql, table):
            assert dataset.features["keys"] == List(Value("string"))
            assert rows_of(dataset) == [{"id": 1, "keys": [key, None]}]


def test_postgresql_numeric_with_a_negative_scale(postgresql):
    with scratch_table(postgresql, "id int, v numeric(5, -2)", "(1, 1234567), (2, 12345)") as table:
        for dataset in both_readers(postgresql, table):
            assert dataset.features["v"] == Value("decimal128(7, 0)")
            assert [row["v"] for row in rows_of(dataset)] == [1234600, 12300]


def test_mariadb_unsigned_bit_and_decimal_columns_read_alike_from_table_and_query(mariadb):
    with scratch_table(
        mariadb,
        "id int, price decimal(10, 2) unsigned, flag bit(1), mask bit(64), big bigint unsigned",
        f"(1, 99999999.99, b'1', b'1{'0' * 62}1', 18446744073709551615), (2, 0, b'0', 0, 0)",
    ) as table:
        for dataset in both_readers(mariadb, table):
            assert dataset.features["price"] == Value("decimal128(10, 2)")
            assert dataset.features["flag"] == Value("bool")
            assert (dataset.features["mask"], dataset.features["big"]) == (Value("uint64"),) * 2
            assert rows_of(dataset) == [
                {
                    "id": 1,
                    "price": decimal.Decimal("99999999.99"),
                    "flag": True,
                    "mask": 2**63 + 1,
                    "big": 2**64 - 1,
                },
                {"id": 2, "price": decimal.Decimal("0.00"), "flag": False, "mask": 0, "big": 0},
            ]


# -- errors that name the column, or the rows ---------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "stored", "problem"),
    [("DATETIME", "not a date", "isoformat"), ("JSON", "not json", "Expecting value")],
)
def test_a_stored_value_unfit_for_its_declared_type_names_column_and_row(
    sqlite, declared, stored, problem
):
    with scratch_table(sqlite, f"id INTEGER, v {declared}", f"(1, NULL), (2, '{stored}')") as table:
        with pytest.raises(ValueError) as caught:
            sql.from_table(sqlite, table, order_by="id")
        message = str(caught.value)
        assert message.startswith(f"table '{table}' at sqlite")
        assert f"column 'v', row 1: the value '{stored}' does not fit" in message
        assert problem in message and "CAST" in message
        cast = sql.from_query(sqlite, f"SELECT CAST(v AS TEXT) AS v FROM {table} ORDER BY id")
        assert cast["v"] == [None, stored]


def test_a_value_the_driver_cannot_convert_names_the_rows(postgresql):
    with scratch_table(
        postgresql, "id int, at timestamp", "(1, '2024-01-01'), (2, '294276-12-31')"
    ) as table:
        with pytest.raises(ValueError) as caught:
            sql.from_table(postgresql, table, order_by="id", batch_size=1)
        message = str(caught.value)
        assert f"table '{table}' at postgresql" in message and "rows 1 to 1" in message
        assert "year 294276 is out of range" in message and "cast the column" in message


def test_json_that_would_not_read_back_as_parsed_names_the_column_and_row(postgresql):
    with scratch_table(
        postgresql, "id int, doc jsonb", "(1, '{\"n\": 18446744073709551615}'), (2, '[1.5, 2]')"
    ) as table:
        exact = sql.from_table(postgresql, table, order_by="id")
        assert exact["doc"] == [{"n": 2**64 - 1}, [1.5, 2]]
        with postgresql.begin() as connection:
            connection.execute(
                sa.text(f"INSERT INTO {table} VALUES (3, '[12345678901234567890123]')")
            )
        for read in (
            sql.from_table,
            lambda engine, name: sql.from_query(engine, f"SELECT * FROM {name}"),
        ):
            with pytest.raises(ValueError, match=r"column 'doc', row 2: .*does not fit 64 bits"):
                read(postgresql, table)


def test_overrides_that_would_round_or_overflow_are_errors(postgresql):
    cases = [
        ("select 9007199254740993::bigint AS x", Value("float64"), "float64 cannot hold it"),
        ("select 16777217::int AS x", Value("float32"), "float32 cannot hold it"),
        ("select 1e300::float8 AS x", Value("float32"), "float32 cannot hold it"),
        ("select '1e400'::text AS x", Value("float64"), "float64 cannot hold it"),
        ("select timestamp '2024-01-01 10:30' AS x", Value("date32"), "date32 has none"),
        ("select timestamp '2024-01-01 10:30:00.5' AS x", Value("timestamp[s]"), "finer than"),
        ("select time '10:30:00.25' AS x", Value("time32[ms]"), None),
    ]
    for query, feature, problem in cases:
        if problem is None:  # whole milliseconds fit time32[ms]
            read = sql.from_query(postgresql, query, features={"x": feature})
            assert read["x"] == [datetime.time(10, 30, 0, 250_000)]
            continue
        with pytest.raises(ValueError, match=rf"column 'x', row 0: .*{problem}"):
            sql.from_query(postgresql, query, features={"x": feature})
    exact = sql.from_query(postgresql, "select 9007199254740992::bigint AS x",
                           features={"x": Value("float64")})  # fmt: skip
    assert exact["x"] == [9007199254740992.0]


def test_nested_arrays_of_uuids_and_zoned_times_are_errors_not_text(postgresql):
    for element in ("uuid", "timetz"):
        value = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" if element == "uuid" else "10:00+02"
        query = f"select '{{{{{value}}}}}'::{element}[] AS v"
        with pytest.raises(ValueError, match=r"column 'v', row 0: cannot read \[\["):
            sql.from_query(postgresql, query)


def test_arrays_psycopg2_cannot_parse_read_as_their_text_from_tables_too(postgresql):
    with scratch_table(postgresql, "id int, m money[]", "(1, '{1.5,NULL}')") as table:
        for dataset in both_readers(postgresql, table):
            assert rows_of(dataset) == [{"id": 1, "m": "{$1.50,NULL}"}]


def test_driver_conversion_errors_name_the_rows_even_on_the_first_row(postgresql):
    with pytest.raises(ValueError, match=r"rows 0 to 9999: the database driver cannot convert"):
        sql.from_query(postgresql, "SELECT '0044-03-15 BC'::date AS t")
    with (
        scratch_table(
            postgresql, "id int, d date[]", "(1, '{2024-01-01}'), (2, '{infinity}')"
        ) as t,
        pytest.raises(ValueError, match=r"rows 1 to 1: .*DataError"),
    ):
        sql.from_table(postgresql, t, order_by="id", batch_size=1)


def test_sqlite_booleans_and_numbers_are_checked_as_stored(sqlite):
    with scratch_table(
        sqlite, "id INTEGER, b BOOLEAN, n NUMERIC", "(1, 1, 9223372036854775807)"
    ) as t:
        assert sql.from_table(sqlite, t)[0] == {"id": 1, "b": True, "n": decimal.Decimal(2**63 - 1)}
        with sqlite.begin() as connection:
            connection.execute(sa.text(f"INSERT INTO {t} VALUES (2, 2, 1)"))
        with pytest.raises(ValueError, match=r"column 'b', row 1: cannot read 2"):
            sql.from_table(sqlite, t, order_by="id")


def test_json_arrays_read_as_one_json_value_from_tables_and_queries(postgresql):
    with scratch_table(
        postgresql, "id int, docs jsonb[]", "(1, ARRAY['{\"a\": 1}', '[2]']::jsonb[]), (2, NULL)"
    ) as table:
        for dataset in both_readers(postgresql, table):
            assert dataset.features["docs"] == Json()
            assert rows_of(dataset) == [{"id": 1, "docs": [{"a": 1}, [2]]}, {"id": 2, "docs": None}]


def test_numbers_read_as_decimals_at_once_equal_the_value_by_value_path():
    """`sql._numbers_as_decimals` (numpy, for SQLite's float NUMERIC values) gives exactly the
    decimals of the per-value coercion, or leaves the batch to it whenever it refuses a value."""
    import random

    import pyarrow as pa

    rng = random.Random(0)
    cases = [0.1, 0.125, -0.0, 1e-7, 12345678.91, 2.0**51 / 100, 9999999999.99, 1e10, 7, -3]
    cases += [float("nan"), float("inf"), 10**20, 0.3 - 0.1, 1.005, 2.675, None]
    for _ in range(3000):
        cases.append(round(rng.uniform(-1e6, 1e6), rng.randint(0, 3)))
        cases.append(rng.uniform(-10, 10))  # mostly more digits than the scale
    for precision, scale in [(12, 2), (38, 2), (5, 0), (18, 6), (76, 3)]:
        kind = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(76, scale)
        coerce = sql._decimal_coercion(precision, scale)
        for value in cases:
            try:
                expected = pa.array([None if value is None else coerce(value)], type=kind)
            except (ValueError, TypeError, ArithmeticError, pa.ArrowException):
                expected = None
            got = sql._numbers_as_decimals([value], kind)
            assert got is None or got.equals(expected), (value, precision, scale)
            if expected is None:
                assert got is None, (value, precision, scale)
        batch = [value for value in cases if sql._numbers_as_decimals([value], kind) is not None]
        assert len(batch) > 50  # the fast path does take most values that fit
        expected = pa.array([None if v is None else coerce(v) for v in batch], type=kind)
        assert sql._numbers_as_decimals(batch, kind).equals(expected)


def test_sqlite_numeric_floats_read_exactly_and_refused_naming_the_row(sqlite):
    rows = "(1, 0.1), (2, 7), (3, NULL), (4, 2.5), (5, 0.125)"
    with scratch_table(sqlite, "id INTEGER, amount NUMERIC(12, 2)", rows) as table:
        first = sql.from_table(sqlite, table, where="id < 5", order_by="id")
        expected = [decimal.Decimal("0.10"), decimal.Decimal("7.00"), None, decimal.Decimal("2.50")]
        assert first["amount"][:] == expected
        with pytest.raises(ValueError, match=r"column 'amount', row 4: cannot read 0.125"):
            sql.from_table(sqlite, table, order_by="id")
