"""Sensors that add one dynamic partition per new file or per range of new rows, exactly once.

Exactly once, across overlapping ticks, restarts and a reset cursor, rests on three things:
the cursor (stored by Dagster after each tick) remembers how far the listing got; a partition
already in the instance is never added again, and SQL ranges start after the last one added;
each run request's `run_key` is the partition key, which Dagster never launches twice for one
sensor, so a request repeated after a daemon stopped mid-tick launches nothing twice.
"""

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from dagster import (
    AssetKey,
    AssetsDefinition,
    DagsterInvalidDefinitionError,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ds_assets.assets.sources import SOURCE_METADATA_KEY
from ds_assets.formats.files import (
    FileEntry,
    files_named,
    is_s3,
    list_files,
    pattern_matcher,
    s3_client_of,
)
from ds_assets.formats.rows import format_bound, parse_bound, parse_range_key, range_key


def _source_config(source: AssetsDefinition, kind: str, factory: str) -> dict[str, Any]:
    key = source.key
    metadata = source.specs_by_key[key].metadata or {}
    config = metadata.get(SOURCE_METADATA_KEY)
    config = getattr(config, "data", config)
    if not config or config.get("kind") != kind:
        raise DagsterInvalidDefinitionError(
            f"{factory}: asset {key.to_user_string()} is not a "
            f"{'file' if kind == 'files' else 'SQL'} source made by ds_assets"
        )
    return config


def _result(context, source, keys, cursor, selection):
    """Partitions for the `keys` not yet in the instance, and a run request for every key.

    A key that is a partition already still gets its request: Dagster's daemon adds a tick's
    partitions before it records the tick's run requests, so a daemon stopped between the two
    leaves partitions whose runs were never requested. The next tick, from the cursor stored
    before, asks again, and the `run_key` (the partition key) makes Dagster skip any request
    whose run it launched already."""
    partitions = source.partitions_def
    missing = [k for k in keys if not context.instance.has_dynamic_partition(partitions.name, k)]
    requests = [RunRequest(run_key=key, partition_key=key, asset_selection=selection)
                for key in keys]  # fmt: skip
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[partitions.build_add_request(missing)] if missing else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )


def _ready_files(
    entries: Sequence[FileEntry],
    pending: dict[str, str],
    skip: Any,
    pattern_matches,
    max_new: int,
    ready_marker: str | None,
    seen_before: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """(names of listed files now complete, at most `max_new`; signatures of the others to look
    at again) among the entries matching the pattern and not in `skip`. With `seen_before`, a
    file with its marker is complete only once it is in `pending` too (seen at a tick before)."""
    names = {entry.name for entry in entries}
    ready, next_pending = [], {}
    for entry in entries:
        if not pattern_matches(entry.name) or entry.name in skip:
            continue
        if ready_marker and entry.name.endswith(ready_marker):
            continue  # a marker, even where the pattern matches it (`*.tar*` and `.done`)
        signature = f"{entry.size}:{entry.stamp}"
        if ready_marker:
            complete = entry.name + ready_marker in names
            complete = complete and (not seen_before or entry.name in pending)
        else:
            complete = pending.get(entry.name) == signature
        if complete and len(ready) < max_new:
            ready.append(entry.name)
        else:
            next_pending[entry.name] = signature
    return ready, next_pending


def file_tick(
    entries: Sequence[FileEntry],
    cursor: dict[str, Any],
    pattern_matches,
    *,
    max_new: int,
    ready_marker: str | None,
    parked_entries: Sequence[FileEntry] = (),
    parked_checked: Sequence[str] = (),
    park_after: int | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Decide which listed files are ready, and the next cursor (pure, for testing).

    A file is ready when `<name><ready_marker>` is listed, or, without a marker, when its size
    and modification stamp are the same as at the previous tick (a file still being written
    changes between ticks). `after` advances over the longest prefix of the listing that is
    done, so a file that is not ready yet is looked at again next tick, and the files taken
    after it are kept in `done`. Once more than `park_after` are kept so, the files holding
    `after` back are set aside (`parked`): `after` moves on, and the sensor looks at the
    parked files one by one (`parked_entries`: the listing of the names in `parked_checked`
    and their markers), so one upload that never completes neither stops the sensor nor makes
    every tick list all the files since.
    """
    parked = dict(cursor.get("parked", {}))
    checked = set(parked_checked) & set(parked)
    ready, rechecked = _ready_files(
        parked_entries, {name: parked[name] for name in checked}, set(),
        lambda name: name in checked, max_new, ready_marker,
    )  # fmt: skip
    # looked-at files go to the back, so that every parked file gets its turn
    parked = {name: sign for name, sign in parked.items() if name not in checked} | rechecked
    done: set[str] = set(cursor.get("done", []))
    listed, next_pending = _ready_files(
        entries, cursor.get("pending", {}), done, pattern_matches, max_new - len(ready),
        ready_marker,
    )  # fmt: skip
    ready += listed
    after = cursor.get("after")
    finished = done | set(listed)
    for entry in entries:
        if _is_data(entry.name, pattern_matches, ready_marker) and entry.name not in finished:
            break
        after = entry.name
    done_after = sorted(name for name in finished if after is None or name > after)
    if park_after is not None and len(done_after) > park_after and entries:
        parked |= next_pending
        next_pending, after = {}, entries[-1].name
        done_after = sorted(name for name in finished if name > after)  # listed by a longer tick
    next_cursor = {"after": after, "pending": next_pending, "done": done_after}
    if parked:
        next_cursor["parked"] = parked
    return ready, next_cursor


def _is_data(name: str, pattern_matches, ready_marker: str | None) -> bool:
    """A file the sensor takes: one matching the pattern that is not a marker."""
    return pattern_matches(name) and not (ready_marker and name.endswith(ready_marker))


# names listed per tick for each name the tick may take: room for markers and sidecar files
# (`x.json.md5`), while a folder of millions of names the pattern leaves out is never listed
# whole at one tick
_LISTING_CAP_RATIO = 10


def _listing_window(entries: Iterator[FileEntry], wanted, budget: int, cap: int) -> list[FileEntry]:
    """The head of a listing holding `budget` entries that `wanted` accepts (the files a tick
    may take), and the markers and other names around them, at most `cap` entries in all.

    Counting every name against one limit let names a tick does not take (markers, sidecar
    files, files already done) crowd out the new files, tick after tick."""
    window, count = [], 0
    for entry in entries:
        if count >= budget or len(window) >= cap:
            break
        window.append(entry)
        count += bool(wanted(entry.name))
    return window


def unordered_file_tick(
    entries: Sequence[FileEntry],
    cursor: dict[str, Any],
    known: set[str],
    pattern_matches,
    *,
    max_new: int,
    ready_marker: str | None,
) -> tuple[list[str], dict[str, Any]]:
    """`file_tick` for names in no particular order: `entries` is the whole listing, and a file
    is new when its name is not in `known` (the partitions already added). Pure, for testing.

    >>> tick = unordered_file_tick
    >>> listing = [FileEntry("b1f3.xml", 10, "1"), FileEntry("07aa.xml", 5, "1")]
    >>> tick(listing, {}, {"b1f3.xml"}, lambda name: True, max_new=10, ready_marker=None)
    ([], {'pending': {'07aa.xml': '5:1'}})
    >>> tick(listing, {"pending": {"07aa.xml": "5:1"}}, {"b1f3.xml"}, lambda name: True,
    ...      max_new=10, ready_marker=None)
    (['07aa.xml'], {'pending': {}})
    """
    pending = cursor.get("pending", {})
    # pending at the stored cursor but a partition now: taken by a tick whose cursor was not
    # stored (see `_result`); asked for again, and Dagster's run keys keep it to one run
    retaken = sorted(name for name in pending if name in known)[:max_new]
    # a file is taken only once it is in the stored cursor's `pending`, even with its marker:
    # a tick taking a file nobody recorded could not be repeated by the next one
    ready, next_pending = _ready_files(
        entries, pending, known, pattern_matches, max_new - len(retaken), ready_marker,
        seen_before=True,
    )  # fmt: skip
    return retaken + ready, {"pending": next_pending}


def new_files_sensor(
    source: AssetsDefinition,
    *,
    name: str | None = None,
    minimum_interval_seconds: int = 30,
    max_new_per_tick: int = 100,
    ready_marker: str | None = None,
    names_in_arrival_order: bool = True,
    asset_selection: Sequence[AssetKey | AssetsDefinition] | None = None,
    s3_resource_key: str = "s3",
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
) -> SensorDefinition:
    """Add a partition of a file source (`xml_source`, `hdf5_source`, `webdataset_source`,
    `file_source`) for each new complete file and request a run for it.

    A file is complete when its size and modification time did not change between two ticks,
    or, with `ready_marker=".done"`, when `<file>.done` exists. By default names must sort in
    the order files arrive (timestamps, sequence numbers): a listing starts after the last name
    taken, so a tick costs time in proportion to the new files. With
    `names_in_arrival_order=False` (random or reused prefixes, UUID names), each tick lists
    every file and takes those that are not a partition yet: no file is missed, whatever its
    name, but a tick costs time in proportion to all the files under the location (and a file
    is taken at the second tick that sees it, even with its marker, so that a tick cut short
    by a stopped daemon is repeated). At most
    `max_new_per_tick` files per tick; the rest follow at the next ticks.

    >>> from ds_assets import xml_source
    >>> new_files_sensor(xml_source("orders", "incoming/orders")).name
    'orders__new_files'
    """
    config = _source_config(source, "files", "new_files_sensor")
    location, pattern = config["location"], config["pattern"]
    on_s3 = is_s3(location)
    selection = list(asset_selection) if asset_selection else [source.key]
    window = 2 * max_new_per_tick

    matches = pattern_matcher(pattern)

    def tick(context: SensorEvaluationContext, cursor: dict[str, Any], client: Any):
        if not names_in_arrival_order:
            entries = list(list_files(location, "*", s3_client=client))
            known = set(context.instance.get_dynamic_partitions(source.partitions_def.name))
            return unordered_file_tick(
                entries, cursor, known, matches, max_new=max_new_per_tick,
                ready_marker=ready_marker,
            )  # fmt: skip
        done = set(cursor.get("done", []))
        budget = window + len(cursor.get("pending", {}))
        entries = _listing_window(
            list_files(location, "*", after=cursor.get("after"), s3_client=client),
            lambda file: _is_data(file, matches, ready_marker) and file not in done,
            budget, cap=_LISTING_CAP_RATIO * (budget + len(done)),
        )  # fmt: skip
        checked = list(cursor.get("parked", {}))[:max_new_per_tick]
        parked_entries = [
            entry for name in checked for entry in files_named(location, name, s3_client=client)
        ]
        return file_tick(
            entries, cursor, matches, max_new=max_new_per_tick, ready_marker=ready_marker,
            parked_entries=parked_entries, parked_checked=checked, park_after=window,
        )  # fmt: skip

    @sensor(
        name=name or f"{'__'.join(source.key.path)}__new_files",
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=selection,
        required_resource_keys={s3_resource_key} if on_s3 else set(),
        default_status=default_status,
        description=f"new files matching {pattern!r} under {location}",
    )
    def _sensor(context: SensorEvaluationContext):
        cursor = _cursor(context, {"after": str, "pending": dict, "done": list, "parked": dict})
        client = s3_client_of(getattr(context.resources, s3_resource_key)) if on_s3 else None
        try:
            ready, next_cursor = tick(context, cursor, client)
        except FileNotFoundError:
            return SkipReason(f"{location} does not exist (yet)")
        if not ready and next_cursor == cursor:
            return SkipReason(f"no new complete files matching {pattern!r} under {location}")
        return _result(context, source, ready, next_cursor, selection)

    return _sensor


def new_range_keys(
    engine: Any,
    table: str,
    column: str,
    *,
    after: Any = None,
    through: Any = None,
    rows_per_partition: int = 100_000,
    max_partitions: int = 10,
    schema: str | None = None,
) -> tuple[list[str], Any]:
    """(partition keys of the next ranges of rows with `column` above `after` and up to
    `through`, the last range's end): what `new_rows_sensor` adds at one tick.

    >>> import sqlalchemy as sa
    >>> engine = sa.create_engine("sqlite://")
    >>> with engine.begin() as connection:
    ...     _ = connection.execute(sa.text("CREATE TABLE t (id INTEGER)"))
    ...     _ = connection.execute(sa.text("INSERT INTO t VALUES (1), (2), (3)"))
    >>> new_range_keys(engine, "t", "id", rows_per_partition=2)
    (['start..2', '2..3'], 3)
    """
    from ds_assets.formats import sql

    ranges = sql.new_row_ranges(
        engine, table, column, after=after, through=through, rows_per_range=rows_per_partition,
        max_ranges=max_partitions, schema=schema,
    )  # fmt: skip
    keys = []
    for row_range in ranges:
        keys.append(range_key(after, row_range.high))
        after = row_range.high
    return keys, after


def ranges_beyond(keys_newest_first: Sequence[str], last: Any) -> tuple[list[str], Any]:
    """(the range partition keys among `keys_newest_first` that end above `last`, oldest
    first; the highest end among them, or `last`).

    `new_rows_sensor` starts each tick after the stored cursor's end and after these: ranges
    added by a tick whose cursor was never stored (a daemon stopped mid-tick, an overlapping
    tick) or before a cursor reset. New ranges then never overlap old ones, and the runs of
    these are asked for again (Dagster's run keys keep each to one run). Keys that are no
    range are skipped.

    >>> ranges_beyond(["4..6", "2..4", "start..2"], 2)
    (['2..4', '4..6'], 6)
    >>> ranges_beyond(["start..2"], 2)
    ([], 2)
    """
    beyond, highest = [], last
    for key in keys_newest_first:
        try:
            _, high = parse_range_key(key)
        except ValueError:
            continue
        if last is None or high > last:
            beyond.append(key)
            highest = high if highest is None or high > highest else highest
    return beyond[::-1], highest


def _cursor(context: SensorEvaluationContext, fields: dict[str, type]) -> dict[str, Any]:
    """The sensor's cursor, checked to be the kind it writes (`fields`: key → type): a cursor
    edited by hand, or left by another sensor of the same name, is an error that says how to
    start over rather than a bare exception on every tick."""
    if not context.cursor:
        return {}
    try:
        cursor = json.loads(context.cursor)
    except ValueError as error:
        raise _bad_cursor(context, error) from None
    if not isinstance(cursor, dict):
        raise _bad_cursor(context, f"a JSON object was expected, not {type(cursor).__name__}")
    for key, kind in fields.items():
        if cursor.get(key) is not None and not isinstance(cursor[key], kind):
            raise _bad_cursor(context, f"{key!r} is not a {kind.__name__}")
    return cursor


def _bad_cursor(context: SensorEvaluationContext, problem: Any) -> ValueError:
    shown = context.cursor if len(context.cursor) <= 200 else context.cursor[:197] + "..."
    try:
        name = context.sensor_name
    except Exception:  # a context built without a name (tests)
        name = "(unnamed)"
    return ValueError(
        f"sensor {name}: its cursor {shown!r} is not one it writes ({problem}); "
        "reset the cursor (Dagster UI: the sensor's page, Reset cursor) to start over"
    )


def settled_bound(
    seen: list[list], highest: Any, now: float, settle_seconds: float
) -> tuple[Any, list[list]]:
    """(the highest cursor value safe to take at `now`, the observations to keep in the cursor).

    `seen` holds `[time, value]` observations of the highest cursor value, oldest first;
    `highest` is today's. A value is settled once it was the highest `settle_seconds` ago: the
    rows up to it that were still in open transactions then have committed since, unless a
    transaction stayed open longer than that. With `settle_seconds=0`, `highest` itself.

    >>> settled_bound([], 5, now=100.0, settle_seconds=60)
    (None, [[100.0, '5']])
    >>> settled_bound([[100.0, "5"]], 9, now=170.0, settle_seconds=60)
    (5, [[100.0, '5'], [170.0, '9']])
    """
    if highest is not None and (not seen or seen[-1][1] != format_bound(highest)):
        seen = [*seen, [now, format_bound(highest)]]
    horizon = now - settle_seconds
    settled = [entry for entry in seen if entry[0] <= horizon]
    kept = settled[-1:] + [entry for entry in seen if entry[0] > horizon]
    return (parse_bound(settled[-1][1]) if settled else None), kept


def new_rows_sensor(
    source: AssetsDefinition,
    *,
    name: str | None = None,
    rows_per_partition: int = 100_000,
    max_partitions_per_tick: int = 10,
    settle_seconds: float = 60,
    minimum_interval_seconds: int = 30,
    asset_selection: Sequence[AssetKey | AssetsDefinition] | None = None,
    sql_resource_key: str = "sql",
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
) -> SensorDefinition:
    """Add a partition of a `sql_source` for each range of about `rows_per_partition` new rows
    (cursor column above the last range's end) and request a run for it.

    Rows do not commit in cursor order: an auto-increment id or a `now()` timestamp is given
    when a transaction inserts, and a longer transaction may commit a lower value after a
    higher one is visible. So a range only goes up to a value that was already the highest
    `settle_seconds` ago (`settled_bound`): a row is then missed only if its transaction stayed
    open longer than that, or if its value equals the end of a range already taken (a coarse
    cursor such as a date keeps receiving rows of the same value: use an id or a fine
    timestamp). Ids drawn from a sequence with `CACHE` above 1 come from per-session blocks in
    no time order at all: no settling helps there. `settle_seconds=0` takes rows as soon as
    they are visible (for a single writer committing in order, or a cursor assigned at commit).

    Each tick costs one indexed `max()` query and one indexed query per range
    (`WHERE cursor > :last ORDER BY cursor LIMIT 1 OFFSET n`), never a scan of the rows seen
    before.

    >>> from ds_assets import sql_source
    >>> new_rows_sensor(sql_source("orders", "orders", cursor_column="id")).name
    'orders__new_rows'
    """
    config = _source_config(source, "sql", "new_rows_sensor")
    column = config.get("cursor_column")
    if not column:
        raise DagsterInvalidDefinitionError(
            f"new_rows_sensor: sql_source {source.key.to_user_string()} has no cursor_column"
        )
    if settle_seconds < 0:
        raise DagsterInvalidDefinitionError(
            f"new_rows_sensor: settle_seconds must be 0 or more, got {settle_seconds}"
        )
    selection = list(asset_selection) if asset_selection else [source.key]
    table, schema = config["table"], config.get("schema")
    sensor_name = name or f"{'__'.join(source.key.path)}__new_rows"

    @sensor(
        name=sensor_name,
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=selection,
        required_resource_keys={sql_resource_key},
        default_status=default_status,
        description=f"new rows of {table} by {column}",
    )
    def _sensor(context: SensorEvaluationContext):
        from ds_assets.formats import sql

        cursor = _cursor(context, {"high": str, "seen": list})
        try:
            last = parse_bound(cursor["high"]) if "high" in cursor else None
            seen = [[float(when), str(value)] for when, value in cursor.get("seen", [])]
            [parse_bound(value) for _, value in seen]
        except (TypeError, ValueError) as error:
            raise _bad_cursor(context, error) from None
        engine = getattr(context.resources, sql_resource_key).get_engine()
        highest = sql.highest_cursor_value(engine, table, column, schema=schema)
        try:
            through, seen = settled_bound(seen, highest, time.time(), settle_seconds)
        except ValueError as error:  # a value of no orderable type, in a column of none
            raise TypeError(
                f"sensor {sensor_name}: table {table}, column {column!r}: {error}"
            ) from error
        recent = context.instance.get_paginated_dynamic_partitions(
            source.partitions_def.name, limit=max_partitions_per_tick, ascending=False
        ).results
        try:
            retaken, last = ranges_beyond(recent, last)
            newer = through is not None and (last is None or through > last)
        except TypeError as error:  # a cursor left by a column of another type
            raise _bad_cursor(context, error) from None
        keys, high = [], last
        if newer:
            keys, high = new_range_keys(
                engine, table, column, after=last, through=through,
                rows_per_partition=rows_per_partition, max_partitions=max_partitions_per_tick,
                schema=schema,
            )  # fmt: skip
        keys = retaken + keys
        next_cursor = {"seen": seen, **({"high": format_bound(high)} if high is not None else {})}
        if not keys:
            skip = SkipReason(
                f"no settled rows of {table} with {column} above {last} (highest now: "
                f"{highest}, taken once it has been the highest for {settle_seconds}s)"
            )
            return SensorResult(skip_reason=skip, cursor=json.dumps(next_cursor, sort_keys=True))
        return _result(context, source, keys, next_cursor, selection)

    return _sensor
