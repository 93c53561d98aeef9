"""The XML reader on input that fuzzing found mishandled: each gives the rows the module
docstring promises or an `XMLError` (a `ValueError`/`LookupError` for bad arguments) naming
the source, never another exception or a value in the wrong column."""

import bz2
import contextlib
import gzip
import io
import lzma
import os

import pytest
from datasets import Features, List, Value

from ds_assets.formats import xml
from ds_assets.formats.output import remove_stale_outputs
from ds_assets.formats.xml import XMLError

pytestmark = pytest.mark.usefixtures("xml_tree_walker")  # both row converters

STRING = Features({"a": Value("string")})


class Trickle(io.RawIOBase):
    """A stream handing out `step` bytes per read, as a socket or an HTTP body may."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = io.BytesIO(data), step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data.read(min(self.step, len(buffer)))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b'<d><row p:a="2"/></d>', "Namespace prefix p for a on row is not defined"),
        (b'<d><p:row a="2"/></d>', "Namespace prefix p on row is not defined"),
        (b'<d xmlns:xml="urn:wrong"><row a="1"/></d>', "xml namespace prefix mapped to wrong"),
        (b'<d xmlns:s:m="u"><row a="2"/></d>', "Failed to parse QName 'xmlns:s:m'"),
    ],
)
def test_namespace_errors_are_errors_on_every_path(document, problem):
    # attribute-only rows with declared Features take the parser-target path, which libxml2's
    # namespace errors do not stop; the tree path (a stream read once) always raised
    for source in (io.BytesIO(document), Trickle(document, 1 << 16)):
        with pytest.raises(XMLError, match=rf"line 1, column \d+: {problem}"):
            xml.parse(source, features=STRING)


def test_elements_nested_deeper_than_arrow_allows_are_an_xml_error():
    deep = b"<d><row>" + b"<a>" * 64 + b"x" + b"</a>" * 64 + b"</row></d>"
    with pytest.raises(XMLError, match=r"^<BytesIO>: the rows nest elements deeper than Arrow"):
        xml.parse(io.BytesIO(deep))
    shallow = b"<d><row>" + b"<a>" * 10 + b"x" + b"</a>" * 10 + b"</row></d>"
    assert len(xml.parse(io.BytesIO(shallow))) == 1


@pytest.mark.parametrize(
    "document",
    [b"<d><row><n>1</n><n>2</n><n>3</n></row></d>", b'<d><row n="1"/></d>'],
    ids=["children", "attribute"],
)
def test_more_or_fewer_items_than_a_fixed_length_list_is_an_error_naming_the_row(document):
    features = Features({"n": List(Value("int32"), length=2)})
    with pytest.raises(XMLError, match=r"line 1, row 0: column 'n': .* does not fit List"):
        xml.parse(io.BytesIO(document), features=features)
    fits = b"<d><row><n>1</n><n>2</n></row></d>"
    assert xml.parse(io.BytesIO(fits), features=features)["n"] == [[1, 2]]


def test_an_attribute_and_a_child_filling_one_declared_list_is_an_error():
    features = Features({"id": List(Value("string"))})
    both = b'<d><row id="1"><id>2</id></row></d>'
    with pytest.raises(XMLError, match=r"an attribute and element <id> of <row> both fill"):
        xml.parse(io.BytesIO(both), features=features)
    assert xml.parse(io.BytesIO(b'<d><row id="1"/></d>'), features=features)["id"] == [["1"]]
    children = b"<d><row><id>1</id><id>2</id></row></d>"
    assert xml.parse(io.BytesIO(children), features=features)["id"] == [["1", "2"]]


@pytest.mark.parametrize(("encoding", "step"), [("utf-16-le", 1), ("utf-8-sig", 3)])
def test_short_reads_of_a_transcoded_encoding_are_not_the_end_of_the_input(encoding, step):
    document = '<d><row a="é">x</row><row a="ü"/></d>'.encode(encoding)
    dataset = xml.parse(Trickle(document, step), encoding=encoding)
    assert dataset.to_list() == [{"a": "é", "#text": "x"}, {"a": "ü", "#text": ""}]


def test_encodings_that_are_not_text_or_do_not_make_text_are_refused():
    for codec in ("hex", "rot13"):
        with pytest.raises(LookupError, match=rf"encoding='{codec}': not a text encoding"):
            xml.parse(io.BytesIO(b"<d><row/></d>"), encoding=codec)
    with pytest.raises(XMLError, match=r"^<BytesIO>: not unicode-escape: .*surrogates"):
        xml.parse(io.BytesIO(rb"<d><row>\ud800</row></d>"), encoding="unicode_escape")


def test_a_row_past_line_65535_is_not_placed_on_an_earlier_line():
    document = b"<d>" + b"\n" * 70_000 + b'<row a="1"/>\n<row a="x"/></d>'
    with pytest.raises(XMLError, match=r"line 65535 or later, row 1: column 'a'"):
        xml.parse(io.BytesIO(document), features=Features({"a": Value("int32")}))


def test_typed_values_are_trimmed_of_xml_whitespace_only():
    features = Features({"n": Value("int32")})
    spaced = b'<d><row><n> 1\t</n></row><row n=" 2 "/></d>'
    assert xml.parse(io.BytesIO(spaced), features=features)["n"] == [1, 2]
    no_break = '<d><row n="1\u00a0"/></d>'.encode()
    with pytest.raises(XMLError, match=r"row 0: column 'n': cannot cast '1\\xa0'"):
        xml.parse(io.BytesIO(no_break), features=features)


def test_arguments_that_would_lose_data_are_refused():
    with pytest.raises(ValueError, match=r"attribute_prefix '#' would make an attribute 'text'"):
        xml.parse(io.BytesIO(b'<d><row text="A">B</row></d>'), attribute_prefix="#")
    with pytest.raises(ValueError, match=r"features declares no columns"):
        xml.parse(io.BytesIO(b'<d><row a="1"/></d>'), features=Features({}))


def test_removing_stale_outputs_copes_with_files_removed_meanwhile(tmp_path, monkeypatch):
    for name in ("gone.arrow", "old.arrow"):
        (tmp_path / name).write_bytes(b"")
        os.utime(tmp_path / name, (0, 0))
    listing = os.scandir

    @contextlib.contextmanager
    def listed_then_one_removed(folder):
        # another process's failed read deletes its output between the listing and the stat
        with listing(folder) as entries:
            listed = sorted(entries, key=lambda entry: entry.name)
        os.remove(tmp_path / "gone.arrow")
        yield iter(listed)

    monkeypatch.setattr(os, "scandir", listed_then_one_removed)
    remove_stale_outputs(str(tmp_path), max_age=1)
    assert not (tmp_path / "old.arrow").exists()


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_input_is_recognized_from_a_stream_of_short_reads(compress):
    document = compress(b'<d><row a="1"/><row a="2"/></d>')
    assert xml.parse(Trickle(document, 1))["a"] == ["1", "2"]
