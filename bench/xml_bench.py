"""XML reader benchmark: `ds_assets.formats.xml.parse` against the references, same file, same run.

    .venv/bin/python bench/xml_bench.py                  # 1024 MB per shape (XML_BENCH_MB),
                                                         # fast readers run twice (XML_BENCH_REPEAT)
    XML_BENCH_MB=50 .venv/bin/python bench/xml_bench.py  # a quick run
    .venv/bin/python bench/xml_bench.py generate PATH MB [SHAPE]  # prints {"rows", "bytes"}
    .venv/bin/python bench/xml_bench.py probe PATH [--streaming]  # prints one JSON line

Two generated shapes: `posts` (a StackExchange Posts.xml dump: one element per row, a dozen
attributes, escaped HTML bodies) and `nested` (indented child elements, repeated tags, a struct
with text, a struct of attributes). Each measurement runs in a fresh process, which reports CPU
and wall seconds and its peak RSS (`VmHWM`, which starts afresh at exec; `ru_maxrss` would carry
the parent's peak over) above its RSS before reading. References:

- `iterparse`: `lxml.etree.iterparse(tag=...)` clearing each row: parsing alone, the floor.
- `iterparse+dict`: the same loop building each row's dict (attributes, child texts, lists):
  the least a hand-written reader does, without Arrow.
- `datasets xml`: datasets 5.2 has an "xml" builder, but it reads each file whole into a single
  row (one string: the file's bytes in memory, no rows), and `load_dataset("xml")` fails on
  every file (FileNotFoundError on a `FilesIterable`, huggingface/datasets#8584); timed here is
  the builder's own `_generate_tables`, what a fixed loader would run.
- `from_generator`: `datasets.Dataset.from_generator` over the iterparse+dict loop, the row
  reader that datasets offers for XML.

Ratios are CPU time of `parse` over CPU time of the reference (below 1: faster), measured in the
same run; CPU time because this machine is shared, wall seconds are printed too. The fast readers
run XML_BENCH_REPEAT times (2), interleaved, and the best CPU time of each counts.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "the of and to in is that for it as with was on be by this are or at from data parse "
WORDS += 'naïve café Größe 東京 данные ε x<y a&b "quoted"'
WORDS_LIST = WORDS.split()


def _escape(text: str, quote: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if quote else text


def _post(number: int, rng: random.Random) -> str:
    body = " ".join(rng.choice(WORDS_LIST) for _ in range(rng.randint(60, 260)))
    title = " ".join(rng.choice(WORDS_LIST) for _ in range(rng.randint(4, 12)))
    tags = "".join(f"<{rng.choice(WORDS_LIST[:20])}>" for _ in range(rng.randint(1, 4)))
    answers = f' AcceptedAnswerId="{number + 7}"' if rng.random() < 0.4 else ""
    return (
        f'  <row Id="{number}" PostTypeId="{rng.randint(1, 2)}"{answers} '
        f'CreationDate="2023-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T0{rng.randint(0, 9)}:'
        f'4{rng.randint(0, 9)}:00.123" Score="{rng.randint(-5, 900)}" '
        f'ViewCount="{rng.randint(0, 99999)}" Body="{_escape("<p>" + body + "</p>", True)}" '
        f'OwnerUserId="{rng.randint(1, 999999)}" Title="{_escape(title, True)}" '
        f'Tags="{_escape(tags, True)}" AnswerCount="{rng.randint(0, 9)}" '
        f'CommentCount="{rng.randint(0, 30)}" ContentLicense="CC BY-SA 4.0" />\n'
    )


def _nested(number: int, rng: random.Random) -> str:
    body = " ".join(rng.choice(WORDS_LIST) for _ in range(rng.randint(30, 120)))
    tags = "".join(f"    <tag>t{rng.randint(0, 99)}</tag>\n" for _ in range(rng.randint(1, 4)))
    return (
        f'  <row id="{number}" lang="{rng.choice(["en", "fr", "de", "ja"])}">\n'
        f"    <title>Question {number}</title>\n"
        f"    <body>{_escape(body)}</body>\n{tags}"
        f'    <author id="{rng.randint(1, 9999)}">user{rng.randint(1, 9999)}</author>\n'
        f'    <stats views="{rng.randint(0, 9999)}" score="{rng.randint(-5, 500)}"/>\n'
        f"  </row>\n"
    )


SHAPES = {"posts": _post, "nested": _nested}


def generate(path: str, megabytes: float, shape: str = "posts") -> dict:
    """Write about `megabytes` MB of rows of `shape` to `path`: a block of 4,000 distinct rows,
    repeated (fast to write, and the reader cannot tell); returns rows and bytes."""
    make = SHAPES[shape]
    rng = random.Random(0)
    block = "".join(make(number, rng) for number in range(4000)).encode()
    target = int(megabytes * 1_000_000)
    rows = written = 0
    with open(path, "wb") as out:
        written += out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<posts>\n')
        while written < target:
            written += out.write(block)
            rows += 4000
        out.write(b"</posts>\n")
    return {"rows": rows, "bytes": os.path.getsize(path)}


def _peak_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _features(shape: str):
    from datasets import Features, List, Value

    text = Value("string")
    if shape == "posts":
        names = "Id PostTypeId AcceptedAnswerId CreationDate Score ViewCount Body OwnerUserId "
        names += "Title Tags AnswerCount CommentCount ContentLicense"
        return Features({name: text for name in names.split()})
    return Features(
        {
            **{name: text for name in ("id", "lang", "title", "body")},
            "tag": List(text),
            "author": {"id": text, "#text": text},
            "stats": {"views": text, "score": text},
        }
    )


def _iterparse_rows(path: str, build: bool, lists: tuple = ("tag",), columns: tuple = ()):
    """The hand-written reader: each row's attributes and children in a dict (`lists` tags
    always lists; with `columns`, every row has exactly those keys, as datasets requires)."""
    from lxml import etree

    from ds_assets.formats.xml import PARSER_OPTIONS

    for _, element in etree.iterparse(path, tag="row", **PARSER_OPTIONS):
        if build:
            row = dict(element.items())
            for child in element:
                attributes = child.items()
                if attributes:
                    value = dict(attributes)
                    text = child.text
                    if text and not text.isspace():
                        value["#text"] = text
                else:
                    value = child.text or ""
                if child.tag in lists:
                    row.setdefault(child.tag, []).append(value)
                else:
                    row[child.tag] = value
            yield {name: row.get(name) for name in columns} if columns else row
        else:
            yield None
        element.clear()
        while element.getprevious() is not None:
            del element.getparent()[0]


def _measure(kind: str, path: str, cache: str, shape: str = "posts") -> dict:
    """Run one reader over `path` in this process; rows read and what it cost."""
    import datasets

    from ds_assets.formats import xml

    datasets.disable_progress_bars()
    os.environ["DS_ASSETS_CACHE"] = cache
    baseline = _rss()
    wall, cpu = time.perf_counter(), time.process_time()
    if kind == "iterparse":
        rows = sum(1 for _ in _iterparse_rows(path, build=False))
    elif kind == "iterparse+dict":
        rows = sum(1 for _ in _iterparse_rows(path, build=True))
    elif kind == "parse":
        rows = len(xml.parse(path))
    elif kind == "parse streaming":
        stream = xml.parse(path, streaming=True).with_format("arrow")
        rows = sum(len(batch) for batch in stream.iter(batch_size=4096))
    elif kind == "datasets xml":
        # load_dataset("xml") fails on every file in datasets 5.2 (huggingface/datasets#8584):
        # time the builder's own table generator, which is what a fixed loader runs
        builder = datasets.load_dataset_builder("xml", data_files=path, cache_dir=cache)
        rows = sum(table.num_rows for _, table in builder._generate_tables([path]))
    elif kind == "from_generator":
        features = _features(shape)
        loaded = datasets.Dataset.from_generator(
            _iterparse_rows,
            features=features,
            gen_kwargs={"path": path, "build": True, "columns": tuple(features)},
            cache_dir=cache,
        )
        rows = len(loaded)
    else:
        raise ValueError(kind)
    return {
        "kind": kind,
        "rows": rows,
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "growth_mb": round((_peak_rss() - baseline) / 2**20, 1),
        "bytes": os.path.getsize(path),
    }


def probe(path: str, streaming: bool = False) -> dict:
    """`parse` alone, for tests/test_formats_xml.py: rows, seconds, peak RSS above baseline."""
    with tempfile.TemporaryDirectory() as cache:
        return _measure("parse streaming" if streaming else "parse", path, cache)


def _bomb() -> dict:
    """Rejecting a billion-laughs document: how long, and at what memory cost."""
    from ds_assets.formats import xml

    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
    ]
    document = f"<!DOCTYPE r [{''.join(entities)}]><r><row>&lol9;</row></r>".encode()
    import io

    baseline = _rss()
    wall = time.perf_counter()
    try:
        xml.parse(io.BytesIO(document))
        outcome = "accepted (!)"
    except xml.XMLSecurityError as error:
        outcome = f"rejected: {str(error)[:60]}..."
    return {
        "seconds": time.perf_counter() - wall,
        "growth_mb": round((_peak_rss() - baseline) / 2**20, 1),
        "outcome": outcome,
    }


def _in_fresh_process(*arguments: str) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{arguments}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _line(result: dict, references: dict[str, dict]) -> str:
    megabytes = result["bytes"] / 1e6
    ratios = ", ".join(
        f"{result['cpu'] / reference['cpu']:.2f}x {name}"
        for name, reference in references.items()
        if reference is not result
    )
    return (
        f"{result['kind']:<16} {result['rows']:>10,} rows {result['rows'] / result['wall']:>10,.0f}"
        f" rows/s {megabytes / result['wall']:>6.1f} MB/s  cpu {result['cpu']:6.1f}s "
        f"wall {result['wall']:6.1f}s  peak RSS +{result['growth_mb']:>7.1f} MB"
        + (f"  CPU time vs {ratios}" if ratios else "")
    )


def main() -> None:
    megabytes = float(os.environ.get("XML_BENCH_MB", "1024"))
    repeat = int(os.environ.get("XML_BENCH_REPEAT", "2"))
    print(
        f"# XML reader, {megabytes:g} MB per shape; ratios: CPU time of parse / reference; "
        f"iterparse, iterparse+dict and parse: best CPU time of {repeat} runs, interleaved"
    )
    bomb = _in_fresh_process("bomb")
    print(
        f"billion laughs   {bomb['outcome']} in {bomb['seconds'] * 1000:.1f} ms, "
        f"peak RSS +{bomb['growth_mb']} MB"
    )
    with tempfile.TemporaryDirectory(prefix="xml-bench-") as folder:
        for shape in SHAPES:
            path = os.path.join(folder, f"{shape}.xml")
            made = generate(path, megabytes, shape)
            print(f"## {shape}: {made['rows']:,} rows, {made['bytes'] / 1e6:,.0f} MB")
            best: dict[str, dict] = {}
            for _ in range(repeat):  # interleaved, so that a change of load hits every reader
                for kind in ("iterparse", "parse", "iterparse+dict", "parse streaming"):
                    result = _in_fresh_process("measure", kind, path, folder, shape)
                    if kind not in best or result["cpu"] < best[kind]["cpu"]:
                        best[kind] = result
            for kind in ("from_generator", "datasets xml"):
                best[kind] = _in_fresh_process("measure", kind, path, folder, shape)
            references = {
                kind: best[kind]
                for kind in ("iterparse", "iterparse+dict", "from_generator", "datasets xml")
            }
            for kind in references:
                print(_line(best[kind], {}))
            for kind in ("parse", "parse streaming"):
                print(_line(best[kind], references))
            os.remove(path)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "bench"
    if command == "generate":
        shape = sys.argv[4] if len(sys.argv) > 4 else "posts"
        print(json.dumps(generate(sys.argv[2], float(sys.argv[3]), shape)))
    elif command == "probe":
        print(json.dumps(probe(sys.argv[2], streaming="--streaming" in sys.argv)))
    elif command == "measure":
        with tempfile.TemporaryDirectory(dir=sys.argv[4]) as cache:
            print(json.dumps(_measure(sys.argv[2], sys.argv[3], cache, sys.argv[5])))
    elif command == "bomb":
        print(json.dumps(_bomb()))
    else:
        main()
