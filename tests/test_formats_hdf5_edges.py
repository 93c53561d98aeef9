"""The HDF5 reader on files that probing found mishandled: each is read with its true values,
or refused with a `ValueError` naming the file and dataset, never silently changed, reshaped or
dropped, and never a bare h5py or pyarrow exception."""

import json
import os
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
from datasets import Array2D, ClassLabel, Features, List, Value

from ds_assets.formats.hdf5 import parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def both(path, **options) -> list[list[dict]]:
    """The rows map-style and streamed (the two must agree)."""
    return [parse(path, **options).to_list(), list(parse(path, streaming=True, **options))]


def test_big_endian_variable_length_sequences_keep_their_values(tmp_path):
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as file:
        floats = file.create_dataset("f", (2,), dtype=h5py.vlen_dtype(">f8"))
        floats[0], floats[1] = np.array([1.5], ">f8"), np.array([-2.25, 1e300], ">f8")
        ints = file.create_dataset("i", (2,), dtype=h5py.vlen_dtype(">i4"))
        ints[0], ints[1] = np.array([1, 256], ">i4"), np.array([], ">i4")
        pair = np.dtype([("a", h5py.vlen_dtype(">i2")), ("b", "<i4")])
        compound = file.create_dataset("c", (2,), dtype=pair)
        compound[0], compound[1] = (np.array([1, -2], ">i2"), 7), (np.array([3], ">i2"), 8)
    for rows in both(path):
        assert rows == [
            {"c": {"a": [1, -2], "b": 7}, "f": [1.5], "i": [1, 256]},
            {"c": {"a": [3], "b": 8}, "f": [-2.25, 1e300], "i": []},
        ]


def enum_file(path, names: dict[str, int]) -> str:
    with h5py.File(path, "w") as file:
        kind = h5py.enum_dtype(names, basetype="i1")
        file.create_dataset("e", data=np.array([0, 1], "i1"), dtype=kind)
    return str(path)


def test_a_declared_class_label_keeps_each_files_enum_names(tmp_path):
    first = enum_file(tmp_path / "1.h5", {"A": 0, "B": 1})
    second = enum_file(tmp_path / "2.h5", {"B": 0, "A": 1})  # the same names, numbered apart
    features = Features({"e": ClassLabel(names=["A", "B"])})
    for rows in both([first, second], features=features):
        assert [row["e"] for row in rows] == [0, 1, 1, 0]  # A, B, then B, A
    named = parse(first, features=Features({"e": Value("string")}))
    assert named["e"] == ["A", "B"]
    with pytest.raises(ValueError, match=r"1\.h5: dataset '/e': its enum names \['B'\] are not"):
        parse(first, features=Features({"e": ClassLabel(names=["X", "A"])}))


def test_integers_declared_as_class_labels_must_be_classes(tmp_path):
    path = tmp_path / "labels.h5"
    with h5py.File(path, "w") as file:
        file["label"] = np.array([0, 1, -1, 5])
    with pytest.raises(ValueError, match=r"dataset '/label' row 3: class 5 is not in -1\.\.1"):
        parse(path, features=Features({"label": ClassLabel(names=["a", "b"])}))


def test_a_declared_array_shape_other_than_the_rows_is_refused_not_reshaped(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as file:
        file["m"] = np.arange(12, dtype="f4").reshape(3, 2, 2)
        file["v"] = np.arange(9, dtype="f4").reshape(3, 3)
    wrong = Features({"m": Array2D(shape=(1, 4), dtype="float32")})
    with pytest.raises(ValueError, match=r"'/m' has rows of shape \(2, 2\), not \(1, 4\)"):
        parse(path, features=wrong)
    short = Features({"v": List(Value("float32"), length=4)})
    with pytest.raises(ValueError, match=r"dataset '/v' rows 0\.\.2: cannot be cast to List"):
        parse(path, features=short)
    right = Features({"m": Array2D(shape=(2, 2), dtype="float32")})
    for rows in both(path, features=right):
        assert rows[0] == {"m": [[0.0, 1.0], [2.0, 3.0]]}


def damage(path, signature: bytes, occurrence: int = 0) -> None:
    """Overwrite the `occurrence`-th HDF5 structure signature in the file (a damaged file)."""
    data = bytearray(path.read_bytes())
    index = -1
    for _ in range(occurrence + 1):
        index = data.index(signature, index + 1)
    data[index : index + len(signature)] = b"XXXX"
    path.write_bytes(bytes(data))


def test_a_damaged_heap_or_group_is_an_error_naming_the_file(tmp_path):
    heap = tmp_path / "heap.h5"
    with h5py.File(heap, "w") as file:
        file.create_dataset("s", data=["abc", "de"], dtype=h5py.string_dtype())
    damage(heap, b"GCOL")
    with pytest.raises(ValueError, match=r"heap\.h5: damaged HDF5 file \(.*global heap"):
        parse(heap)
    tree = tmp_path / "tree.h5"
    with h5py.File(tree, "w") as file:
        file["g/x"] = np.arange(5)
    damage(tree, b"TREE", occurrence=1)
    for options in ({}, {"datasets": ["g/x"]}):
        with pytest.raises(ValueError, match=r"tree\.h5: damaged HDF5 file \(.*B-tree"):
            parse(tree, **options)


def test_a_second_name_of_a_dataset_is_said_and_a_broken_link_refused(tmp_path):
    aliased = tmp_path / "alias.h5"
    with h5py.File(aliased, "w") as file:
        file["x"] = np.arange(3)
        file["g/alias"] = file["x"]  # a hard link: one dataset, two names
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        features = parse(aliased).features
    assert list(features) == ["g"]
    assert any("'/x' is another name (a hard link) of '/g/alias'" in str(w.message) for w in caught)
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as file:
        file["x"] = np.arange(3)
        file["y"] = h5py.ExternalLink(str(tmp_path / "missing.h5"), "/y")
    with pytest.raises(ValueError, match=r"'/y' is a broken link .*missing\.h5:/y"):
        parse(broken, allow_external=True)
    assert parse(broken, datasets=["x"])["x"] == [0, 1, 2]


GROWTH_PROBE = """
import json, sys
import psutil
import pyarrow.compute as pc
from ds_assets.formats.hdf5 import parse

baseline = psutil.Process().memory_info().rss
rows = items = 0
for batch in parse(sys.argv[1], streaming=True).with_format("arrow").iter(batch_size=50):
    rows += batch.num_rows
    items += pc.sum(pc.list_value_length(batch.column("audio"))).as_py()
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"rows": rows, "items": items, "growth_mb": (peak - baseline) / 2**20}))
"""


def test_sequences_growing_along_the_file_are_read_in_bounded_batches(tmp_path):
    # sorted by length, as audio clips often are: the batch size the first rows suggest
    # (about 320 rows) would make the last batches 240 MB of values, several times that in RAM
    path = tmp_path / "clips.h5"
    rows, step = 1_000, 800
    with h5py.File(path, "w") as file:
        clips = file.create_dataset("audio", (rows,), dtype=h5py.vlen_dtype("u1"))
        for row in range(rows):
            clips[row] = np.full((row + 1) * step, row % 251, dtype="u1")
    out = subprocess.run(
        [sys.executable, "-c", GROWTH_PROBE, str(path)],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rows"] == rows and report["items"] == step * rows * (rows + 1) // 2
    assert report["growth_mb"] < 300, report


def test_names_that_flatten_alike_are_warned_of_and_an_empty_group_named(tmp_path):
    path = tmp_path / "names.h5"
    with h5py.File(path, "w") as file:
        file["a/b"] = np.arange(3)
        file["a.b"] = np.arange(3) * 10
        file.create_group("empty")
    with pytest.warns(UserWarning, match=r"'a/b' and 'a\.b' both become column 'a\.b'"):
        dataset = parse(path)
    assert dataset[1] == {"a": {"b": 1}, "a.b": 10}
    with pytest.raises(ValueError, match=r"group '/empty' holds no HDF5 dataset with rows"):
        parse(path, datasets=["empty"])


def test_names_or_shapes_that_would_be_filled_by_number_are_refused(tmp_path):
    path = tmp_path / "nested.h5"
    swapped = h5py.enum_dtype({"B": 0, "A": 1}, basetype="i1")
    gaps = h5py.enum_dtype({"A": 0, "X": 1, "B": 3}, basetype="i1")
    with h5py.File(path, "w") as file:
        file.create_dataset("pairs", data=np.array([[0, 1], [1, 0]], "i1"), dtype=swapped)
        file.create_dataset("gaps", data=np.array([0, 3], "i1"), dtype=gaps)
        file["rec"] = np.zeros(2, dtype=[("m", "f4", (2, 2))])
    labels = ClassLabel(names=["A", "B"])
    with pytest.raises(ValueError, match=r"'/pairs': an enum inside a list or struct is read by"):
        parse(path, features=Features({"pairs": List(labels, length=2)}))
    assert parse(path, ["pairs"])["pairs"] == [[0, 1], [1, 0]]  # B=0, A=1 as the file says
    for declared in (ClassLabel(names=["A", "B", "C", "D"]), Value("string")):
        with pytest.raises(ValueError, match=r"'/gaps': its enum values .* are not 0\.\.n-1"):
            parse(path, features=Features({"gaps": declared}))
    assert parse(path, features=Features({"gaps": Value("int8")}))["gaps"] == [0, 3]
    wrong = Features({"rec": {"m": Array2D(shape=(4, 1), dtype="float32")}})
    with pytest.raises(ValueError, match=r"'/rec': a field of shape \(2, 2\) declared as Array2D"):
        parse(path, features=wrong)
