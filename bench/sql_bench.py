"""SQL reader: rows/s, MB/s and peak memory against `datasets.Dataset.from_sql` on the same table.

    python bench/sql_bench.py                        # every server, SQL_BENCH_ROWS rows each
    SQL_BENCH_ROWS=20000 python bench/sql_bench.py   # a quick run
    SQL_BENCH_SERVERS=postgresql SQL_BENCH_REPEAT=1 python bench/sql_bench.py
    python bench/sql_bench.py --probe READER URL TABLE   # one measurement, as a JSON line

For each server (PostgreSQL and MariaDB on 127.0.0.1, SQLite in a temporary file) a table of
SQL_BENCH_ROWS rows (default 1,000,000: bigint, text, double, timestamp, decimal, boolean) is
made server-side, then read in a fresh process per reader, so each peak RSS (VmHWM) is its own:

- `ds_assets`: `sql.from_table(engine, table)`, map-style (written to an Arrow file);
- `ds_assets-stream`: `sql.from_table(engine, table, streaming=True)`, every batch iterated;
- `datasets`: `Dataset.from_sql(table, url)` (pandas `read_sql` in chunks of 10,000 rows),
  the reference of the first ratios;
- `raw`: the driver's own server-side cursor (psycopg2 named cursor, pymysql `SSCursor`,
  sqlite3) fetching 10,000 tuples at a time and nothing more: the practical limit, the
  reference of the last ratio.

Each reader runs SQL_BENCH_REPEAT times (default 3) in turns and its fastest run is kept. One
line per measurement: rows/s, MB/s of Arrow data produced, CPU seconds of the reading process
(less sensitive than wall time to other work on the machine), peak RSS growth above the
process's baseline after imports, and the speed and CPU ratios against `datasets` in the same
run. The table is dropped at the end. URLs: SQL_BENCH_POSTGRESQL_URL, SQL_BENCH_MARIADB_URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

from memory import current_rss, peak_rss  # bench/memory.py: the script folder is on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URLS = {
    "postgresql": os.environ.get(
        "SQL_BENCH_POSTGRESQL_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("SQL_BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
READERS = ("datasets", "ds_assets", "ds_assets-stream", "raw")


def probe(reader: str, url: str, table: str) -> dict:
    """Read `table` with `reader` in this process; rows, seconds, Arrow bytes and memory."""
    import sqlalchemy as sa
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    from ds_assets.formats import sql

    disable_progress_bar()
    engine = sa.create_engine(url)
    with tempfile.TemporaryDirectory(prefix="sql-bench-") as cache:
        os.environ["DS_ASSETS_CACHE"] = cache
        baseline = current_rss()
        started, cpu_started = time.perf_counter(), time.process_time()
        if reader == "datasets":
            dataset = Dataset.from_sql(table, url, cache_dir=cache)
            rows, nbytes = dataset.num_rows, dataset.data.nbytes
        elif reader == "ds_assets":
            dataset = sql.from_table(engine, table)
            rows, nbytes = dataset.num_rows, dataset.data.nbytes
        elif reader == "ds_assets-stream":
            stream = sql.from_table(engine, table, streaming=True).with_format("arrow")
            rows = nbytes = 0
            for batch in stream.iter(batch_size=10_000):
                rows += batch.num_rows
                nbytes += batch.nbytes
        elif reader == "raw":
            rows, nbytes = _raw_fetch(engine, table), 0
        else:
            raise ValueError(f"unknown reader {reader!r}; expected one of {READERS}")
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        peak = peak_rss()
    return {
        "reader": reader,
        "rows": rows,
        "bytes": nbytes,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "baseline": baseline,
        "peak": peak,
        "growth_mb": round((peak - baseline) / 1024**2, 1),
    }


def _raw_fetch(engine, table: str) -> int:
    """Rows of `table` fetched through the DB-API driver's server-side cursor, 10,000 at a time
    (as tuples, converted by the driver, nothing else done with them)."""
    connection = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            cursor = connection.cursor(name="raw_bench")
            cursor.itersize = 10_000
        elif engine.dialect.name in ("mysql", "mariadb"):
            import pymysql.cursors

            cursor = connection.cursor(pymysql.cursors.SSCursor)
        else:
            cursor = connection.cursor()
        cursor.execute(f"SELECT * FROM {table}")  # a name made by this script
        rows = 0
        while batch := cursor.fetchmany(10_000):
            rows += len(batch)
        cursor.close()
        return rows
    finally:
        connection.close()


def run_probe(reader: str, url: str, table: str) -> dict:
    """`probe` in a fresh process (so its peak memory is its own)."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--probe", reader, url, table],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT, HF_DATASETS_DISABLE_PROGRESS_BARS="1"),
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{reader} on {table} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def create_table(server: str, url: str, table: str, rows: int) -> None:
    """A table of `rows` rows made by the server itself (no client round trip per row)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        if server == "postgresql":
            connection.exec_driver_sql(
                f"CREATE TABLE {table} AS SELECT g::bigint AS id, 'name ' || g AS name, "
                "g * 0.5::float8 AS score, "
                "timestamp '2024-01-01' + g * interval '1 second' AS created, "
                "((g %% 100000) / 100.0)::numeric(12, 2) AS amount, g %% 2 = 0 AS flag "
                "FROM generate_series(1, %(rows)s) AS g",
                {"rows": rows},
            )
        elif server == "mariadb":
            connection.exec_driver_sql(
                f"CREATE TABLE {table} (id BIGINT, name VARCHAR(32), score DOUBLE, "
                "created DATETIME, amount DECIMAL(12, 2), flag BOOLEAN)"
            )
            connection.exec_driver_sql(
                f"INSERT INTO {table} SELECT seq, CONCAT('name ', seq), seq * 0.5, "
                "TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND, (seq %% 100000) / 100, "
                f"seq %% 2 = 0 FROM seq_1_to_{int(rows)}"
            )
        else:
            connection.exec_driver_sql(
                f"CREATE TABLE {table} (id INTEGER, name TEXT, score REAL, created DATETIME, "
                "amount NUMERIC(12, 2), flag BOOLEAN)"
            )
            connection.exec_driver_sql(
                "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?) "
                f"INSERT INTO {table} SELECT x, 'name ' || x, x * 0.5, "
                "datetime('2024-01-01', '+' || x || ' seconds'), (x % 100000) / 100.0, x % 2 "
                "FROM g",
                (rows,),
            )
    engine.dispose()


def drop_table(url: str, table: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


def line(server: str, report: dict, reference: dict, raw: dict) -> str:
    rate = report["rows"] / report["seconds"]
    megabytes = report["bytes"] / 1e6 / report["seconds"]
    return (
        f"{server:<10} {report['reader']:<17} {report['rows']:>11,} rows "
        f"{report['seconds']:>7.2f} s {rate:>11,.0f} rows/s {megabytes:>6.1f} MB/s  "
        f"client CPU {report['cpu_seconds']:>6.2f} s  peak RSS +{report['growth_mb']:>6.1f} MB  "
        f"vs datasets: speed x{reference['seconds'] / report['seconds']:.2f}, "
        f"CPU x{reference['cpu_seconds'] / report['cpu_seconds']:.2f}; "
        f"time / raw cursor's {report['seconds'] / raw['seconds']:.2f}x"
    )


def best_of(repeats: int, url: str, table: str) -> dict[str, dict]:
    """Each reader `repeats` times, in turns (so a load change on the machine hits all of
    them); the fastest run of each is kept, the least disturbed by other work."""
    best: dict[str, dict] = {}
    for _ in range(repeats):
        for reader in READERS:
            report = run_probe(reader, url, table)
            if reader not in best or report["seconds"] < best[reader]["seconds"]:
                best[reader] = report
    return best


def main() -> None:
    rows = int(os.environ.get("SQL_BENCH_ROWS", "1000000"))
    repeats = int(os.environ.get("SQL_BENCH_REPEAT", "3"))
    servers = os.environ.get("SQL_BENCH_SERVERS", "postgresql,mariadb,sqlite").split(",")
    folder = tempfile.mkdtemp(prefix="sql-bench-")
    for server in servers:
        url = URLS.get(server) or f"sqlite:///{os.path.join(folder, 'bench.db')}"
        table = f"sql_bench_{uuid.uuid4().hex[:10]}"
        try:
            create_table(server, url, table, rows)
            reports = best_of(repeats, url, table)
        finally:
            drop_table(url, table)
        for reader in READERS:
            print(line(server, reports[reader], reports["datasets"], reports["raw"]), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        print(json.dumps(probe(*sys.argv[2:5])))
    else:
        main()
