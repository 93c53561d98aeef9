"""The XML reader (`ds_assets.formats.xml`): the row mapping on hand-written documents, real XML
that ships with this machine's packages compared with independent parsers (lxml's full tree,
the standard library's ElementTree), declared Features against `datasets`' own casting, safety
against entity bombs and external entities, inputs (compressed, lists, file objects, S3), and
peak memory on a 1 GB file in a fresh process."""

from __future__ import annotations

import bz2
import gc
import glob
import gzip
import http.server
import io
import json
import lzma
import os
import threading
import xml.etree.ElementTree as ElementTree

import pytest
from datasets import ClassLabel, Dataset, Features, IterableDataset, List, Value
from lxml import etree

from ds_assets.formats import xml
from ds_assets.formats.xml import XMLError, XMLSecurityError
from tests.bench_scripts import run_bench_script

pytestmark = pytest.mark.usefixtures("xml_tree_walker")  # both row converters

MIME_DATABASE = "/usr/share/mime/packages/freedesktop.org.xml"  # Debian shared-mime-info
MIME_NS = "http://www.freedesktop.org/standards/shared-mime-info"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
LANGUAGES = "/usr/share/xml/iso-codes/iso_639-3.xml"  # Debian iso-codes
SUBDIVISIONS = "/usr/share/xml/iso-codes/iso_3166-2.xml"  # iso-codes; has a bare '&' (malformed)
GSETTINGS_SCHEMAS = sorted(glob.glob("/usr/share/glib-2.0/schemas/*.gschema.xml"))
STRING = Value("string")


PACKAGES = {MIME_DATABASE: "shared-mime-info", LANGUAGES: "iso-codes", SUBDIVISIONS: "iso-codes"}


def installed(path: str) -> str:
    """`path`, a file shipped by a Debian package of this machine's image; skip if absent."""
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent: the test reads it from Debian's {PACKAGES[path]} package")
    return path


def write(folder, text: str, name: str = "data.xml") -> str:
    path = os.path.join(str(folder), name)
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
    return path


def rows_of(dataset) -> list[dict]:
    return list(dataset)


# --- the mapping, on hand-written documents ---------------------------------------------------


CATALOG = """<?xml version="1.0"?>
<catalog>
  <row id="1" lang="en">
    <title>Dune</title>
    <tag>sf</tag>
    <tag>classic</tag>
    <author born="1920">Frank Herbert</author>
    <publisher><name>Chilton</name><city>Philadelphia</city></publisher>
  </row>
  <row id="2">
    <title>Vendredi</title>
    <tag>novel</tag>
    <author>Michel Tournier</author>
    <empty/>
  </row>
</catalog>
"""


def test_attributes_children_lists_structs_and_text_have_the_documented_features(tmp_path):
    books = xml.parse(write(tmp_path, CATALOG))
    assert books.features == Features(
        {
            "id": STRING,
            "lang": STRING,
            "title": STRING,
            "tag": List(STRING),
            "author": {"born": STRING, "#text": STRING},
            "publisher": {"name": STRING, "city": STRING},
            "empty": STRING,
        }
    )
    assert rows_of(books) == [
        {
            "id": "1",
            "lang": "en",
            "title": "Dune",
            "tag": ["sf", "classic"],
            "author": {"born": "1920", "#text": "Frank Herbert"},
            "publisher": {"name": "Chilton", "city": "Philadelphia"},
            "empty": None,
        },
        {
            "id": "2",
            "lang": None,  # missing attribute: null
            "title": "Vendredi",
            "tag": ["novel"],  # a list in every row once it repeats in one
            "author": {"born": None, "#text": "Michel Tournier"},  # text only: still the struct
            "publisher": None,  # missing element: null
            "empty": "",  # present but empty: ""
        },
    ]


def test_mixed_content_keeps_its_whole_text_and_indentation_is_not_text(tmp_path):
    path = write(
        tmp_path,
        "<doc><row>\n  <p>An <b>old</b> cat, <i>very</i> old.</p>\n"
        "  <note>  spaced  </note>\n</row></doc>",
    )
    (row,) = rows_of(xml.parse(path))
    assert row == {
        "p": {"b": "old", "i": "very", "#text": "An old cat, very old."},
        "note": "  spaced  ",  # a leaf keeps its text verbatim
    }
    assert "#text" not in xml.parse(path).features  # the row's own text is only indentation


def test_entities_cdata_comments_and_processing_instructions(tmp_path):
    path = write(
        tmp_path,
        '<!DOCTYPE doc [<!ENTITY co "ACME &amp; Co">]>\n<doc><row>'
        "<a>&co; &lt;3 &#x263A;</a><!-- gone --><?pi gone?><b><![CDATA[<raw> & ok]]></b>"
        "</row></doc>",
    )
    assert rows_of(xml.parse(path)) == [{"a": "ACME & Co <3 \u263a", "b": "<raw> & ok"}]


def test_rows_nested_in_rows_belong_to_the_outer_row(tmp_path):
    path = write(
        tmp_path,
        "<doc><item><name>outer</name><item><name>inner</name></item></item>"
        "<item><name>second</name></item></doc>",
    )
    items = xml.parse(path, row_tag="item")
    assert rows_of(items) == [
        {"name": "outer", "item": {"name": "inner"}},
        {"name": "second", "item": None},
    ]


def test_namespaces_by_uri_by_prefix_and_by_local_name(tmp_path):
    path = write(
        tmp_path,
        '<feed xmlns="urn:atom" xmlns:media="urn:media" xmlns:x="urn:other">'
        '<entry xml:lang="fr" x:rank="1"><title>Un</title><media:thumb url="a.png"/></entry>'
        "<entry><title>Deux</title><x:entry>not a row</x:entry></entry>"
        "</feed>",
    )
    expected = [
        {"xml:lang": "fr", "x:rank": "1", "title": "Un", "media:thumb": {"url": "a.png"}},
        {"title": "Deux", "x:entry": "not a row"},
    ]
    expected = [{**dict.fromkeys(["xml:lang", "x:rank", "media:thumb", "x:entry"]), **row}
                for row in expected]  # fmt: skip
    by_uri = xml.parse(path, row_tag="{urn:atom}entry")
    assert rows_of(by_uri) == expected
    assert rows_of(xml.parse(path, row_tag="a:entry", namespaces={"a": "urn:atom"})) == expected
    assert rows_of(xml.parse(path, row_tag="entry", namespaces={"": "urn:atom"})) == expected
    # a plain name matches in any namespace: both entries, and the nested x:entry is inside one
    assert rows_of(xml.parse(path, row_tag="entry")) == expected
    # prefixes from namespaces= name the columns of foreign namespaces
    renamed = xml.parse(path, row_tag="entry", namespaces={"m": "urn:media"})
    assert "m:thumb" in renamed.features and "media:thumb" not in renamed.features
    with pytest.raises(XMLError, match="no element matches row_tag '{}entry'"):
        xml.parse(path, row_tag="{}entry")  # no namespace only
    with pytest.raises(ValueError, match="prefix 'q' is not in namespaces"):
        xml.parse(path, row_tag="q:entry")


def test_attribute_and_child_with_one_name_is_an_error_unless_attributes_are_prefixed(tmp_path):
    path = write(tmp_path, '<doc><row id="1"><id>a</id></row></doc>')
    message = r"data.xml, line 1, row 0: an attribute and an element of <row> map to the same "
    with pytest.raises(XMLError, match=message + r"column 'id'; pass attribute_prefix='@'"):
        xml.parse(path)
    assert rows_of(xml.parse(path, attribute_prefix="@")) == [{"@id": "1", "id": "a"}]


def test_no_rows_names_what_the_document_holds_and_declared_features_give_an_empty_dataset(
    tmp_path,
):
    path = write(tmp_path, "<catalog><book/><book/></catalog>")
    with pytest.raises(XMLError, match=r"no element matches row_tag 'row'.*root <catalog>, "
                       r"with children \['book'\]"):  # fmt: skip
        xml.parse(path)
    empty = xml.parse(path, features=Features({"title": STRING}))
    assert len(empty) == 0 and empty.features == Features({"title": STRING})


def test_rows_after_inference_with_new_content_raise_naming_it(tmp_path):
    rows = "".join(f"<row><a>{n}</a></row>" for n in range(5))
    later = {
        '<row k="1"/>': "line 1, row 5: attribute 'k' in <row> is not in the Features inferred "
        "from the first 5 rows; pass infer_rows=None",
        "<row><b>x</b></row>": "element <b> in <row>",
        "<row><a>1</a><a>2</a></row>": "<a> occurs more than once in <row>, but column 'a' is "
        "not a list in the Features inferred from the first 5 rows",
        "<row><a><z/></a></row>": "element <z> in <row/a>",
        "<row>loose text</row>": "text in <row>",
    }
    for extra, message in later.items():
        path = write(tmp_path, f"<doc>{rows}{extra}</doc>")
        with pytest.raises(XMLError, match=message):
            xml.parse(path, infer_rows=5)
        assert len(xml.parse(path, infer_rows=None)) == 6  # inferred from every row


# --- real XML shipped with this machine's packages --------------------------------------------


def test_freedesktop_mime_database_matches_lxml_tree():
    """Namespaced (default namespace), attribute-heavy, repeated and nested elements, comments in
    some 40 languages: every row against XPath over lxml's full tree of the same file."""
    path = installed(MIME_DATABASE)
    mime_types = xml.parse(path, row_tag="mime-type")
    tree = etree.parse(path)
    ns = {"m": MIME_NS}
    expected = tree.xpath("/m:mime-info/m:mime-type", namespaces=ns)
    assert len(mime_types) == len(expected) > 800
    assert mime_types.features["comment"] == List({"xml:lang": STRING, "#text": STRING})
    assert mime_types.features["glob"] == List(
        {"pattern": STRING, "weight": STRING, "case-sensitive": STRING}
    )
    languages = set()
    for row, element in zip(mime_types, expected, strict=True):
        assert row["type"] == element.get("type")
        comments = [(c.get(XML_LANG), c.text) for c in element.findall("m:comment", ns)]
        assert [(c["xml:lang"], c["#text"]) for c in row["comment"]] == comments
        globs = [g.get("pattern") for g in element.findall("m:glob", ns)]
        assert [g["pattern"] for g in row["glob"] or []] == globs
        parents = [p.get("type") for p in element.findall("m:sub-class-of", ns)]
        assert [p["type"] for p in row["sub-class-of"] or []] == parents
        matches = element.xpath(".//m:match", namespaces=ns)
        assert _count_matches(row["magic"]) == len(matches)
        languages.update(lang for lang, _ in comments if lang)
    assert {"de", "ja", "zh_CN", "ru", "ar", "he"} <= languages


def _count_matches(value) -> int:
    """Match structs at any depth of the nested `magic` column."""
    if isinstance(value, list):
        return sum(_count_matches(item) for item in value)
    if isinstance(value, dict):
        return len(value.get("match") or []) + sum(
            _count_matches(item) for item in value.get("match") or []
        )
    return 0


def test_iso_639_3_languages_match_elementtree_across_many_batches():
    """7,910 attribute-only rows (more than one batch) against the standard library's parser;
    attributes first met after row 500 are refused with inferred Features of 500 rows."""
    path = installed(LANGUAGES)
    languages = xml.parse(path, row_tag="iso_639_3_entry")
    columns = list(languages.features)
    assert set(columns) >= {"id", "name", "part1_code", "part2_code", "common_name"}
    expected = [{name: entry.get(name) for name in columns}
                for entry in ElementTree.parse(path).getroot()]  # fmt: skip
    assert len(expected) > xml.BATCH_ROWS
    assert languages.to_list() == expected
    with pytest.raises(XMLError, match=r"iso_639-3.xml, line \d+, row 620: attribute "
                       r"'common_name' in <iso_639_3_entry> is not in the Features inferred "
                       r"from the first 500 rows"):  # fmt: skip
        xml.parse(path, row_tag="iso_639_3_entry", infer_rows=500)


def test_gsettings_schemas_list_of_files_matches_elementtree():
    """29 files read as one dataset; multi-line descriptions kept verbatim."""
    if not GSETTINGS_SCHEMAS:
        pytest.skip("no /usr/share/glib-2.0/schemas/*.gschema.xml: Debian's "
                    "gsettings-desktop-schemas package is absent")  # fmt: skip
    keys = xml.parse(GSETTINGS_SCHEMAS, row_tag="key")
    expected = [key for path in GSETTINGS_SCHEMAS for key in ElementTree.parse(path).iter("key")]
    assert len(keys) == len(expected) > 100
    for row, key in zip(keys, expected, strict=True):
        assert row["name"] == key.get("name")
        assert row["type"] == key.get("type")
        assert row["summary"] == key.findtext("summary")
        assert row["description"] == key.findtext("description")
        assert row["default"] == key.findtext("default")


def test_malformed_real_file_names_file_line_and_column():
    path = installed(SUBDIVISIONS)
    with pytest.raises(XMLError) as raised:
        xml.parse(path, row_tag="iso_3166_2_entry")
    with pytest.raises(etree.XMLSyntaxError) as reference:
        etree.parse(path)
    line, column = reference.value.position
    assert str(raised.value).startswith(f"{path}, line {line}, column {column}: ")
    assert (raised.value.line, raised.value.column) == (line, column)


def test_malformed_handwritten_documents(tmp_path):
    cases = {
        "<doc>\n<row>\n<a>1</b></row></doc>": r"line 3, column 9: Opening and ending tag mismatch",
        "<doc><row a='1' a='2'/></doc>": r"line 1, column \d+: Attribute a redefined",
        "<doc><row>": r"line 1, column 11: (Premature end of data|EndTag)",
        "<doc><row>caf\xe9</row></doc>": r"line 1, column 14: (Input is not proper UTF-8|Invalid "
        "bytes in character encoding)",
        "<r>" + "<a>" * 300 + "</a>" * 300 + "</r>": r"line 1, column \d+: Excessive depth in "
        r"document: 256 \(libxml2's limits for untrusted input stay on",
        "<r><row>" + "x" * 10_000_001 + "</row></r>": r"line 1, column \d+: Resource limit "
        r"exceeded: Text node too long \(libxml2's limits",
    }
    for number, (document, message) in enumerate(cases.items()):
        path = os.path.join(tmp_path, f"bad{number}.xml")
        with open(path, "wb") as out:
            out.write(document.encode("latin-1"))
        with pytest.raises(XMLError, match=rf"^{path}, {message}"):
            xml.parse(path)


# --- declared Features ------------------------------------------------------------------------


TYPED = """<doc>
  <row id=" 1 " score="2.5" ok="true" label="pos"><when>2024-01-02T03:04:05</when>
    <n>1</n><n> 2</n><meta size="10">big</meta><ignored>x</ignored></row>
  <row id="2" score="-1e3" ok="0" label="neg"><when>2024-02-03T00:00:00</when><n>3</n></row>
</doc>"""

TYPED_FEATURES = Features(
    {
        "id": Value("int32"),
        "score": Value("float64"),
        "ok": Value("bool"),
        "label": ClassLabel(names=["neg", "pos"]),
        "when": Value("timestamp[s]"),
        "n": List(Value("int64")),
        "meta": {"size": Value("int16"), "#text": STRING},
        "absent": STRING,
    }
)


def test_declared_features_cast_like_datasets_and_select_columns(tmp_path):
    typed = xml.parse(write(tmp_path, TYPED), features=TYPED_FEATURES)
    assert typed.features == TYPED_FEATURES
    strings = [  # what the document holds, whitespace around typed values trimmed
        {"id": "1", "score": "2.5", "ok": "true", "label": "pos", "when": "2024-01-02T03:04:05",
         "n": ["1", "2"], "meta": {"size": "10", "#text": "big"}, "absent": None},
        {"id": "2", "score": "-1e3", "ok": "0", "label": "neg", "when": "2024-02-03T00:00:00",
         "n": ["3"], "meta": None, "absent": None},
    ]  # fmt: skip
    by_datasets = Dataset.from_list(strings).cast(TYPED_FEATURES)
    assert typed.to_list() == by_datasets.to_list()
    assert typed.to_list()[1]["label"] == 0 and "ignored" not in typed.column_names


def test_a_value_that_does_not_cast_names_file_line_row_column_and_value(tmp_path):
    path = write(tmp_path, '<doc>\n<row n="1"/>\n<row n="2"/>\n<row n="two"/>\n</doc>')
    with pytest.raises(XMLError, match=r"data.xml, line 4, row 2: column 'n': cannot cast "
                       r"'two' to Value\('int64'\)"):  # fmt: skip
        xml.parse(path, features=Features({"n": Value("int64")}))
    with pytest.raises(XMLError, match=r"line 2, row 0: column 'label': cannot cast 'maybe'"):
        xml.parse(
            write(tmp_path, '<doc>\n<row label="maybe"/></doc>'),
            features=Features({"label": ClassLabel(names=["no", "yes"])}),
        )


def test_declared_single_value_repeated_in_the_document_is_an_error(tmp_path):
    path = write(tmp_path, "<doc><row><n>1</n>\n<n>2</n></row></doc>")
    message = r"line 2, row 0: <n> occurs more than once in <row>, but column 'n' is declared "
    with pytest.raises(XMLError, match=message + "as a single value; declare it as a List"):
        xml.parse(path, features=Features({"n": STRING}))


# --- safety -----------------------------------------------------------------------------------


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">\n'
        for n in range(1, 10)
    )
    + "]>\n<rows><row><a>&lol9;</a></row></rows>"
)


@pytest.mark.timeout(60)
def test_billion_laughs_and_quadratic_blowup_are_refused(tmp_path):
    """A billion laughs expands 1 KB into 3 GB; refused by libxml2's amplification limit (the
    bench times it: milliseconds). The timeout marker fails the test rather than hang."""
    with pytest.raises(XMLSecurityError, match=r"bomb\.xml, line \d+, column \d+: entity "
                       r"expansion refused .*amplification"):  # fmt: skip
        xml.parse(write(tmp_path, BILLION_LAUGHS, "bomb.xml"))
    quadratic = (
        f'<!DOCTYPE q [<!ENTITY a "{"x" * 100_000}">]><rows><row>{"&a;" * 100_000}</row></rows>'
    )
    with pytest.raises(XMLSecurityError):
        xml.parse(io.BytesIO(quadratic.encode()), streaming=True)


def test_external_entity_is_never_read(tmp_path):
    document = (
        '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        "<rows><row><a>&x;</a></row></rows>"
    )
    with pytest.raises(XMLError, match=r"line 3, column \d+: Entity 'x' not defined \(external "
                       r"entities and DTDs are never loaded"):  # fmt: skip
        xml.parse(write(tmp_path, document))
    declared = Features({"a": STRING})
    with pytest.raises(XMLError, match="Entity 'x' not defined"):
        xml.parse(write(tmp_path, document), features=declared)


def test_external_entity_file_is_not_even_opened(tmp_path):
    """The entity names a FIFO: opening it to read would block until a writer comes, and a
    watcher thread sees any reader. The parse ends at once, and nobody opened the FIFO."""
    fifo = str(tmp_path / "secret")
    os.mkfifo(fifo)
    opened = threading.Event()
    done = threading.Event()

    def watch():
        while not done.wait(0.01):
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader
                continue
            opened.set()
            os.write(writer, b"SECRET")
            os.close(writer)
            return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    document = (
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{fifo}">]><rows><row><a>&x;</a></row></rows>'
    )
    try:
        with pytest.raises(XMLError, match="Entity 'x' not defined"):
            xml.parse(io.BytesIO(document.encode()))
        parameter_entity = (
            f'<!DOCTYPE r [<!ENTITY % p SYSTEM "file://{fifo}"> %p;]><rows><row/></rows>'
        )
        with pytest.raises(XMLError, match="Entity 'p' not defined"):
            xml.parse(io.BytesIO(parameter_entity.encode()))
        external_dtd = f'<!DOCTYPE r SYSTEM "file://{fifo}"><rows><row/></rows>'
        assert len(xml.parse(io.BytesIO(external_dtd.encode()))) == 1
    finally:
        done.set()
        watcher.join()
    assert not opened.is_set()


def test_no_network_access_for_dtds_and_entities(tmp_path):
    """Every way a document can name a URL, served by a real HTTP server on loopback that counts
    its requests: none arrives."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'<!ENTITY x "FROM THE NETWORK">')

        def log_message(self, *arguments):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    documents = [
        f'<!DOCTYPE r SYSTEM "{url}/external.dtd"><rows><row>a</row></rows>',
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{url}/parameter.dtd"> %p;]><rows><row>b</row></rows>',
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "{url}/entity">]><rows><row>&x;</row></rows>',
        f'<rows xmlns:xi="http://www.w3.org/2001/XInclude"><row><xi:include href="{url}/x"/>'
        "</row></rows>",
    ]
    try:
        results = []
        for document in documents:
            try:
                results.append(rows_of(xml.parse(io.BytesIO(document.encode()))))
            except XMLError as error:
                results.append(str(error))
    finally:
        server.shutdown()
        server.server_close()
    assert requests == []
    assert "FROM THE NETWORK" not in json.dumps(results)
    assert results[0] == [{"#text": "a"}]
    assert "Entity 'x' not defined" in results[2]


def test_input_that_never_ends_a_row_fails_before_memory_grows(tmp_path, monkeypatch):
    monkeypatch.setattr(xml, "MAX_ROW_BYTES", 2**20)
    path = write(tmp_path, "<doc>" + "<item>text</item>" * 200_000 + "</doc>")
    with pytest.raises(XMLError, match=r"data.xml: more than 1 MiB of input without the end of "
                       r"a row element; is row_tag right\?"):  # fmt: skip
        xml.parse(path)
    assert len(xml.parse(path, row_tag="item")) == 200_000  # rows end often: no limit reached


# --- inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_files_read_like_the_plain_file(tmp_path, compress):
    plain = installed(MIME_DATABASE)
    with open(plain, "rb") as source:
        packed = compress(source.read())
    path = str(tmp_path / "mime.xml.z")
    with open(path, "wb") as out:
        out.write(packed)
    expected = xml.parse(plain, row_tag="mime-type")
    assert xml.parse(path, row_tag="mime-type").to_list() == expected.to_list()
    with open(path, "wb") as out:
        out.write(packed[: len(packed) // 2])
    with pytest.raises(XMLError, match=r"mime.xml.z: corrupt \w+ data|mime.xml.z, line \d+"):
        xml.parse(path, row_tag="mime-type")


def test_encodings_declared_bom_and_overridden(tmp_path):
    text = "<doc><row>Größe ελληνικά</row></doc>"
    greek = str(tmp_path / "greek.xml")
    with open(greek, "wb") as out:
        declared = '<?xml version="1.0" encoding="ISO-8859-7"?><doc><row>ελληνικά</row></doc>'
        out.write(declared.encode("iso-8859-7"))
    utf16 = str(tmp_path / "utf16.xml")
    with open(utf16, "wb") as out:
        out.write(text.encode("utf-16"))  # with a byte order mark
    undeclared = str(tmp_path / "undeclared.xml")
    with open(undeclared, "wb") as out:
        out.write("<doc><row>café</row></doc>".encode("latin-1"))
    assert rows_of(xml.parse(greek)) == [{"#text": "ελληνικά"}]
    assert rows_of(xml.parse(utf16)) == [{"#text": "Größe ελληνικά"}]
    assert rows_of(xml.parse(undeclared, encoding="latin-1")) == [{"#text": "café"}]
    dos = str(tmp_path / "dos.xml")  # cp437: a codec libxml2 lacks, decoded by Python first
    with open(dos, "wb") as out:
        out.write("<doc><row>╔═╗ café</row></doc>".encode("cp437"))
    assert rows_of(xml.parse(dos, encoding="cp437")) == [{"#text": "╔═╗ café"}]
    with pytest.raises(LookupError, match="encoding='klingon': no such encoding"):
        xml.parse(dos, encoding="klingon")
    with pytest.raises(XMLError, match="undeclared.xml, line 1, column"):
        xml.parse(undeclared)


class OneWayStream(io.RawIOBase):
    """A binary stream that cannot seek, like an HTTP or S3 body."""

    def __init__(self, data: bytes, name: str | None = None) -> None:
        self.data = io.BytesIO(data)
        if name:
            self.name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.data.readinto(buffer)


def test_file_objects_seekable_and_not_and_their_names_in_errors(tmp_path):
    document = CATALOG.encode()
    expected = rows_of(xml.parse(write(tmp_path, CATALOG)))
    seekable = io.BytesIO(document)
    assert rows_of(xml.parse(seekable)) == expected
    stream = xml.parse(io.BytesIO(document), streaming=True)
    assert isinstance(stream, IterableDataset)
    assert rows_of(stream) == rows_of(stream) == expected  # a seekable object is re-read
    assert rows_of(xml.parse(OneWayStream(document))) == expected
    once = xml.parse(OneWayStream(document, "s3://bucket/catalog.xml"), streaming=True)
    assert rows_of(once) == expected  # the first pass goes on from the inference's reader
    with pytest.raises(XMLError, match=r"^s3://bucket/catalog.xml: cannot read this file "
                       r"object again \(it is not seekable\)"):  # fmt: skip
        rows_of(once)
    with pytest.raises(XMLError, match="cannot read this file object again"):
        xml.parse(OneWayStream(document), infer_rows=None)  # a first pass to infer, then another
    with pytest.raises(XMLError, match=r"^report.xml, line 1, column \d+"):
        xml.parse(OneWayStream(b"<doc><row></doc>", "report.xml"))
    with pytest.raises(XMLError, match=r"^<BytesIO>, line 1"):
        xml.parse(io.BytesIO(b"<doc><row></doc>"))
    with pytest.raises(TypeError, match="expected a binary file object"):
        xml.parse(io.StringIO(CATALOG))


def test_streaming_matches_the_memory_mapped_dataset_and_restarts():
    path = installed(MIME_DATABASE)
    mapped = xml.parse(path, row_tag="mime-type")
    stream = xml.parse(path, row_tag="mime-type", streaming=True)
    assert stream.features == mapped.features
    assert rows_of(stream) == mapped.to_list()
    assert next(iter(stream)) == mapped[0]  # every pass starts again from the file
    assert gc.isenabled()  # paused only while a batch is built, on again for the caller


def test_missing_file_and_wrong_arguments():
    with pytest.raises(FileNotFoundError, match="nowhere.xml"):
        xml.parse("/nowhere.xml")
    with pytest.raises(TypeError, match="expected a path, a binary file object"):
        xml.parse([])
    with pytest.raises(ValueError, match="infer_rows must be at least 1"):
        xml.parse(io.BytesIO(b"<r/>"), infer_rows=0)
    with pytest.raises(ValueError, match="list of lists"):
        xml.parse(io.BytesIO(b"<r/>"), features=Features({"a": List(List(STRING))}))


def test_an_object_read_from_s3(seaweedfs, s3_bucket):
    """What the Dagster layer hands over: a GetObject body (not seekable) of a real file."""
    path = installed(MIME_DATABASE)
    client = seaweedfs.client()
    with open(path, "rb") as source:
        client.put_object(
            Bucket=s3_bucket, Key="raw/mime.xml.gz", Body=gzip.compress(source.read())
        )
    body = client.get_object(Bucket=s3_bucket, Key="raw/mime.xml.gz")["Body"]
    from_s3 = xml.parse(body, row_tag="mime-type")
    assert from_s3.to_list() == xml.parse(path, row_tag="mime-type").to_list()


# --- the attribute-row path and the tree path -------------------------------------------------


def tree_path_rows(document: bytes, **options) -> tuple[Features, list[dict]]:
    """What the tree path alone makes of `document`: a stream that cannot be read again never
    takes the attribute-row path (which hands over to the tree path by reading it again)."""
    dataset = xml.parse(OneWayStream(document), **options)
    return dataset.features, dataset.to_list()


def count_attribute_path_rows(monkeypatch) -> list[int]:
    """The number of rows each pass of the attribute-row path yields, from now on (taken
    whenever it can: by default only without the compiled converter)."""
    monkeypatch.setattr(xml, "_ATTRIBUTE_PATH", True)
    passes: list[int] = []
    original = xml._attribute_tables

    def counted(plan, source):
        passes.append(0)
        for table in original(plan, source):
            passes[-1] += table.num_rows
            yield table

    monkeypatch.setattr(xml, "_attribute_tables", counted)
    return passes


ATTRIBUTE_VALUES = (
    b'<!DOCTYPE doc [<!ENTITY co "ACME &amp; Co"><!ENTITY nest "&co;!">]>\n'
    b'<doc xmlns:p="urn:p"><row a="&co; &lt;x&gt; &#65; &#10;nl" b="x\ny\tz  w" c="&nest;" '
    b'p:d="1" xml:lang="fr"/>\n<row a="" b="2"><![CDATA[ cd ]]>te&co;xt&#x263A;</row>\n'
    b"<row/></doc>"
)


def test_attribute_rows_convert_alike_on_both_paths(tmp_path, monkeypatch):
    """Entities, character references, attribute value normalization, CDATA, namespaces (a
    prefix only the document gives) and text: the same rows from libxml2's events as from the
    tree, with inferred and declared Features, map-style and streaming."""
    path = str(tmp_path / "values.xml")
    with open(path, "wb") as out:
        out.write(ATTRIBUTE_VALUES)
    passes = count_attribute_path_rows(monkeypatch)
    features, rows = tree_path_rows(ATTRIBUTE_VALUES)
    assert rows[0]["a"] == "ACME & Co <x> A \nnl" and rows[0]["b"] == "x y z  w"
    assert rows[0]["p:d"] == "1" and rows[1]["#text"] == " cd teACME & Coxt\u263a"
    assert passes == []
    mapped = xml.parse(path)
    assert mapped.features == features and mapped.to_list() == rows
    assert rows_of(xml.parse(path, streaming=True)) == rows
    assert passes == [3, 3]  # map-style and streaming: every row by the attribute-row path
    declared = Features({"b": STRING, "p:d": Value("int32"), "#text": STRING})
    passes.clear()
    expected = tree_path_rows(ATTRIBUTE_VALUES, features=declared)[1]
    assert xml.parse(path, features=declared).to_list() == expected
    assert passes == [0]  # only the document names prefix p: the tree path reads every row


def test_the_tree_path_goes_on_from_the_first_row_not_yet_converted(tmp_path, monkeypatch):
    """Attribute rows, then a row with a child element: the tables already made stay, and the
    tree path converts the rest, with no row lost or repeated."""
    monkeypatch.setattr(xml, "BATCH_ROWS", 2)
    monkeypatch.setattr(xml, "CHUNK_BYTES", 64)  # tables between chunks of a small file
    rows = [f'<row id="{n}" name="n{n}"/>' for n in range(7)]
    rows += ['<row id="7"><name>seven</name></row>', '<row id="8" name="n8"/>']
    document = ("<doc>\n" + "\n".join(rows) + "\n</doc>").encode()
    path = str(tmp_path / "mixed.xml")
    with open(path, "wb") as out:
        out.write(document)
    declared = Features({"id": Value("int64"), "name": STRING})
    expected = [{"id": n, "name": f"n{n}"} for n in range(9)]
    expected[7]["name"] = "seven"
    passes = count_attribute_path_rows(monkeypatch)
    assert tree_path_rows(document, features=declared)[1] == expected
    assert xml.parse(path, features=declared).to_list() == expected
    assert rows_of(xml.parse(path, features=declared, streaming=True)) == expected
    assert len(passes) == 2 and all(2 <= rows <= 7 for rows in passes)  # then the tree path
    with pytest.raises(XMLError, match=r"line 9, row 7: element <name> in <row> is not in the "
                       r"Features inferred from the first 7 rows"):  # fmt: skip
        xml.parse(path, infer_rows=7)


def test_errors_after_attribute_rows_name_their_line_and_row(tmp_path, monkeypatch):
    """Raised by the tree path, which reads the source again: the same messages as its own."""
    monkeypatch.setattr(xml, "BATCH_ROWS", 2)
    monkeypatch.setattr(xml, "CHUNK_BYTES", 32)
    passes = count_attribute_path_rows(monkeypatch)
    rows = "\n".join(f'<row n="{n}"/>' for n in range(5))
    cases = {
        '<row n="5" k="1"/>': r"line 7, row 5: attribute 'k' in <row> is not in the Features "
        "inferred from the first 5 rows",
        '<row n="5">loose text</row>': r"line 7, row 5: text in <row>",
        '<row n="5" n="6"/>': r"line 7, column \d+: Attribute n redefined",
    }
    for extra, message in cases.items():
        path = write(tmp_path, f"<doc>\n{rows}\n{extra}\n</doc>")
        with pytest.raises(XMLError, match=rf"^{path}, {message}"):
            xml.parse(path, infer_rows=5)
    path = write(tmp_path, f"<doc>\n{rows}\n<row n='five'/>\n</doc>")
    with pytest.raises(XMLError, match=r"line 7, row 5: column 'n': cannot cast 'five'"):
        xml.parse(path, features=Features({"n": Value("int32")}))
    assert len(passes) == 4 and min(passes) >= 2  # tables were made before each error


def test_a_stream_of_files_has_one_shard_per_file(tmp_path):
    from datasets.distributed import split_dataset_by_node

    paths = [write(tmp_path, f'<r><row n="{2 * k}"/><row n="{2 * k + 1}"/></r>', f"{k}.xml")
             for k in range(3)]  # fmt: skip
    stream = xml.parse(paths, streaming=True)
    assert stream.n_shards == 3
    assert [row["n"] for row in split_dataset_by_node(stream, rank=0, world_size=3)] == ["0", "1"]
    assert [row["n"] for row in stream.shard(num_shards=3, index=2)] == ["4", "5"]
    one_way = xml.parse([OneWayStream(b'<r><row n="0"/></r>')], streaming=True)
    assert one_way.n_shards == 1 and [row["n"] for row in one_way] == ["0"]


# --- memory -----------------------------------------------------------------------------------


def run_bench(*arguments: str) -> dict:
    return run_bench_script("xml_bench.py", *arguments)


@pytest.mark.parametrize("shape", ["posts", "nested"])
def test_parsing_a_1gb_file_stays_under_300mb_above_baseline(tmp_path, shape, xml_tree_walker):
    """Peak RSS (VmHWM) of a fresh process that parses a generated 1 GB file into a
    memory-mapped Dataset: a StackExchange-like dump (rows of attributes) or nested rows."""
    if shape == "posts" and xml_tree_walker == "python":
        pytest.skip("rows of attributes take the attribute-row path, which has no compiled part")
    path = str(tmp_path / f"{shape}.xml")
    made = run_bench("generate", path, "1000", shape)
    assert made["bytes"] >= 1000**3
    report = run_bench("probe", path)
    assert report["rows"] == made["rows"]
    assert report["growth_mb"] < 300, report
