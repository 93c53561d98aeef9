"""The compiled row converter of the XML tree path (`ds_assets/formats/_xmltree.pyx`) against
the Python code it stands for (`xml._Converter.struct`): on random documents of every shape the
mapping knows (attributes in and out of namespaces, nested and repeated elements, text beside
attributes, mixed content, CDATA, entities, Unicode spaces), with inferred and declared
Features, both give the same rows and Features, or the same error."""

from __future__ import annotations

import random

import pytest
from datasets import Features, List, Value

from ds_assets.formats import _xmltree, xml

NAMES = ["a", "b", "c", "p:d", "q:e"]
TEXTS = ["x", " y ", "", "\n  ", "&amp;&lt;", "&#160;", "&#x3000;", "Größe 東京", "<![CDATA[c]]>"]
TEXTS += ["1", " 2 ", "&#x20;"]
NAMESPACES = 'xmlns:p="urn:p" xmlns:q="urn:q"'


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(TEXTS) for _ in range(rng.randint(0, 2)))


def _attributes(rng: random.Random) -> str:
    names = rng.sample(["id", "k", "p:m", "xml:lang"], rng.randint(0, 2))
    return "".join(
        f' {name}="{rng.choice(["1", " v ", "&amp;", "", "a&#10;b"])}"' for name in names
    )


def _element(rng: random.Random, depth: int) -> str:
    name = rng.choice(NAMES)
    if depth == 0 or rng.random() < 0.4:
        inner = _text(rng)
    else:
        parts = [_text(rng) if rng.random() < 0.3 else rng.choice(["", "\n    "])]
        for _ in range(rng.randint(1, 3)):
            parts.append(_element(rng, depth - 1))
            parts.append(_text(rng) if rng.random() < 0.2 else "\n  ")
        inner = "".join(parts)
    return f"<{name}{_attributes(rng)}>{inner}</{name}>"


def _document(rng: random.Random) -> str:
    rows = []
    for _ in range(rng.randint(1, 6)):
        template = rng.random() < 0.7 and rows  # many rows alike, as in real files
        if template:
            rows.append(rows[-1])
            continue
        children = "".join(_element(rng, 2) for _ in range(rng.randint(0, 4)))
        text = _text(rng) if rng.random() < 0.2 else "\n "
        rows.append(f"<row{_attributes(rng)}>{text}{children}</row>")
    return f"<rows {NAMESPACES}>" + "\n".join(rows) + "</rows>"


def _parse(path: str, compiled: bool, monkeypatch, **options):
    monkeypatch.setattr(xml, "_WALKER", _xmltree.Walker if compiled else None)
    try:
        dataset = xml.parse(path, **options)
    except xml.XMLError as error:
        return ("error", str(error))
    return ("rows", dataset.features, dataset.data.table.to_pylist())


def test_the_compiled_converter_is_built_and_used():
    assert xml._WALKER is _xmltree.Walker


@pytest.mark.parametrize("seed", range(40))
def test_random_documents_give_the_rows_or_errors_of_the_python_converter(
    tmp_path, monkeypatch, seed
):
    rng = random.Random(seed)
    for number in range(10):
        path = tmp_path / f"{number}.xml"
        path.write_text(_document(rng), encoding="utf-8")
        for options in ({}, {"infer_rows": 1}, {"attribute_prefix": "@"}):
            compiled = _parse(str(path), True, monkeypatch, **options)
            python = _parse(str(path), False, monkeypatch, **options)
            assert compiled == python, (path.read_text(), options)


def test_declared_features_strip_cast_list_and_skip_alike(tmp_path, monkeypatch):
    document = (
        f"<rows {NAMESPACES}>"
        '<row id=" 7 " k="a" p:m="z"><a> 1 </a><b>x</b><b>y</b><c k=" 3 ">t</c><d/></row>'
        '<row id="8"><a>2</a><c k="4"> u </c><e>skipped</e></row>'
        '<row id=" 9 " k=" b "><a> 3 </a><c k=" 5 ">v</c></row>'  # specs known by now
        "</rows>"
    )
    path = tmp_path / "declared.xml"
    path.write_text(document, encoding="utf-8")
    features = Features(
        {
            "id": Value("int32"),
            "k": List(Value("string")),
            "a": Value("int64"),
            "b": List(Value("string")),
            "c": {"k": Value("int8"), "#text": Value("string")},
            "d": Value("string"),
        }
    )
    compiled = _parse(str(path), True, monkeypatch, features=features)
    assert compiled == _parse(str(path), False, monkeypatch, features=features)
    assert compiled[2][0]["id"] == 7 and compiled[2][0]["k"] == ["a"]
    assert compiled[2][1]["c"] == {"k": 4, "#text": " u "}
    assert compiled[2][2]["id"] == 9 and compiled[2][2]["k"] == [" b "]
    assert compiled[2][2]["c"] == {"k": 5, "#text": "v"}


@pytest.mark.parametrize(
    "rows",
    [
        "<row><a>1</a></row><row><a>1</a><a>2</a></row>",  # a repetition after inference
        "<row><a>1</a></row><row><a k='v'>1</a></row>",  # a leaf that gains an attribute
        "<row><a>1</a></row><row>text<a>1</a></row>",  # text the Features lack
        "<row><a>1</a></row><row><b>1</b></row>",  # an element the Features lack
        "<row k='1'><k>1</k></row>",  # an attribute and an element for one column
    ],
)
def test_errors_name_the_same_line_row_and_column(tmp_path, monkeypatch, rows):
    path = tmp_path / "bad.xml"
    path.write_text(f"<rows>\n{rows}\n</rows>", encoding="utf-8")
    compiled = _parse(str(path), True, monkeypatch, infer_rows=1)
    assert compiled[0] == "error"
    assert compiled == _parse(str(path), False, monkeypatch, infer_rows=1)
