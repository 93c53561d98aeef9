"""XML files as datasets: every element named `row_tag` is one row.

What does the work: libxml2, through lxml, parses and expands internal entities within its
safety limits; pyarrow turns rows into Arrow and `datasets` casts them to the Features you
declare; `ds_assets.formats.output.to_dataset` writes the Arrow file or makes the stream. Written
here, because no library does it: the element → column mapping below, Features inference, freeing
each row's tree as soon as it is converted, and errors that say where. (`datasets`' own "xml"
builder reads a whole file into one string in one row, and in datasets 5.2 fails on every file;
pandas.read_xml holds the whole table in memory and guesses types.)

Two paths turn a source's rows into dicts of column values, then a batch of them into Arrow with
one `pa.array` call (to binary, then cast: 5-20x faster than pyarrow's conversion to string).
The tree path takes each row element from `lxml.etree.iterparse` (libxml2 builds its tree) and
converts it with `ds_assets/formats/_xmltree.pyx`, compiled (Cython) by `make install`: it reads
libxml2's nodes directly and hands the values over as UTF-8 bytes, where lxml's element API makes
a Python proxy object per element and a decoded string per value, about 3x slower on nested
rows. The Python code it stands for, `_Converter.struct`, stays as the reference (the tests
compare the two on every document) and as the fallback: for nodes the walker leaves alone
(entity references, XInclude), for every error, and wherever the extension is not built or
`DS_ASSETS_XML_COMPILED=0`. Without it, rows of attributes only take the attribute-row path, an
lxml parser target that takes each row's attributes from libxml2's parse events with no tree
built (faster than the Python tree path on a StackExchange dump, slower than the compiled one);
at anything else in a row (an element, unexpected text) or any error it hands the source to the
tree path, which reads it again from the first row not yet converted and raises the error with
its line. Measured and rejected for nested rows: a parser target (one Python call, with the GIL
taken again, for every text chunk), column-wise building in Python (under a tenth saved), XSLT
to JSON lines (the transform alone costs what the whole bare parse does).

How a row element becomes a row:

- Its attributes and child elements are columns, named by their attribute / tag name. An
  attribute is a string; so is a child element without attributes or children (its text, verbatim,
  `""` when empty). A child element with attributes or children of its own is a struct of them,
  built the same way, at any depth.
- A child element that occurs more than once in one element (in any row the Features are inferred
  from) is a list in every row, even where it occurs once.
- The text of an element that also has attributes or child elements is the field `#text`: a name
  that no XML element or attribute can have (a name cannot start with `#`), so it never collides
  with one, and which Arrow, Parquet and `datasets` take as any other field name.
  `<title lang="fr">Vendredi</title>` is `{"lang": "fr", "#text": "Vendredi"}`. Mixed content
  keeps its text: `#text` of an element with child elements is its whole text content (what
  `"".join(element.itertext())` gives) when text other than whitespace stands between them, so
  `<p>An <b>old</b> cat</p>` is `{"b": "old", "#text": "An old cat"}`. Whitespace between child
  elements (indentation) is not text.
- Names: an element in no namespace or in the row element's namespace is named by its local name
  (`comment` for `{http://www.freedesktop.org/standards/shared-mime-info}comment` in rows of that
  namespace); another namespace gives `prefix:local`, with the prefix that `namespaces=` maps to
  its URI, else `xml` for the XML namespace (`xml:lang`), else the document's own prefix, else
  `{uri}local`. A namespace has one name per `parse`: the prefix first met for it, even where
  another part of the document (or another file) binds another prefix to the same URI; give
  `namespaces=` to choose it. `attribute_prefix="@"` prefixes attribute names, for documents
  where an element has an attribute and a child element of the same name (an error otherwise,
  naming both).
- Rows that lack a column have null there (a missing list is null too, not `[]`). A `row_tag`
  element inside another row is part of that row, not a row of its own.
- Values stay strings. Text does not say its type, and guessing corrupts data that only looks like
  numbers (identifiers "007", versions "1.10", codes "1E3", the word "NaN"); a number column is one
  `features=` line away. Declared Features are cast by `datasets` (so `Value("int32")`,
  `Value("bool")`, timestamps, `ClassLabel` names, `Image` paths all work) after trimming
  surrounding whitespace from values of non-string types (XML Schema's whitespace rule); a value
  that does not cast raises `XMLError` naming the file, line, row, column and value.
- Declared Features also select: attributes and elements they do not name are skipped. Inferred
  Features come from the first `infer_rows` rows (1,000 by default; `None` reads every row once
  first); anything later rows hold that those Features cannot, an attribute, element, text or
  repetition first seen there, raises `XMLError` naming it, rather than being dropped.

Safety, for untrusted input: external entities, external DTDs and the network are never used
(`resolve_entities="internal"`, `load_dtd=False`, `no_network=True`); internal entities are
expanded within libxml2's amplification limit, so a billion-laughs or quadratic-blowup document
fails within milliseconds with `XMLSecurityError`; `huge_tree=False` keeps libxml2's limits on
depth (256) and text node size (10 MB). Malformed XML raises `XMLError` with file, line and
column. Memory: each row's tree is freed once converted (with what precedes it in the document;
the attribute-row path builds none), so memory is bounded by a batch of rows, whatever the file
size; more than `MAX_ROW_BYTES` of
input without a row end (a `row_tag` that matches nothing in a big file) raises `XMLError`
instead of building the whole document in memory.

Input: a path, a binary file object (named in errors by its `name` attribute), or a list of them
read one after another; gzip, bzip2 and xz compression is recognized by its magic bytes. The
encoding is the document's own (declaration, byte order mark); `encoding=` overrides it, and a
codec libxml2 lacks (cp437, mac-roman, ...) is decoded by Python's `codecs` first.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import functools
import gc
import gzip
import io
import itertools
import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, NoReturn, Union

import pyarrow as pa
from datasets import Dataset, Features, IterableDataset, LargeList, List, Value
from datasets.table import cast_array_to_feature, cast_table_to_features
from lxml import etree

from ds_assets.formats.output import to_dataset

__all__ = ["TEXT", "XMLError", "XMLSecurityError", "parse"]

XMLSource = Union[str, "os.PathLike[str]", IO[bytes]]

TEXT = "#text"
INFER_ROWS = 1000
INFER_BYTES = 16 * 2**20  # inference keeps its rows' trees: stop early on big rows
BATCH_ROWS = 4096
BATCH_BYTES = 16 * 2**20
MAX_ROW_BYTES = 128 * 2**20
CHUNK_BYTES = 64 * 2**10
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
_SPACE = " \t\r\n"  # XML's whitespace, trimmed around typed values (str.strip's is Unicode's)

PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": "internal",
    "load_dtd": False,
    "no_network": True,
    "huge_tree": False,
    "attribute_defaults": False,
    "dtd_validation": False,
    "remove_comments": True,
    "remove_pis": True,
}

_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
_POSITION_SUFFIX = re.compile(r",? line \d+, column \d+$")
_ENTITY_LIMIT_CODES = {89}  # XML_ERR_ENTITY_LOOP, libxml2 before 2.11
_UNDECLARED_ENTITY_CODES = {26, 27}  # XML_ERR_UNDECLARED_ENTITY, XML_WAR_UNDECLARED_ENTITY
_RESOURCE_LIMIT_CODE = 114  # XML_ERR_RESOURCE_LIMIT: depth, text size, ... (huge_tree=False)
_HUGE_HINT = re.compile(r",? (use|try) XML_PARSE_HUGE( option)?")


class XMLError(ValueError):
    """Bad XML input. The message names the source and where: line, column, row (counted from 0
    in each file, like dataset indices), and the dataset column at fault.

    >>> str(XMLError("books.xml", "expected '>'", line=3, column=14))
    "books.xml, line 3, column 14: expected '>'"
    """

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        line: int | None = None,
        column: int | None = None,
        row: int | None = None,
    ) -> None:
        self.source, self.problem = source, problem
        self.line, self.column, self.row = line, column, row
        where = [source]
        if line is not None:
            # libxml2 keeps an element's line in 16 bits: 65535 means that line or a later one
            where.append(f"line {line}" if line < _LAST_LINE else f"line {line} or later")
        if column is not None:
            where.append(f"column {column}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {problem}")


_LAST_LINE = 65535


class XMLSecurityError(XMLError):
    """Input refused for safety: entity expansion beyond libxml2's limits (an entity bomb)."""


def parse(
    path: XMLSource | Sequence[XMLSource],
    row_tag: str = "row",
    encoding: str | None = None,
    features: Features | None = None,
    streaming: bool = False,
    *,
    namespaces: Mapping[str, str] | None = None,
    infer_rows: int | None = INFER_ROWS,
    attribute_prefix: str = "",
) -> Dataset | IterableDataset:
    """The rows of XML file(s) `path`: one per element named `row_tag`, as a memory-mapped
    `Dataset`, or with `streaming=True` an `IterableDataset` that re-reads the files on each pass.

    `row_tag` is a local name (any namespace; `{}row` for no namespace only), `{uri}row`, or
    `prefix:row` with `namespaces={"prefix": uri}`. `encoding` overrides the document's own
    declaration. `features` declares columns and types (and selects those columns); otherwise
    they are inferred from the first `infer_rows` rows (`None`: from every row, reading twice).
    See the module docstring for the mapping of attributes, children and text.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "books.xml"
    >>> _ = path.write_text(
    ...     '<books><row id="1"><title>Dune</title><tag>sf</tag><tag>classic</tag></row>'
    ...     '<row id="2"><title lang="fr">Vendredi</title></row></books>')
    >>> books = parse(path)
    >>> books.features
    {'id': Value('string'), 'title': {'lang': Value('string'), '#text': Value('string')}, \
'tag': List(Value('string'))}
    >>> books[0]
    {'id': '1', 'title': {'lang': None, '#text': 'Dune'}, 'tag': ['sf', 'classic']}
    >>> books[1]["tag"] is None
    True
    >>> parse(path, features=Features({"id": Value("int32"), "tag": List(Value("string"))}))[0]
    {'id': 1, 'tag': ['sf', 'classic']}
    """
    sources = _sources(path)
    if infer_rows is not None and infer_rows < 1:
        raise ValueError(f"infer_rows must be at least 1, or None for every row; got {infer_rows}")
    if attribute_prefix == TEXT[0]:
        raise ValueError(f"attribute_prefix {TEXT[0]!r} would make an attribute 'text' {TEXT!r}")
    if features is not None and not features:
        raise ValueError("features declares no columns; declare at least one, or pass None")
    plan = _Plan(sources, row_tag, encoding, namespaces, attribute_prefix)
    resume = None
    if features is None:
        resume = plan.infer(infer_rows)
    else:
        plan.declare(features)
    if resume is not None and all(source.rereadable for source in sources):
        resume.close()  # read again from the start, by the faster path if it applies
        resume = None
    names = ", ".join(source.name for source in sources)
    return to_dataset(
        _tables,
        {"plan": plan, "resume": resume, "sources": sources},
        plan.features,
        streaming=streaming,
        shard_by="sources" if resume is None else None,  # one shard per file
        description=f"XML rows <{row_tag}> of {names}",
    )


# --- sources -----------------------------------------------------------------------------------


def _sources(path: XMLSource | Sequence[XMLSource]) -> list[_Source]:
    if isinstance(path, (str, os.PathLike)) or hasattr(path, "read"):
        return [_Source(path)]
    if isinstance(path, Sequence) and path:
        return [_Source(item) for item in path]
    raise TypeError(
        f"path: expected a path, a binary file object or a non-empty list of them, got {path!r}"
    )


class _Source:
    """One input: a path, opened anew on each read, or a file object, rewound if it can be."""

    def __init__(self, source: XMLSource) -> None:
        self.path: str | None = None
        self.file: IO[bytes] | None = None
        self.start: int | None = None
        self.reads = 0
        if isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
            self.name = self.path
        elif hasattr(source, "read"):
            self.file = source
            self.name = str(getattr(source, "name", "") or f"<{type(source).__name__}>")
            with contextlib.suppress(AttributeError, OSError, ValueError):
                if source.seekable():
                    self.start = source.tell()
        else:
            raise TypeError(f"expected a path or a binary file object, got {source!r}")

    @property
    def rereadable(self) -> bool:
        """True for a path or a seekable file object."""
        return self.path is not None or self.start is not None

    @contextlib.contextmanager
    def open(self, transcode: str | None = None) -> Iterator[_Input]:
        with contextlib.ExitStack() as stack:
            if self.path is not None:
                raw: IO[bytes] = stack.enter_context(open(self.path, "rb"))
            else:
                raw = self._rewound_file()
            head = raw.read(6)
            if isinstance(head, str):
                raise TypeError(f"{self.name}: expected a binary file object (open(..., 'rb'))")
            while head and len(head) < 6:  # a stream may hand out fewer bytes than asked
                more = raw.read(6 - len(head))
                if not more:
                    break
                head += more
            compression = next(
                (kind for magic, kind in _MAGIC.items() if head[: len(magic)] == magic), None
            )
            stream: IO[bytes] = _Prefixed(head, raw)
            if compression == "gzip":
                stream = stack.enter_context(gzip.GzipFile(fileobj=stream, mode="rb"))
            elif compression == "bzip2":
                stream = stack.enter_context(bz2.BZ2File(stream))
            elif compression == "xz":
                stream = stack.enter_context(lzma.LZMAFile(stream))
            yield _Input(stream, self.name, compression, transcode)

    def _rewound_file(self) -> IO[bytes]:
        assert self.file is not None
        self.reads += 1
        if self.reads > 1:
            if self.start is None:
                raise XMLError(
                    self.name,
                    "cannot read this file object again (it is not seekable); pass a path or a "
                    "seekable file for streaming=True or infer_rows=None, which read it again",
                )
            self.file.seek(self.start)
        return self.file


class _Prefixed(io.RawIOBase):
    """`head` (already read to sniff compression), then the rest of `raw`."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self.head, self.raw = head, raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size is None or size < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            return data
        return self.raw.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Input:
    """What lxml reads: counts bytes, and refuses to build a tree of input that no row ends."""

    def __init__(
        self, stream: IO[bytes], name: str, compression: str | None, transcode: str | None
    ) -> None:
        self.stream, self.name, self.compression = stream, name, compression
        self.transcode = transcode
        self.decoder = codecs.getincrementaldecoder(transcode)() if transcode else None
        self.consumed = 0
        self.mark = 0  # self.consumed when the last row ended

    def read(self, size: int = -1) -> bytes:
        data = self._read(size)
        while self.decoder is not None:
            try:
                text = self.decoder.decode(data, final=not data)
                decoded = text.encode("utf-8")
            except UnicodeError as error:
                raise XMLError(self.name, f"not {self.transcode}: {error}") from error
            # an empty result is the end of the input for lxml: the decoder may have buffered
            # a whole short read (a byte of UTF-16, a BOM), so read on
            if decoded or not data:
                data = decoded
                break
            data = self._read(size)
        if self.consumed - self.mark > MAX_ROW_BYTES:
            raise XMLError(
                self.name,
                f"more than {MAX_ROW_BYTES // 2**20} MiB of input without the end of a row "
                f"element; is row_tag right? (a row this big would not fit the memory bound)",
            )
        return data

    def _read(self, size: int) -> bytes:
        try:
            data = self.stream.read(size)
        except (EOFError, zlib.error, lzma.LZMAError, OSError) as error:
            if self.compression is None:
                raise
            raise XMLError(self.name, f"corrupt {self.compression} data: {error}") from error
        self.consumed += len(data)
        return data


def _encoding(name: str | None) -> tuple[str | None, str | None]:
    """The encoding to give libxml2 for `name`, and the Python codec to decode with first when
    libxml2 does not know it (it lacks some names, "latin-1", and some codecs, cp437)."""
    if name is None:
        return None, None
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise LookupError(f"encoding={name!r}: no such encoding") from None
    if not getattr(codec, "_is_text_encoding", True):  # hex, rot13, zlib...: not bytes to text
        raise LookupError(f"encoding={name!r}: not a text encoding")
    canonical = codec.name
    for candidate in (name, canonical, canonical.replace("_", "-").replace("iso8859", "iso-8859")):
        try:
            etree.XMLParser(encoding=candidate)
        except LookupError:
            continue
        return candidate, None
    return "UTF-8", canonical


# --- rows --------------------------------------------------------------------------------------


def _row_matcher(row_tag: str, namespaces: Mapping[str, str] | None) -> str:
    """lxml's tag filter for `row_tag`: a plain name matches it in any namespace."""
    if not row_tag:
        raise ValueError("row_tag must name an element")
    if row_tag.startswith("{"):
        return row_tag
    prefix, colon, local = row_tag.rpartition(":")
    namespaces = dict(namespaces or {})
    if colon:
        if prefix not in namespaces:
            raise ValueError(
                f"row_tag {row_tag!r}: prefix {prefix!r} is not in namespaces={namespaces!r}"
            )
        return f"{{{namespaces[prefix]}}}{local}"
    if namespaces.get(""):
        return f"{{{namespaces['']}}}{row_tag}"
    return "{*}" + row_tag


class _Reader:
    """The row elements of `sources` (the plan's by default) in order, with None before each
    source's first row (`source` is then the one being read). Each row's tree, and whatever
    precedes it in the document, is freed when the next row is asked for, unless `keep` is set."""

    def __init__(self, plan: _Plan, sources: list[_Source] | None = None) -> None:
        self.plan = plan
        self.sources = plan.sources if sources is None else sources
        self.keep = False
        self.source: _Source | None = None
        self.input: _Input | None = None
        self.empty: list[str] = []  # what the sources without rows hold, for the message

    def rows(self) -> Iterator[Any]:
        for source in self.sources:
            with source.open(self.plan.transcode) as stream:
                self.source, self.input = source, stream
                yield None
                yield from self._rows_of(source, stream)

    def _rows_of(self, source: _Source, stream: _Input) -> Iterator[Any]:
        matcher = self.plan.matcher
        options = dict(PARSER_OPTIONS, events=("end",), tag=matcher, chunk_size=CHUNK_BYTES)
        if self.plan.encoding:
            options["encoding"] = self.plan.encoding
        context = etree.iterparse(stream, **options)
        found = False
        count = 0
        last_parent: Any = None
        parent_in_row = False
        try:
            for _, element in context:
                parent = element.getparent()
                if parent is not last_parent:  # a row nested in a row belongs to that row
                    last_parent = parent
                    parent_in_row = next(element.iterancestors(matcher), None) is not None
                if parent_in_row:
                    continue
                stream.mark = stream.consumed
                found = True
                yield element
                if self.keep:
                    continue
                element.clear()
                if parent is not None:
                    while element.getprevious() is not None:
                        del parent[0]
                count += 1
                if count % BATCH_ROWS == 0:
                    _free_preceding(parent)
        except etree.XMLSyntaxError as error:
            raise _syntax_error(source.name, error) from error
        if not found:
            self.empty.append(_summary(source.name, context.root))


def _summary(name: str, root: Any) -> str:
    if root is None:
        return f"{name} has no elements"
    children = sorted({child.tag for child in root if isinstance(child.tag, str)})
    return f"{name} has root <{root.tag}>, with children {children[:8]}"


def _free_preceding(element: Any) -> None:
    """Delete what precedes `element` and each of its ancestors (converted or never a row)."""
    while element is not None:
        parent = element.getparent()
        if parent is not None:
            while element.getprevious() is not None:
                del parent[0]
        element = parent


def _syntax_error(name: str, error: etree.XMLSyntaxError) -> XMLError:
    line, column = error.position if error.position else (None, None)
    message = _POSITION_SUFFIX.sub("", (error.msg or str(error)).strip()).strip()
    if error.code in _ENTITY_LIMIT_CODES or "amplification" in message:
        return XMLSecurityError(
            name,
            f"entity expansion refused ({message}): the document's entities expand far beyond "
            "its own size (an entity bomb?)",
            line=line,
            column=column,
        )
    if error.code in _UNDECLARED_ENTITY_CODES:
        message += (
            " (external entities and DTDs are never loaded, and parameter entities never "
            "expanded, for safety)"
        )
    elif error.code == _RESOURCE_LIMIT_CODE:
        message = _HUGE_HINT.sub("", message)
        message += " (libxml2's limits for untrusted input stay on: depth 256, text 10 MB)"
    return XMLError(name, message, line=line, column=column)


# --- shapes ------------------------------------------------------------------------------------

# How a child element fills its column, the `kind` of a child spec (name, kind, node).
_LEAF = 0  # inferred string: the text, and nothing else may be there
_LEAF_LIST = 1  # the same, repeated
_VALUE = 2  # anything else: `_Converter.value`
_VALUE_LIST = 3  # the same, repeated
_SKIP = 4  # not a declared column


class _Field:
    """One column or struct field: name, the shape of its values, and whether it is a list."""

    __slots__ = ("name", "node", "repeated", "attribute")

    def __init__(self, name: str, node: _Node, repeated: bool, attribute: bool | None) -> None:
        self.name, self.node, self.repeated, self.attribute = name, node, repeated, attribute


class _Node:
    """The shape of an element's value: a string (`leaf`) or a struct of fields and `#text`.

    `fields` maps column names to fields. `attributes` maps lxml attribute keys (`{uri}local`) to
    a column name (plain string), a `_Field` (typed or list) or None (skipped), and `verbatim`
    holds those whose column name is the key itself; `children` maps tags to specs
    `(name, kind, node)`. Inferred nodes are `strict`: a key they lack is an error;
    declared ones resolve new keys by name and remember the answer."""

    __slots__ = ("fields", "keys", "attributes", "verbatim", "children", "leaf", "text")
    __slots__ += ("saw_text", "strict", "strip")

    def __init__(self, *, strict: bool, leaf: bool = False, strip: bool = False) -> None:
        self.fields: dict[str, _Field] = {}
        self.keys: dict[str, _Field] = {}  # while inferring: tag or "@" + attribute key → field
        self.attributes: dict[str, Any] = {}
        self.verbatim: set[str] = set()  # attribute keys that are their column's name
        self.children: dict[str, tuple[str, int, Any]] = {}
        self.leaf, self.strict, self.strip = leaf, strict, strip
        self.text = self.saw_text = False


_ATTRIBUTE = _Node(strict=True, leaf=True)


class _AttributeList(list):
    """The list an attribute fills for a declared List column: a child element of the same
    name then is an error (both fill the column), not one more item."""


_UNSET: Any = object()
_UNKNOWN: Any = object()


def _child_spec(field: _Field | None) -> tuple[str, int, Any]:
    if field is None:
        return ("", _SKIP, None)
    if field.node.leaf and field.node.strict:
        return (field.name, _LEAF_LIST if field.repeated else _LEAF, field.node)
    return (field.name, _VALUE_LIST if field.repeated else _VALUE, field.node)


def _attribute_spec(field: _Field | None) -> Any:
    if field is None or (not field.node.strip and not field.repeated):
        return field and field.name
    return field


class _Namer:
    """Column names of lxml keys (see the module docstring)."""

    def __init__(self, namespaces: Mapping[str, str] | None, attribute_prefix: str) -> None:
        self.prefixes = {uri: prefix for prefix, uri in (namespaces or {}).items() if prefix}
        self.prefixes.setdefault(XML_NAMESPACE, "xml")
        self.attribute_prefix = attribute_prefix
        self.row_namespace: Any = _UNSET  # the row elements' namespace, once a row is seen

    def element(self, tag: str, element: Any) -> str:
        if tag[0] != "{":
            return tag
        uri, local = tag[1:].split("}", 1)
        if uri == self.row_namespace:
            return local
        return self._qualified(uri, local, element.prefix)

    def attribute(self, key: str, element: Any) -> str | None:
        """The column name of attribute `key` of `element`; None if `element` is None (no tree)
        and only the document's own prefix could name it."""
        if key[0] != "{":
            return self.attribute_prefix + key
        uri, local = key[1:].split("}", 1)
        if self.prefixes.get(uri):
            return self.attribute_prefix + self._qualified(uri, local, None)
        if element is None:
            return None
        prefix = next((p for p, u in element.nsmap.items() if u == uri and p), None)
        return self.attribute_prefix + self._qualified(uri, local, prefix)

    def _qualified(self, uri: str, local: str, document_prefix: str | None) -> str:
        prefix = self.prefixes.get(uri) or document_prefix
        return f"{prefix}:{local}" if prefix else f"{{{uri}}}{local}"


def _namespace(tag: str) -> str | None:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _has_text(element: Any) -> bool:
    """True if `element` holds text other than whitespace outside its child elements."""
    text = element.text
    if text and not text.isspace():
        return True
    for child in element:
        tail = child.tail
        if tail and not tail.isspace():
            return True
    return False


# --- conversion --------------------------------------------------------------------------------


class _Converter:
    """Row elements → Python values shaped by `plan.root` (or growing it, while inferring)."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.namer = plan.namer
        self.source = ""
        self.first = 0  # index in its source of the batch's first row
        self.batch: list = []  # the batch's rows so far: the row being converted is next

    @property
    def index(self) -> int:
        """Index of the row being converted in its source, for messages."""
        return self.first + len(self.batch)

    def observe(self, element: Any, node: _Node) -> None:
        """Grow `node` so that it holds `element`'s value."""
        keys = node.keys
        for key, _ in element.items():
            if "@" + key not in keys:
                self._add(node, key, element, self.namer.attribute(key, element), True)
        seen = set()
        for child in element:
            tag = child.tag
            field = keys.get(tag)
            if field is None:
                field = self._add(node, tag, child, self.namer.element(tag, child), False)
            if tag in seen:
                field.repeated = True
            seen.add(tag)
            self.observe(child, field.node)
        if not node.saw_text and _has_text(element):
            node.saw_text = True

    def _add(self, node: _Node, key: str, element: Any, name: str, attribute: bool) -> _Field:
        other = node.fields.get(name)
        if other is not None:
            both = "an attribute and an element" if other.attribute != attribute else "two tags"
            hint = "; pass attribute_prefix='@'" if other.attribute != attribute else ""
            parent = element if attribute else element.getparent()
            raise XMLError(
                self.source,
                f"{both} of <{self._path(parent)}> map to the same column {name!r}{hint}",
                line=element.sourceline,
                row=self.index,
            )
        field = _Field(name, _ATTRIBUTE if attribute else _Node(strict=True), False, attribute)
        node.fields[name] = node.keys["@" + key if attribute else key] = field
        return field

    def struct(self, element: Any, node: _Node) -> dict[str, Any]:
        """`element` as a dict of its columns (absent ones missing)."""
        items = element.items()
        if items:
            values = dict(items)
            if not node.verbatim.issuperset(values):  # some need renaming, casting or skipping
                values = self.attributes(items, node, element)
        else:
            values = {}
        text = element.text
        if len(element):
            has_text = bool(text) and not text.isspace()
            children = node.children
            for child in element:
                tail = child.tail
                if tail and not has_text and not tail.isspace():
                    has_text = True
                spec = children.get(child.tag)
                if spec is None:
                    spec = self._resolve(node, child)
                name, kind, child_node = spec
                if kind == 0:  # _LEAF (literals: the hottest loop)
                    if len(child) or child.keys():
                        self.struct(child, child_node)  # raises, naming what is unexpected
                    if name in values:
                        self._repeated(element, child, name)
                    value = child.text
                    values[name] = "" if value is None else value
                elif kind == 1:  # _LEAF_LIST
                    if len(child) or child.keys():
                        self.struct(child, child_node)
                    value = child.text
                    listed = values.get(name)
                    if listed is None:
                        values[name] = ["" if value is None else value]
                    elif listed.__class__ is _AttributeList:
                        self._repeated(element, child, name)
                    else:
                        listed.append("" if value is None else value)
                elif kind == 2:  # _VALUE
                    if name in values:
                        self._repeated(element, child, name)
                    values[name] = self.value(child, child_node)
                elif kind == 3:  # _VALUE_LIST
                    listed = values.get(name)
                    if listed is None:
                        values[name] = [self.value(child, child_node)]
                    elif listed.__class__ is _AttributeList:
                        self._repeated(element, child, name)
                    else:
                        listed.append(self.value(child, child_node))
            if has_text:
                if node.text:
                    text = "".join(element.itertext())
                    values[TEXT] = text.strip(_SPACE) if node.strip else text
                elif node.strict:
                    self._unknown(element, "text", element.sourceline)
        elif node.text:
            values[TEXT] = "" if text is None else text.strip(_SPACE) if node.strip else text
        elif node.strict and text and not text.isspace():
            self._unknown(element, "text", element.sourceline)
        return values

    def value(self, element: Any, node: _Node) -> Any:
        if not node.leaf:
            return self.struct(element, node)
        text = "".join(element.itertext()) if len(element) else element.text or ""
        return text.strip(_SPACE) if node.strip else text

    def attributes(self, items: Any, node: _Node, element: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        attributes = node.attributes
        for key, value in items:
            spec = attributes.get(key, _UNKNOWN)
            if spec.__class__ is str:
                values[spec] = value
            elif spec is not None:
                self._attribute(values, node, key, value, element, spec)
        return values

    def _attribute(
        self, values: dict, node: _Node, key: str, value: str, element: Any, spec: Any
    ) -> None:
        if spec is _UNKNOWN:
            name = self.namer.attribute(key, element)
            field = node.fields.get(name)
            unfit = field is not None and not field.node.leaf
            if element is None and (name is None or node.strict or unfit):
                raise _Fallback  # no tree to name it by, or to say where the error is
            if node.strict:
                self._unknown(element, f"attribute {name!r}", element.sourceline)
            if unfit:
                raise XMLError(
                    self.source,
                    f"attribute {name!r} of <{self._path(element)}> fills column {name!r}, "
                    "declared as a struct; an attribute is a string (or a list of strings)",
                    line=element.sourceline,
                    row=self.index,
                )
            spec = node.attributes[key] = _attribute_spec(field)
            if spec is None:
                return
            if spec == key:
                node.verbatim.add(key)
            if spec.__class__ is str:
                values[spec] = value
                return
        if spec.node.strip:
            value = value.strip(_SPACE)
        values[spec.name] = _AttributeList((value,)) if spec.repeated else value

    def _resolve(self, node: _Node, child: Any) -> tuple[str, int, Any]:
        """The spec of a tag met for the first time in a declared node (strict: an error)."""
        name = self.namer.element(child.tag, child)
        if node.strict:
            self._unknown(child.getparent(), f"element <{name}>", child.sourceline)
        spec = node.children[child.tag] = _child_spec(node.fields.get(name))
        return spec

    def _path(self, element: Any) -> str:
        """`row/child/grandchild`, from the row element down to `element`, for messages."""
        names = [_local(element.tag)]
        if not self.plan.is_row(element.tag):
            for ancestor in element.iterancestors():
                names.append(_local(ancestor.tag))
                if self.plan.is_row(ancestor.tag):
                    break
        return "/".join(reversed(names))

    def _unknown(self, parent: Any, what: str, line: int | None) -> NoReturn:
        raise XMLError(
            self.source,
            f"{what} in <{self._path(parent)}> is not in the Features inferred from the first "
            f"{self.plan.inferred_rows} rows; pass infer_rows=None to infer them from every "
            "row, or declare features=",
            line=line,
            row=self.index,
        )

    def _repeated(self, element: Any, child: Any, name: str) -> NoReturn:
        tag, path = _local(child.tag), self._path(element)
        if any(self.namer.attribute(key, element) == name for key in element.attrib):
            problem = f"an attribute and element <{tag}> of <{path}> both fill column {name!r}; "
            problem += "pass attribute_prefix='@' to tell them apart"
        elif self.plan.inferred_rows:
            problem = (
                f"<{tag}> occurs more than once in <{path}>, but column {name!r} is not a list "
                f"in the Features inferred from the first {self.plan.inferred_rows} rows; pass "
                "infer_rows=None to infer them from every row, or declare features="
            )
        else:
            problem = (
                f"<{tag}> occurs more than once in <{path}>, but column {name!r} is declared "
                "as a single value; declare it as a List"
            )
        raise XMLError(self.source, problem, line=child.sourceline, row=self.index)


def _compiled_walker() -> Any:
    """`ds_assets.formats._xmltree.Walker`, `_Converter.struct` compiled, if it is built, reads
    this lxml's tree as lxml does and `DS_ASSETS_XML_COMPILED` is not `0`; else None."""
    if os.environ.get("DS_ASSETS_XML_COMPILED") == "0":
        return None
    try:
        from ds_assets.formats import _xmltree
    except ImportError:
        return None
    _xmltree.configure(TEXT, _SPACE, _AttributeList, _UNKNOWN, etree._Element)
    sample = etree.fromstring(
        b'<r xmlns:p="urn:p" a="1" p:b="x&amp;y">t<![CDATA[u]]><c/>w<p:d/></r>'
    )
    expected = (sample.tag, sample.text, [child.tag for child in sample], sample.items())
    return _xmltree.Walker if _xmltree.view(sample) == expected else None


_WALKER = _compiled_walker()
_ATTRIBUTE_PATH = _WALKER is None  # the compiled tree path is faster on attribute rows too


# --- features ----------------------------------------------------------------------------------


def _finish(node: _Node, root: bool = False) -> None:
    """Settle inferred shapes: a node without fields is a string; `#text` if text was seen."""
    node.leaf = not node.fields and not root
    node.text = node.saw_text or (root and not node.fields)
    for field in node.fields.values():
        if field.node is not _ATTRIBUTE:
            _finish(field.node)
    for key, field in node.keys.items():
        if field.attribute:
            key = key[1:]
            node.attributes[key] = _attribute_spec(field)
            if node.attributes[key] == key:
                node.verbatim.add(key)
        else:
            node.children[key] = _child_spec(field)


def _features_of(node: _Node) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for name, field in node.fields.items():
        feature = Value("string") if field.node.leaf else _features_of(field.node)
        features[name] = List(feature) if field.repeated else feature
    if node.text:
        features[TEXT] = Value("string")
    return features


def _declared(feature: Any, column: str) -> tuple[_Node, bool]:
    """The node that fills a declared feature, and whether the feature is a list."""
    if isinstance(feature, (List, LargeList)):
        node, repeated = _declared(feature.feature, column)
        if repeated:
            raise ValueError(
                f"features: column {column!r} is a list of lists, which XML cannot express "
                "(a repeated element is one list; make the inner list a field of a struct)"
            )
        return node, True
    if isinstance(feature, dict):
        node = _Node(strict=False)
        for name, sub in feature.items():
            path = f"{column}.{name}" if column else name
            child, repeated = _declared(sub, path)
            if name == TEXT:
                if repeated or not child.leaf:
                    raise ValueError(f"features: {path!r} must be a single value")
                node.text, node.strip = True, child.strip
            else:
                node.fields[name] = _Field(name, child, repeated, None)
        return node, False
    typed = not (isinstance(feature, Value) and feature.dtype in ("string", "large_string"))
    return _Node(strict=False, leaf=True, strip=typed), False


def _as_strings(feature: Any) -> Any:
    """`feature` with every leaf a string: the type values are built with before the cast."""
    if isinstance(feature, dict):
        return {name: _as_strings(sub) for name, sub in feature.items()}
    if isinstance(feature, List):
        return List(_as_strings(feature.feature), length=feature.length)
    if isinstance(feature, LargeList):
        return LargeList(_as_strings(feature.feature))
    if isinstance(feature, Value) and feature.dtype == "large_string":
        return feature
    return Value("string")


# --- plan and passes ---------------------------------------------------------------------------


class _Plan:
    """What every pass over the sources needs; made by `parse`, shared by every pass."""

    def __init__(
        self,
        sources: list[_Source],
        row_tag: str,
        encoding: str | None,
        namespaces: Mapping[str, str] | None,
        attribute_prefix: str,
    ) -> None:
        self.sources, self.row_tag = sources, row_tag
        self.encoding, self.transcode = _encoding(encoding)
        self.matcher = _row_matcher(row_tag, namespaces)
        self.namer = _Namer(namespaces, attribute_prefix)
        self.root = _Node(strict=True)
        self.features = Features()
        self.string_type = pa.struct([])
        self.cast = False
        self.inferred_rows = 0

    def declare(self, features: Features) -> None:
        features = features if isinstance(features, Features) else Features(features)
        self.root, _ = _declared(dict(features), "")
        self.features = features
        strings = Features(_as_strings(dict(features)))
        self.string_type = self._struct_of(strings)
        self.cast = strings != features

    def infer(self, limit: int | None) -> _Resume | None:
        """Infer Features from the first `limit` rows (every row if None). Returns the reader,
        with the rows it read, for the first pass to go on from (None if it read them all)."""
        reader = _Reader(self)
        reader.keep = limit is not None
        converter = _Converter(self)
        rows = reader.rows()
        kept: list[Any] = []
        count = 0
        for element in rows:
            if limit is not None:
                kept.append(element)
            if element is None:
                converter.source, converter.first = reader.source.name, 0
                continue
            if count == 0:
                self.namer.row_namespace = _namespace(element.tag)
            converter.observe(element, self.root)
            converter.first += 1
            count += 1
            if limit is not None and (count >= limit or reader.input.consumed > INFER_BYTES):
                break
        if count == 0:
            rows.close()
            raise XMLError(self._names(), self._no_rows(reader))
        self.inferred_rows = count
        _finish(self.root, root=True)
        self.features = Features(_features_of(self.root))
        self.string_type = self._struct_of(self.features)
        if limit is None:
            return None
        reader.keep = False
        return _Resume(reader, kept, rows)

    def _struct_of(self, features: Features) -> pa.StructType:
        try:
            return pa.struct(list(features.arrow_schema))
        except pa.ArrowInvalid as error:
            if "ecursion" not in str(error):
                raise
            raise XMLError(
                self._names(),
                "the rows nest elements deeper than Arrow can store (structs and lists 64 "
                "levels deep); declare features= without the deepest columns, or pick a deeper "
                f"row_tag ({error})",
            ) from None

    @property
    def attribute_rows(self) -> bool:
        """True if rows may hold attributes only (and text): worth the attribute-row path."""
        fields = self.root.fields.values()
        return all(field.attribute is not False and field.node.leaf for field in fields)

    def is_row(self, tag: str) -> bool:
        if self.matcher.startswith("{*}"):
            return _local(tag) == self.matcher[3:]
        return tag == (self.matcher[2:] if self.matcher.startswith("{}") else self.matcher)

    def _names(self) -> str:
        return ", ".join(source.name for source in self.sources)

    def _no_rows(self, reader: _Reader) -> str:
        return (
            f"no element matches row_tag {self.row_tag!r} (lxml tag {self.matcher!r}), so there "
            "are no rows to infer Features from; " + "; ".join(reader.empty)
        )


class _Resume:
    """The inference's reader, for the first pass over sources that cannot be read again: the
    rows it kept, then the rest."""

    def __init__(self, reader: _Reader, kept: list[Any], rest: Iterator[Any]) -> None:
        self.reader = reader
        self.kept: list[Any] | None = kept
        self.rest: Iterator[Any] | None = rest

    def take(self) -> Iterator[Any] | None:
        if self.kept is None or self.rest is None:
            return None
        kept, rest = self.kept, self.rest
        self.kept = self.rest = None
        kept.append(_END)
        kept.reverse()  # popped one by one: each kept row's tree is freed once converted
        return itertools.chain(iter(kept.pop, _END), rest)

    def close(self) -> None:
        if self.rest is not None:
            self.rest.close()
        self.kept = self.rest = None


_END: Any = object()


def _tables(
    plan: _Plan, resume: _Resume | None, sources: list[_Source] | None = None
) -> Iterator[pa.Table]:
    """Arrow tables of the rows of `sources` (default: all the plan's), a batch at a time; a
    batch never spans two sources."""
    rows = resume.take() if resume is not None else None
    if rows is not None:  # sources that cannot be read again: go on from the inference
        yield from _tree_tables(plan, resume.reader, rows)
        return
    for source in plan.sources if sources is None else sources:
        yield from _source_tables(plan, source)


def _source_tables(plan: _Plan, source: _Source) -> Iterator[pa.Table]:
    """The tables of one source: by the attribute-row path while it can convert the rows (and
    the source can be read again), then by the tree path from the first row not yet yielded."""
    done = 0
    if _ATTRIBUTE_PATH and plan.attribute_rows and source.rereadable:
        try:
            for table in _attribute_tables(plan, source):
                done += table.num_rows
                yield table
            return
        except _Fallback:
            pass
    reader = _Reader(plan, [source])
    rows = reader.rows()
    if done:
        rows = _skipped(rows, done)
    yield from _tree_tables(plan, reader, rows, first=done)


def _skipped(rows: Iterator[Any], count: int) -> Iterator[Any]:
    """The rows of one source (None first, when it is open) without its first `count` rows."""
    yield next(rows)
    for _ in itertools.islice(rows, count):
        pass
    yield from rows


def _tree_tables(
    plan: _Plan, reader: _Reader, rows: Iterator[Any], first: int = 0
) -> Iterator[pa.Table]:
    """The tree path: the row elements `rows` of `reader` (None before each source's) converted
    by `_Converter`; the first source's rows are numbered from `first` in messages."""
    converter = _Converter(plan)
    struct, root = converter.struct if _WALKER is None else _WALKER(converter), plan.root
    values: list[dict[str, Any]] = []
    lines: list[int] = []
    keep_lines = plan.cast
    unnamed = plan.namer.row_namespace is _UNSET
    start = 0
    collector = _CollectorPause()
    collector.pause()
    try:
        for element in rows:
            if element is None:  # a new source
                if values:
                    table = _tree_table(plan, values, converter, lines)
                    collector.resume()
                    yield table
                    collector.pause()
                values, lines, start = [], [], 0
                converter.source = reader.source.name
                converter.first, converter.batch, first = first, values, 0
                continue
            if unnamed:  # declared features: names are relative to the first row's namespace
                plan.namer.row_namespace, unnamed = _namespace(element.tag), False
            if keep_lines:
                lines.append(element.sourceline)
            values.append(struct(element, root))
            if len(values) >= BATCH_ROWS or reader.input.consumed - start > BATCH_BYTES:
                table = _tree_table(plan, values, converter, lines)
                collector.resume()
                yield table
                collector.pause()
                converter.first += len(values)
                values, lines, start = [], [], reader.input.consumed
                converter.batch = values
        if values:
            table = _tree_table(plan, values, converter, lines)
            collector.resume()
            yield table
    finally:
        collector.resume()


def _tree_table(
    plan: _Plan, values: list[dict], converter: _Converter, lines: list[int]
) -> pa.Table:
    """A batch of the tree path; a value that does not cast raises `XMLError` saying where."""
    source, first = converter.source, converter.first

    def failure(table: pa.Table | None) -> XMLError:
        if table is None:
            return _shape_error(plan, values, source, first, lines)
        return _cast_error(plan, table, source, first, lines)

    return _table(plan, values, failure)


class _Fallback(Exception):
    """The attribute-row path met what only the tree path can convert, or say where it is."""


class _AttributeRows:
    """The parser target of the attribute-row path: the attributes (and text) of each row
    element as a dict in `rows`, the same dict `_Converter.struct` makes of it, while libxml2
    builds no tree. An element inside a row, or anything that needs the tree to be named or
    placed in a message, raises `_Fallback`."""

    def __init__(self, plan: _Plan, name: str) -> None:
        self.node, self.is_row = plan.root, plan.is_row
        self.converter = _Converter(plan)
        self.converter.source = name
        self.input: Any = None  # the `_Input` fed to the parser
        self.rows: list[dict[str, Any]] = []
        self.row_tags: dict[str, bool] = {}
        self.values: dict[str, Any] | None = None  # the open row's; None between rows
        self.text: list[str] = []

    def start(self, tag: str, attrib: Any) -> None:
        if self.values is not None:
            raise _Fallback  # an element inside a row
        row = self.row_tags.get(tag)
        if row is None:
            row = self.row_tags[tag] = self.is_row(tag)
        if not row:
            return
        if not attrib:
            self.values = {}
        elif self.node.verbatim.issuperset(attrib):
            self.values = attrib  # a dict of its own: lxml makes one per element
        else:
            self.values = self.converter.attributes(attrib.items(), self.node, None)

    def data(self, text: str) -> None:
        if self.values is not None:
            self.text.append(text)

    def end(self, tag: str) -> None:
        values = self.values
        if values is None:
            return
        if self.text or self.node.text:
            self._text(values)
        self.rows.append(values)
        self.values = None
        self.input.mark = self.input.consumed

    def _text(self, values: dict[str, Any]) -> None:
        node, text = self.node, "".join(self.text)
        self.text.clear()
        if node.text:
            values[TEXT] = text.strip(_SPACE) if node.strip else text
        elif node.strict and not text.isspace():
            raise _Fallback  # text that the inferred Features lack: an error, with its line

    def close(self) -> None:
        pass


def _attribute_tables(plan: _Plan, source: _Source) -> Iterator[pa.Table]:
    """The attribute-row path: the rows of `source` as tables, parsed with `_AttributeRows` as
    the target. Any error raises `_Fallback`: the tree path reads the source again, and raises
    it with its line (libxml2's, or a cast's)."""
    target = _AttributeRows(plan, source.name)
    options = dict(PARSER_OPTIONS, target=target)
    if plan.encoding:
        options["encoding"] = plan.encoding
    parser = etree.XMLParser(**options)
    collector = _CollectorPause()
    collector.pause()
    try:
        with source.open(plan.transcode) as stream:
            target.input = stream
            start, end = 0, False
            while not end:
                try:
                    data = stream.read(CHUNK_BYTES)
                    end = not data
                    if end:
                        parser.close()
                    else:
                        parser.feed(data)
                        # libxml2's namespace errors (an undeclared prefix...) do not stop a
                        # target parser as they stop the tree path: they are only logged
                        if parser.feed_error_log.filter_from_errors():
                            raise _Fallback
                except (etree.LxmlError, XMLError) as error:
                    raise _Fallback from error
                rows = target.rows
                full = len(rows) >= BATCH_ROWS or stream.consumed - start > BATCH_BYTES
                if rows and (full or end):
                    table = _table(plan, rows, lambda table: _Fallback())
                    target.rows, start = [], stream.consumed
                    collector.resume()
                    yield table
                    collector.pause()
    finally:
        collector.resume()


class _CollectorPause:
    """Python's cycle collector, off while a batch is built and back on for the caller.

    Building a batch allocates a few container objects per element (lxml proxies, dicts, lists)
    and keeps the rows' dicts alive until the batch is done: with the collector on, this sets off
    generation-2 collections that walk every object of the process (datasets, pyarrow, ...), a
    quarter of the CPU time. The values built hold no reference cycles; reference counting frees
    them. The caller's code between two batches runs with the collector as it was."""

    def __init__(self) -> None:
        self.enabled = False

    def pause(self) -> None:
        self.enabled = gc.isenabled()
        gc.disable()

    def resume(self) -> None:
        if self.enabled:
            gc.enable()


def _table(
    plan: _Plan, values: list[dict], failure: Callable[[pa.Table | None], Exception]
) -> pa.Table:
    """A batch of rows (dicts of strings) as a table of the plan's Features; if a value does not
    cast, raises `failure(table of strings)`, `failure(None)` if a row does not even fit the
    Features' shape (more items than a fixed-length List holds)."""
    try:
        strings = pa.array(values, type=_as_binary(plan.string_type)).cast(plan.string_type)
    except (pa.ArrowException, ValueError, TypeError) as error:
        raise failure(None) from error
    table = pa.Table.from_struct_array(strings)
    if not plan.cast:
        return table
    try:
        return cast_table_to_features(table, plan.features)
    except (pa.ArrowException, ValueError, TypeError, KeyError) as error:
        raise failure(table) from error


@functools.lru_cache(maxsize=64)
def _as_binary(string_type: pa.DataType) -> pa.DataType:
    """`string_type` with binary where it has strings. pyarrow converts Python values (`str`
    or UTF-8 `bytes`) to binary 5-20x faster than to string, and the cast back only checks the
    UTF-8: on long non-ASCII values (escaped HTML bodies) that is most of a batch's time.

    >>> _as_binary(pa.struct([("a", pa.string()), ("b", pa.list_(pa.large_string()))]))
    StructType(struct<a: binary, b: list<item: large_binary>>)
    """
    if string_type == pa.string():
        return pa.binary()
    if string_type == pa.large_string():
        return pa.large_binary()
    if pa.types.is_struct(string_type):
        return pa.struct([field.with_type(_as_binary(field.type)) for field in string_type])
    if pa.types.is_fixed_size_list(string_type):
        field = string_type.value_field
        return pa.list_(field.with_type(_as_binary(field.type)), string_type.list_size)
    if pa.types.is_large_list(string_type):
        field = string_type.value_field
        return pa.large_list(field.with_type(_as_binary(field.type)))
    if pa.types.is_list(string_type):
        field = string_type.value_field
        return pa.list_(field.with_type(_as_binary(field.type)))
    return string_type


def _shape_error(
    plan: _Plan, values: list[dict], source: str, first: int, lines: list[int]
) -> XMLError:
    """The first value in `values` that does not fit the shape of its column, as an error."""
    for position, row in enumerate(values):
        for column, value in row.items():
            try:
                pa.array([value], type=plan.string_type.field(column).type)
            except (pa.ArrowException, ValueError, TypeError) as error:
                return XMLError(
                    source,
                    f"column {column!r}: {value!r} does not fit {plan.features[column]}: {error}",
                    line=lines[position] if position < len(lines) else None,
                    row=first + position,
                )
    return XMLError(source, "the rows do not fit the declared features", row=first)


def _cast_error(
    plan: _Plan, table: pa.Table, source: str, first: int, lines: list[int]
) -> XMLError:
    """The first value in `table` that does not cast to the declared features, as an error."""
    for position in range(table.num_rows):
        for column in table.column_names:
            cell = table.column(column).slice(position, 1)
            try:
                cast_array_to_feature(cell, plan.features[column])
            except (pa.ArrowException, ValueError, TypeError, KeyError) as error:
                return XMLError(
                    source,
                    f"column {column!r}: cannot cast {cell.to_pylist()[0]!r} to "
                    f"{plan.features[column]}: {error}",
                    line=lines[position],
                    row=first + position,
                )
    return XMLError(source, "the rows do not cast to the declared features", row=first)
