"""Embedded full-text index (tantivy) over text columns of a `datasets.Dataset`: BM25, phrases,
no server.

tantivy (the Rust search library behind Quickwit, through its Python binding) does the
tokenizing, indexing, BM25 scoring, query parsing and storage; this module streams the rows to
its writer batch by batch (memory: one batch plus tantivy's 128 MB writer budget) and maps hits
back to row positions through a fast `_row` field.

Pick this index for search with no server: notebooks, the demo, one machine, a team sharing
files. Pick Elasticsearch (`ds_assets.index.elasticsearch`) for a cluster that many clients
query at once, languages analyzers, aggregations, or an index larger than one disk.

Queries
-------
- By default a query is parsed with tantivy's query language, like Elasticsearch's
  `query_string`: words (any of them may match, BM25 ranks), `"exact phrase"`,
  `"phrase with slop"~2`, `title:word`, `+must -must_not`, `AND`, `OR`, `word^2` (boost),
  `_row:[10 TO 20]`, `*` (every document). Words search every text column. A query with a syntax
  error raises `SearchIndexError` naming the query.
- `escape=True` (on `search`, `search_batch`, `nearest_examples`) takes the query as plain
  words, with no syntax at all: what to use for text typed by end users. It scores like the
  same words parsed.
- `filter=` is a second query string (or a `tantivy.Query`) that every hit must also match (AND);
  it does not change the scores, like Elasticsearch's `filter` clause.

Text is tokenized by tantivy's "default" tokenizer: split on non-alphanumeric characters
(Unicode aware), lowercased, tokens over 40 bytes dropped; no stemming, no stop words.

Files: `build` writes the tantivy index into `folder` plus `ds_assets_fulltext.json` (the text
columns, id column and count), so `FullTextIndex.open(folder)` needs nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import tantivy
from datasets import Dataset

from ds_assets.index.base import SearchIndex, SearchIndexError, check_count

ROW_FIELD = "_row"
MANIFEST_FILE = "ds_assets_fulltext.json"
FORMAT_VERSION = 1
WRITER_HEAP_BYTES = 128_000_000
_ANALYZER = (  # the same steps as tantivy's "default" tokenizer the text fields use
    tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
    .filter(tantivy.Filter.remove_long(40))
    .filter(tantivy.Filter.lowercase())
    .build()
)


class _Literal(str):
    """A query to take as plain words (`escape=True`)."""


class FullTextIndex(SearchIndex):
    """A tantivy index with one document per row of the indexed dataset version.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> ds = Dataset.from_dict({"text": ["the quick brown fox", "a brown dog", "quick thinking"]})
    >>> index = build(ds, "text", folder.name)
    >>> index.search('"brown fox"')[1]
    [0]
    >>> index.search("brown OR quick", filter="dog")[1]
    [1]
    >>> index.nearest_examples("fox", k=1)[1]
    {'text': ['the quick brown fox']}
    >>> folder.cleanup()
    """

    engine = "fulltext"  # the module name, as for every engine; the library is tantivy
    text_queries = True

    def __init__(
        self,
        index: tantivy.Index,
        text_columns: Sequence[str],
        *,
        id_column: str | None = None,
        dataset: Dataset | None = None,
        folder: str | None = None,
    ):
        super().__init__(dataset)
        self.index = index
        self.text_columns = list(text_columns)
        self.id_column = id_column
        self.folder = folder
        if dataset is not None and dataset.num_rows != self.count():
            raise SearchIndexError(
                f"{folder or 'the index'}: holds {self.count()} documents but the dataset has "
                f"{dataset.num_rows} rows; open it with the dataset version it indexes"
            )

    @classmethod
    def open(cls, folder: str | os.PathLike, *, dataset: Dataset | None = None) -> FullTextIndex:
        """Open an index that `build` wrote into `folder`.

        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> _ = build(Dataset.from_dict({"t": ["hello world"]}), "t", folder.name)
        >>> FullTextIndex.open(folder.name).search("hello")[1]
        [0]
        >>> folder.cleanup()
        """
        folder = os.fspath(folder)
        manifest = _read_manifest(folder)
        try:
            index = tantivy.Index.open(folder)
            # tantivy's default reader follows the folder to whatever is committed there next;
            # an opened index keeps the version it opened (its rows are that version's)
            index.config_reader(reload_policy="Manual")
        except (ValueError, OSError) as error:
            raise SearchIndexError(f"{folder}: not a readable tantivy index: {error}") from None
        return cls(
            index,
            manifest["text_columns"],
            id_column=manifest.get("id_column"),
            dataset=dataset,
            folder=folder,
        )

    def count(self) -> int:
        """Number of documents (rows) in the index."""
        return int(self.index.searcher().num_docs)

    def describe(self) -> dict[str, Any]:
        """What a manifest records of this index (JSON-ready).

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     build(Dataset.from_dict({"t": ["a b"]}), "t", folder).describe()["text_columns"]
        ['t']
        """
        return {
            "engine": self.engine,
            "library": "tantivy",
            "count": self.count(),
            "text_columns": self.text_columns,
            "id_column": self.id_column,
            "row_field": ROW_FIELD,
            "tokenizer": "default",
            "scoring": "bm25",
        }

    def search(
        self, query: str, k: int = 10, filter: Any = None, *, escape: bool = False
    ) -> tuple[list[float], list[int]]:
        """(BM25 scores, row indices) of the `k` best matches, best first. `escape=True` takes
        `query` as plain words (see the module docstring)."""
        return super().search(_marked(query, escape), k, filter)

    def search_batch(
        self, queries: Sequence[str], k: int = 10, filter: Any = None, *, escape: bool = False
    ) -> tuple[list[list[float]], list[list[int]]]:
        """`search` for many queries."""
        return super().search_batch([_marked(query, escape) for query in queries], k, filter)

    def nearest_examples(
        self, query: str, k: int = 10, filter: Any = None, *, escape: bool = False
    ) -> tuple[list[float], dict[str, list]]:
        """(BM25 scores, rows as a dict of columns) of the `k` best matches, best first."""
        return super().nearest_examples(_marked(query, escape), k, filter)

    def _search_batch(
        self, queries: list[str], k: int, filter: Any
    ) -> tuple[list[list[float]], list[list[int]]]:
        searcher = self.index.searcher()
        k = min(k, max(1, searcher.num_docs))  # tantivy allocates k results up front
        required = None if filter is None else self._filter_query(filter)
        all_scores, all_rows = [], []
        for text in queries:
            query = self._query(text)
            if required is not None:
                query = tantivy.Query.boolean_query(
                    [(tantivy.Occur.Must, query), (tantivy.Occur.Must, required)]
                )
            hits = searcher.search(query, limit=k, count=False).hits
            rows = searcher.fast_field_values(ROW_FIELD, [address for _, address in hits])
            all_scores.append([float(score) for score, _ in hits])
            all_rows.append([int(row) for row in rows])
        return all_scores, all_rows

    def _query(self, text: str) -> tantivy.Query:
        if isinstance(text, _Literal):
            return self._words_query(text)
        try:
            return self.index.parse_query(text, self.text_columns)
        except ValueError as error:
            raise SearchIndexError(
                f"full-text query {str(text)!r}: {error}; expected tantivy query syntax (words, "
                '"a phrase", column:word, +must -must_not, AND, OR); pass escape=True to search '
                "the words as they are"
            ) from None

    def _words_query(self, text: str) -> tantivy.Query:
        schema = self.index.schema
        clauses = [
            (tantivy.Occur.Should, tantivy.Query.term_query(schema, column, token))
            for token in _ANALYZER.analyze(text)
            for column in self.text_columns
        ]
        return tantivy.Query.boolean_query(clauses) if clauses else tantivy.Query.empty_query()

    def _filter_query(self, filter: Any) -> tantivy.Query:
        if isinstance(filter, tantivy.Query):
            query = filter
        elif isinstance(filter, str):
            try:
                query = self.index.parse_query(filter, self.text_columns)
            except ValueError as error:
                raise SearchIndexError(
                    f"full-text filter {filter!r}: {error}; expected a tantivy query string"
                ) from None
        else:
            raise SearchIndexError(
                "a full-text filter is a tantivy query string or a tantivy.Query, "
                f"got {type(filter).__name__}"
            )
        return tantivy.Query.const_score_query(query, 0.0)  # must match, adds nothing to BM25


def build(
    dataset: Dataset,
    text_columns: str | Sequence[str],
    folder: str | os.PathLike,
    *,
    batch_size: int = 10_000,
    id_column: str | None = None,
) -> FullTextIndex:
    """Write a tantivy index of `text_columns` (string, or list-of-strings, columns; nulls
    allowed) into `folder` (new or empty), one document per row, and open it.

    `id_column` (integers or strings, no nulls) is indexed too, under its own name, so filters
    can name it (`filter="sku:A-17"`) and later updates can address documents by id.

    >>> import tempfile
    >>> ds = Dataset.from_dict({"title": ["Café crème", None], "body": ["hot drink", "tea"]})
    >>> folder = tempfile.TemporaryDirectory()
    >>> index = build(ds, ["title", "body"], folder.name)
    >>> index.search("CAFÉ")[1], index.search("tea")[1], index.count()
    ([0], [1], 2)
    >>> folder.cleanup()
    """
    columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    _check_columns(dataset, columns, id_column)
    check_count("batch_size", batch_size)
    folder = os.fspath(folder)
    created = _prepare_folder(folder)
    try:
        schema = _schema(dataset, columns, id_column)
        index = tantivy.Index(schema, path=folder, reuse=False)
        _write_documents(index, dataset, columns, id_column, batch_size)
        _write_manifest(folder, columns, id_column, dataset.num_rows)
    except BaseException:
        _clear_folder(folder, created)
        raise
    return FullTextIndex.open(folder, dataset=dataset)


def _check_columns(dataset: Dataset, columns: list[str], id_column: str | None) -> None:
    if not columns:
        raise SearchIndexError("text_columns is empty: name at least one text column")
    if len(set(columns)) != len(columns):
        raise SearchIndexError(f"text_columns {columns} names a column twice")
    for column in [*columns, *([id_column] if id_column is not None else [])]:
        if column not in dataset.column_names:
            raise SearchIndexError(
                f"column {column!r} is not in the dataset {dataset.column_names}"
            )
        if column == ROW_FIELD or not tantivy.SchemaBuilder.is_valid_field_name(column):
            raise SearchIndexError(
                f"column {column!r} cannot be a tantivy field name (reserved, or starts with "
                "'-'); rename it with Dataset.rename_column"
            )
    for column in columns:
        if not _is_text(dataset.data.schema.field(column).type):
            raise SearchIndexError(
                f"column {column!r} is {dataset.features[column]}; expected text "
                "(Value('string') or a list of strings)"
            )
    if id_column in columns:
        raise SearchIndexError(f"id_column {id_column!r} is also a text column")
    if id_column is not None:
        id_type = dataset.data.schema.field(id_column).type
        if not (pa.types.is_integer(id_type) or _is_string(id_type)):
            raise SearchIndexError(
                f"id_column {id_column!r} is {dataset.features[id_column]}; expected integers "
                "or strings"
            )


def _is_string(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _is_text(arrow_type: pa.DataType) -> bool:
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return _is_string(arrow_type.value_type)
    return _is_string(arrow_type)


def _prepare_folder(folder: str) -> bool:
    """Create `folder` if needed (True when created here); refuse to write over files."""
    if os.path.isdir(folder):
        if os.listdir(folder):
            raise SearchIndexError(f"{folder}: the folder is not empty; build into a new folder")
        return False
    if os.path.exists(folder):
        raise SearchIndexError(f"{folder}: exists and is not a folder")
    os.makedirs(folder)
    return True


def _clear_folder(folder: str, created: bool) -> None:
    """Leave no half-written index behind (the folder was empty or missing before)."""
    if created:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


def _schema(dataset: Dataset, columns: list[str], id_column: str | None) -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    for column in columns:
        builder.add_text_field(column, stored=False, tokenizer_name="default")
    builder.add_unsigned_field(ROW_FIELD, indexed=True, fast=True)
    if id_column is not None:
        if pa.types.is_integer(dataset.data.schema.field(id_column).type):
            builder.add_integer_field(id_column, stored=True, indexed=True, fast=True)
        else:
            builder.add_text_field(id_column, stored=True, fast=True, tokenizer_name="raw")
    return builder.build()


def _write_documents(
    index: tantivy.Index,
    dataset: Dataset,
    columns: list[str],
    id_column: str | None,
    batch_size: int,
) -> None:
    writer = index.writer(heap_size=WRITER_HEAP_BYTES)
    start = 0
    try:
        for table in dataset.with_format("arrow").iter(batch_size=batch_size):
            texts = [table.column(column).to_pylist() for column in columns]  # one batch
            ids = table.column(id_column).to_pylist() if id_column is not None else None
            named = list(zip(columns, texts, strict=True))
            for offset in range(table.num_rows):
                document = tantivy.Document()
                document.add_unsigned(ROW_FIELD, start + offset)
                for column, values in named:
                    value = values[offset]
                    if type(value) is str:  # the usual case, inline: this loop is the build
                        document.add_text(column, value)
                    else:
                        _add_text(document, column, value)
                if ids is not None:
                    _add_id(document, id_column, ids[offset], start + offset)
                writer.add_document(document)
            start += table.num_rows
        writer.commit()
    except BaseException:
        writer.rollback()
        raise
    finally:
        writer.wait_merging_threads()  # also releases the writer's lock on the folder


def _add_text(document: tantivy.Document, column: str, value: str | list | None) -> None:
    if isinstance(value, str):
        document.add_text(column, value)
    elif value is not None:  # a list of strings: one value each, phrases do not span them
        for item in value:
            if item is not None:
                document.add_text(column, item)


def _add_id(document: tantivy.Document, column: str, value: Any, row: int) -> None:
    if value is None:
        raise SearchIndexError(f"id_column {column!r}, row {row}: null id")
    if isinstance(value, str):
        document.add_text(column, value)
        return
    try:
        document.add_integer(column, value)
    except OverflowError:
        raise SearchIndexError(
            f"id_column {column!r}, row {row}: id {value} does not fit a signed 64-bit integer"
        ) from None


def _write_manifest(folder: str, columns: list[str], id_column: str | None, count: int) -> None:
    manifest = {
        "format": FORMAT_VERSION,
        "engine": "fulltext",
        "library": "tantivy",
        "text_columns": columns,
        "id_column": id_column,
        "count": count,
        "row_field": ROW_FIELD,
    }
    temporary = os.path.join(folder, f".{MANIFEST_FILE}.tmp-{uuid.uuid4().hex}")
    with open(temporary, "w") as file:
        json.dump(manifest, file, indent=2)
    os.replace(temporary, os.path.join(folder, MANIFEST_FILE))


def _read_manifest(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, MANIFEST_FILE)
    try:
        with open(path) as file:
            manifest = json.load(file)
    except FileNotFoundError:
        raise SearchIndexError(
            f"{folder}: no {MANIFEST_FILE}; not a full-text index written by fulltext.build"
        ) from None
    except (OSError, ValueError) as error:
        raise SearchIndexError(f"{path}: unreadable: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise SearchIndexError(
            f"{path}: expected format {FORMAT_VERSION}, got {manifest.get('format')!r}"
            if isinstance(manifest, dict)
            else f"{path}: expected a JSON object"
        )
    columns = manifest.get("text_columns")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise SearchIndexError(f"{path}: 'text_columns' must be a non-empty list of names")
    return manifest


def _marked(query: Any, escape: bool) -> Any:
    return _Literal(query) if escape and isinstance(query, str) else query
