"""The HDF5 reader against real files written with h5py, and against `datasets`' own `hdf5`
packaged builder reading the same files."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pyarrow as pa
import pytest
from datasets import (
    Array2D,
    Array3D,
    Array4D,
    Array5D,
    ClassLabel,
    Dataset,
    Features,
    IterableDataset,
    List,
    Value,
    load_dataset,
)

from ds_assets.formats import hdf5
from ds_assets.formats.hdf5 import parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, **datasets):
    """An HDF5 file at `path` with one dataset per keyword (`g__x` is `g/x`)."""
    with h5py.File(path, "w") as file:
        for name, data in datasets.items():
            file[name.replace("__", "/")] = data
    return str(path)


def table(dataset):
    """All rows as one Arrow table (fine for the small files of these tests)."""
    return dataset.with_format("arrow")[:]


def streamed(path, **kwargs):
    return list(parse(path, streaming=True, **kwargs))


# ── Types ───────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "dtype",
    ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
    + ["float16", "float32", "float64", "bool"],
)
def test_each_numeric_type_is_a_value_of_that_type(tmp_path, dtype):
    values = (np.arange(5) % 2 if dtype == "bool" else np.arange(5) * 3).astype(dtype)
    dataset = parse(write(tmp_path / "n.h5", x=values))
    assert dataset.features == Features({"x": Value(dtype)})
    column = table(dataset).column("x")
    assert column.null_count == 0
    np.testing.assert_array_equal(column.to_numpy(), values)


def test_big_endian_data_is_read_in_native_order(tmp_path):
    values = np.array([1.5, -2.25, 1e30], dtype=">f8")
    dataset = parse(write(tmp_path / "be.h5", x=values, n=np.array([1, 2, 3], ">u4")))
    assert dataset.features == Features({"n": Value("uint32"), "x": Value("float64")})
    assert dataset["x"][:] == [1.5, -2.25, 1e30] and dataset["n"][:] == [1, 2, 3]


def test_fixed_length_strings_are_text_without_their_padding(tmp_path):
    values = np.array([b"cat", b"", b"ten chars!", "é".encode()], dtype="S10")
    path = write(tmp_path / "s.h5", name=values)
    dataset = parse(path)
    assert dataset.features == Features({"name": Value("string")})
    assert dataset["name"][:] == ["cat", "", "ten chars!", "é"]
    assert streamed(path)[3] == {"name": "é"}


def test_fixed_length_strings_keep_their_bytes_when_features_say_binary(tmp_path):
    path = write(tmp_path / "s.h5", raw=np.array([b"\xff\x00a", b"b"], dtype="S4"))
    dataset = parse(path, features=Features({"raw": Value("binary")}))
    assert dataset["raw"][:] == [b"\xff\x00a", b"b"]  # only trailing NULs are padding


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_variable_length_strings_are_text(tmp_path, encoding):
    words = ["héllo", "", "x" * 1000] if encoding == "utf-8" else ["hello", "", "x" * 1000]
    with h5py.File(tmp_path / "v.h5", "w") as file:
        file.create_dataset("w", data=words, dtype=h5py.string_dtype(encoding))
    dataset = parse(tmp_path / "v.h5")
    assert dataset.features == Features({"w": Value("string")})
    assert dataset["w"][:] == words
    assert table(dataset).column("w").null_count == 0


def test_text_that_is_not_utf8_names_file_dataset_and_row(tmp_path):
    path = write(tmp_path / "bad.h5", t=np.array([b"ok", b"ok", b"\xff\xfe"], dtype="S4"))
    with pytest.raises(ValueError, match=r"bad\.h5: dataset '/t' row 2: .*not UTF-8.*binary"):
        parse(path)


def test_an_enum_numbered_from_zero_is_a_class_label(tmp_path):
    kinds = h5py.enum_dtype({"cat": 0, "dog": 1, "bird": 2}, basetype="u1")
    with h5py.File(tmp_path / "e.h5", "w") as file:
        file.create_dataset("kind", data=np.array([2, 0, 1], "u1"), dtype=kinds)
    dataset = parse(tmp_path / "e.h5")
    assert dataset.features == Features({"kind": ClassLabel(names=["cat", "dog", "bird"])})
    assert dataset["kind"][:] == [2, 0, 1]
    assert dataset.features["kind"].int2str(dataset["kind"][:]) == ["bird", "cat", "dog"]


def test_an_enum_with_other_numbers_stays_integers(tmp_path):
    codes = h5py.enum_dtype({"low": -1, "high": 10}, basetype="i2")
    with h5py.File(tmp_path / "e.h5", "w") as file:
        file.create_dataset("level", data=np.array([10, -1], "i2"), dtype=codes)
    dataset = parse(tmp_path / "e.h5")
    assert dataset.features == Features({"level": Value("int16")})
    assert dataset["level"][:] == [10, -1]


def test_an_enum_value_without_a_name_is_an_error_naming_the_row(tmp_path):
    kinds = h5py.enum_dtype({"a": 0, "b": 1}, basetype="i1")
    with h5py.File(tmp_path / "e.h5", "w") as file:
        file.create_dataset("k", data=np.array([0, 1, 7], "i1"), dtype=kinds)
    with pytest.raises(ValueError, match=r"e\.h5: dataset '/k' row 2: enum value 7 is not one"):
        parse(tmp_path / "e.h5")


@pytest.mark.parametrize(
    ("shape", "feature"),
    [
        ((3,), List(Value("float32"), length=3)),
        ((2, 3), Array2D(shape=(2, 3), dtype="float32")),
        ((2, 3, 4), Array3D(shape=(2, 3, 4), dtype="float32")),
        ((2, 1, 3, 2), Array4D(shape=(2, 1, 3, 2), dtype="float32")),
        ((1, 2, 1, 3, 2), Array5D(shape=(1, 2, 1, 3, 2), dtype="float32")),
    ],
)
def test_rows_with_a_shape_are_fixed_shape_features(tmp_path, shape, feature):
    values = np.arange(4 * int(np.prod(shape)), dtype="float32").reshape(4, *shape)
    path = write(tmp_path / "a.h5", x=values)
    dataset = parse(path)
    assert dataset.features == Features({"x": feature})
    np.testing.assert_array_equal(dataset.with_format("numpy")["x"], values)
    np.testing.assert_array_equal(np.array(streamed(path)[3]["x"]), values[3])


def test_rows_of_more_than_five_dimensions_are_nested_fixed_lists(tmp_path):
    values = np.arange(3 * 64, dtype="int16").reshape(3, 2, 2, 2, 2, 2, 2)
    dataset = parse(write(tmp_path / "a.h5", x=values))
    feature = Value("int16")
    for _ in range(6):
        feature = List(feature, length=2)
    assert dataset.features == Features({"x": feature})
    assert dataset["x"][:] == values.tolist()


def test_bool_rows_with_a_shape_are_arrays_and_a_zero_length_dimension_gives_empty_lists(
    tmp_path,
):
    flags = np.arange(12).reshape(3, 2, 2) % 3 == 0
    dataset = parse(write(tmp_path / "a.h5", flags=flags, none=np.zeros((3, 0), "f4")))
    assert dataset.features == Features(
        {"flags": Array2D(shape=(2, 2), dtype="bool"), "none": List(Value("float32"))}
    )
    assert dataset["flags"][:] == flags.tolist() and dataset["none"][:] == [[], [], []]


def test_compound_types_are_structs_with_shaped_string_and_nested_fields(tmp_path):
    inner = np.dtype([("a", "i4"), ("b", "f8")])
    record = np.dtype(
        [("id", "u8"), ("pos", "f4", (3,)), ("name", h5py.string_dtype()), ("inner", inner)]
    )
    with h5py.File(tmp_path / "c.h5", "w") as file:
        records = file.create_dataset("rec", (2,), dtype=record)
        records[0] = (7, [1, 2, 3], "first", (1, 0.5))
        records[1] = (8, [4, 5, 6], "second", (2, 1.5))
    dataset = parse(tmp_path / "c.h5")
    assert dataset.features == Features(
        {
            "rec": {
                "id": Value("uint64"),
                "pos": List(Value("float32"), length=3),
                "name": Value("string"),
                "inner": {"a": Value("int32"), "b": Value("float64")},
            }
        }
    )
    assert dataset[1]["rec"] == {
        "id": 8,
        "pos": [4.0, 5.0, 6.0],
        "name": "second",
        "inner": {"a": 2, "b": 1.5},
    }


def test_complex_numbers_are_real_imag_structs(tmp_path):
    waves = (np.arange(8).reshape(2, 2, 2) * (1 - 2j)).astype("c16")
    dataset = parse(write(tmp_path / "c.h5", z=np.array([1 + 2j, -3j], "c8"), w=waves))
    assert dataset.features == Features(
        {
            "w": {
                "real": Array2D(shape=(2, 2), dtype="float64"),
                "imag": Array2D(shape=(2, 2), dtype="float64"),
            },
            "z": {"real": Value("float32"), "imag": Value("float32")},
        }
    )
    assert dataset["z"][:] == [{"real": 1.0, "imag": 2.0}, {"real": 0.0, "imag": -3.0}]
    assert dataset[1]["w"] == {"real": waves[1].real.tolist(), "imag": waves[1].imag.tolist()}


def test_variable_length_sequences_are_lists(tmp_path):
    with h5py.File(tmp_path / "v.h5", "w") as file:
        tokens = file.create_dataset("tokens", (3,), dtype=h5py.vlen_dtype("i4"))
        tokens[0], tokens[2] = [5, 6, 7], [8]
    dataset = parse(tmp_path / "v.h5")
    assert dataset.features == Features({"tokens": List(Value("int32"))})
    assert dataset["tokens"][:] == [[5, 6, 7], [], [8]]


def test_opaque_values_are_binary_and_numpy_datetimes_are_timestamps(tmp_path):
    times = np.array(["2020-01-01T00:00", "2021-06-01T12:30"], dtype="M8[us]")
    with h5py.File(tmp_path / "o.h5", "w") as file:
        file["blob"] = np.frombuffer(b"\x00\x01\x02\x00abcd", dtype="V4")
        file["when"] = times.astype(h5py.opaque_dtype(times.dtype))
    dataset = parse(tmp_path / "o.h5")
    assert dataset.features == Features({"blob": Value("binary"), "when": Value("timestamp[us]")})
    assert dataset["blob"][:] == [b"\x00\x01\x02\x00", b"abcd"]
    assert table(dataset).column("when").to_pylist() == times.tolist()


def test_types_without_a_column_type_are_errors_naming_the_dataset(tmp_path):
    with h5py.File(tmp_path / "r.h5", "w") as file:
        file["x"] = np.arange(2)
        refs = file.create_dataset("refs", (2,), dtype=h5py.ref_dtype)
        refs[0] = file["x"].ref
    with pytest.raises(ValueError, match=r"r\.h5: dataset '/refs' holds HDF5 references"):
        parse(tmp_path / "r.h5")
    assert parse(tmp_path / "r.h5", ["x"])["x"][:] == [0, 1]
    path = write(tmp_path / "l.h5", big=np.ones(2, dtype=np.longdouble))
    if np.dtype(np.longdouble).itemsize > 8:  # long double is float64 on some platforms
        with pytest.raises(ValueError, match=r"dataset '/big' holds values of type float128"):
            parse(path)


# ── Columns, groups, selection ──────────────────────────────────────────────────────────────


def test_groups_are_struct_columns_and_group_reads_one_as_the_root(tmp_path):
    path = write(
        tmp_path / "g.h5",
        train__x=np.arange(3),
        train__y=np.array([b"a", b"b", b"c"]),
        train__meta__w=np.ones(3, "f4"),
    )
    dataset = parse(path)
    assert dataset.features == Features(
        {"train": {"meta": {"w": Value("float32")}, "x": Value("int64"), "y": Value("string")}}
    )
    assert dataset[2] == {"train": {"meta": {"w": 1.0}, "x": 2, "y": "c"}}
    assert dataset.flatten().column_names == ["train.meta.w", "train.x", "train.y"]
    rooted = parse(path, group="/train")
    assert list(rooted.features) == ["meta", "x", "y"] and rooted[0]["x"] == 0


def test_datasets_selects_columns_and_groups_in_the_order_given(tmp_path):
    path = write(tmp_path / "g.h5", a=np.arange(2), b=np.arange(2) * 2, g__c=np.arange(2) * 3)
    assert list(parse(path, ["b", "a"]).features) == ["b", "a"]
    assert parse(path, "/g/c")[1] == {"g": {"c": 3}}
    assert parse(path, ["g", "a"])[1] == {"g": {"c": 3}, "a": 1}
    assert streamed(path, datasets=["b"]) == [{"b": 0}, {"b": 2}]


def test_a_missing_dataset_is_an_error_listing_what_the_file_has(tmp_path):
    path = write(tmp_path / "m.h5", a=np.arange(2), g__b=np.arange(2))
    with h5py.File(path, "r+") as file:
        file.create_group("empty")
    with pytest.raises(ValueError, match=r"m\.h5: no HDF5 dataset with rows under '/empty'"):
        parse(path, group="empty")
    with pytest.raises(ValueError, match=r"m\.h5: no HDF5 dataset or group 'nope'.*a, g/b"):
        parse(path, ["nope"])
    with pytest.raises(ValueError, match=r"'\.\./a' is not a dataset path"):
        parse(path, ["../a"])


def test_different_first_dimensions_are_an_error_naming_every_dataset(tmp_path):
    path = write(tmp_path / "d.h5", x=np.arange(5), y=np.arange(5), meta__ids=np.arange(2))
    message = r"d\.h5: .*row count.*2 rows: /meta/ids; 5 rows: /x, /y.*datasets=\["
    with pytest.raises(ValueError, match=message):
        parse(path)
    with pytest.raises(ValueError, match=r"2 rows: /meta/ids; 5 rows: /x"):
        parse(path, ["x", "meta/ids"])
    assert parse(path, ["x", "y"]).num_rows == 5


def test_scalar_datasets_and_attributes_are_left_out_unless_a_scalar_is_asked_for(tmp_path):
    with h5py.File(tmp_path / "s.h5", "w") as file:
        file["x"] = np.arange(3)
        file["version"] = 2
        file.attrs["note"] = "metadata"
        file["x"].attrs["unit"] = "m"
    assert parse(tmp_path / "s.h5").features == Features({"x": Value("int64")})
    with pytest.raises(ValueError, match=r"s\.h5: dataset '/version' is scalar: it has no rows"):
        parse(tmp_path / "s.h5", ["x", "version"])


def test_a_file_without_rows_is_an_error_and_an_empty_dataset_has_no_rows(tmp_path):
    with h5py.File(tmp_path / "e.h5", "w") as file:
        file["version"] = 1
    with pytest.raises(ValueError, match=r"e\.h5: no HDF5 dataset with rows"):
        parse(tmp_path / "e.h5")
    empty = parse(write(tmp_path / "z.h5", x=np.zeros((0, 4), "f4")))
    assert empty.num_rows == 0
    assert empty.features == Features({"x": List(Value("float32"), length=4)})


def test_unwritten_chunks_read_as_the_fill_value_not_as_nulls(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as file:
        x = file.create_dataset("x", (6,), "f4", chunks=(2,), fillvalue=-1)
        x[:2] = [1, 2]
    column = table(parse(tmp_path / "f.h5", batch_rows=4)).column("x")
    assert column.null_count == 0 and column.to_pylist() == [1, 2, -1, -1, -1, -1]


# ── Several files, features=, batches ───────────────────────────────────────────────────────


def test_several_files_are_read_one_after_another(tmp_path):
    first = write(tmp_path / "1.h5", x=np.arange(3), g__y=np.array([b"a", b"b", b"c"]))
    second = write(tmp_path / "2.h5", x=np.arange(3, 5), g__y=np.array([b"d", b"e"]))
    dataset = parse([first, second], batch_rows=2)
    assert dataset["x"][:] == [0, 1, 2, 3, 4]
    assert [row["g"]["y"] for row in dataset] == ["a", "b", "c", "d", "e"]
    assert streamed([first, second]) == dataset.to_list()


def test_files_that_disagree_are_an_error_naming_both_files_and_the_column(tmp_path):
    first = write(tmp_path / "1.h5", x=np.arange(3), y=np.arange(3))
    no_y = write(tmp_path / "2.h5", x=np.arange(3))
    floats = write(tmp_path / "3.h5", x=np.arange(3), y=np.ones(3))
    with pytest.raises(ValueError, match=r"2\.h5 and .*1\.h5 differ: column 'y' is in .*1\.h5"):
        parse([first, no_y])
    with pytest.raises(ValueError, match=r"no HDF5 dataset or group 'y'"):
        parse([first, no_y], ["x", "y"])
    message = (
        r"3\.h5 and .*1\.h5 differ in column 'y': Value\('float64'\) in .*3\.h5, Value\('int64"
    )
    with pytest.raises(ValueError, match=message):
        parse([first, floats])
    both = parse([first, floats], features=Features({"x": Value("int64"), "y": Value("float32")}))
    assert both["y"][:] == [0.0, 1.0, 2.0, 1.0, 1.0, 1.0]


def test_features_cast_the_columns_and_choose_them(tmp_path):
    path = write(
        tmp_path / "f.h5",
        x=np.arange(6, dtype="f8").reshape(3, 2),
        label=np.array([b"dog", b"cat", b"dog"]),
        other=np.arange(3),
    )
    features = Features(
        {"x": List(Value("float32"), length=2), "label": ClassLabel(names=["cat", "dog"])}
    )
    dataset = parse(path, features=features)
    assert dataset.features == features
    assert dataset["label"][:] == [1, 0, 1] and dataset["x"][2] == [4.0, 5.0]
    assert [row["label"] for row in parse(path, streaming=True, features=features)] == [1, 0, 1]
    as_array = Features({"x": Array2D(shape=(1, 2), dtype="float32")})
    with pytest.raises(ValueError, match=r"f\.h5: dataset '/x' has rows of shape \(2,\), not"):
        parse(path, features=as_array)
    narrow = Features({"label": ClassLabel(names=["cat"])})
    with pytest.raises(ValueError, match=r"dataset '/label' row 0: label 'dog' is not one of"):
        parse(path, features=narrow)
    with pytest.raises(ValueError, match=r"features= names column 'zzz', which is not read"):
        parse(path, ["x"], features=Features({"x": features["x"], "zzz": Value("int8")}))
    with pytest.raises(ValueError, match=r"features= has no feature for column 'other'"):
        parse(path, ["x", "other"], features=Features({"x": features["x"]}))


def test_batch_rows_gives_the_same_rows_and_the_default_follows_the_chunks(tmp_path):
    with h5py.File(tmp_path / "b.h5", "w") as file:
        file.create_dataset("x", data=np.arange(10_000 * 64, dtype="f4").reshape(-1, 64),
                            chunks=(1000, 64))  # fmt: skip
        file.create_dataset("y", data=np.arange(10_000), chunks=(4096,))
    path = str(tmp_path / "b.h5")
    whole = table(parse(path))
    for rows in (1, 999, 4096, 20_000):
        assert table(parse(path, batch_rows=rows)).equals(whole)
    plan = hdf5._plan([path], None, None, "/", False)
    assert plan.batch_rows % 1000 == 0  # whole chunks of the biggest chunked dataset
    assert 16 * 2**20 <= plan.batch_rows * (64 * 4 + 8) <= 32 * 2**20
    with pytest.raises(ValueError, match="batch_rows must be a positive number"):
        parse(path, batch_rows=0)


def test_streaming_reads_the_file_anew_on_every_pass(tmp_path):
    path = write(tmp_path / "s.h5", x=np.arange(3))
    stream = parse(path, streaming=True)
    assert isinstance(stream, IterableDataset) and stream.features == Features(
        {"x": Value("int64")}
    )
    assert [row["x"] for row in stream] == [0, 1, 2]
    with h5py.File(path, "r+") as file:
        file["x"][0] = 10
    assert [row["x"] for row in stream] == [10, 1, 2]
    assert isinstance(parse(path), Dataset)


# ── Bad and untrusted input ─────────────────────────────────────────────────────────────────


def test_missing_and_non_hdf5_files_are_errors_naming_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.h5: no such HDF5 file"):
        parse(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"text\.h5: not a readable HDF5 file"):
        parse(tmp_path / "text.h5")
    with pytest.raises(ValueError, match="at least one HDF5 file"):
        parse([])


def test_external_links_are_refused_unless_allowed(tmp_path):
    secret = write(tmp_path / "secret.h5", x=np.arange(3))
    with h5py.File(tmp_path / "l.h5", "w") as file:
        file["mine"] = np.arange(3)
        file["theirs"] = h5py.ExternalLink(secret, "/x")
    path = tmp_path / "l.h5"
    with pytest.raises(ValueError, match=r"l\.h5: '/theirs' is an external link to .*secret"):
        parse(path)
    with pytest.raises(ValueError, match=r"'/theirs' is an external link.*allow_external=True"):
        parse(path, ["theirs"])
    assert parse(path, ["mine"])["mine"][:] == [0, 1, 2]
    assert parse(path, allow_external=True)["theirs"][:] == [0, 1, 2]


def test_external_storage_and_virtual_datasets_are_refused_unless_allowed(tmp_path):
    (tmp_path / "raw.bin").write_bytes(np.arange(4, dtype="<i4").tobytes())
    source = write(tmp_path / "src.h5", x=np.arange(4, dtype="i4"))
    with h5py.File(tmp_path / "e.h5", "w") as file:
        file.create_dataset("ext", (4,), "<i4", external=[(str(tmp_path / "raw.bin"), 0, 16)])
        layout = h5py.VirtualLayout(shape=(4,), dtype="i4")
        layout[:] = h5py.VirtualSource(source, "x", shape=(4,))
        file.create_virtual_dataset("vds", layout)
    path = tmp_path / "e.h5"
    with pytest.raises(ValueError, match=r"e\.h5: dataset '/ext' is stored in external files"):
        parse(path, ["ext"])
    with pytest.raises(ValueError, match=r"e\.h5: dataset '/vds' is a virtual dataset"):
        parse(path, ["vds"])
    allowed = parse(path, allow_external=True)
    assert allowed["ext"][:] == [0, 1, 2, 3] and allowed["vds"][:] == [0, 1, 2, 3]


def test_soft_links_are_not_walked_but_resolve_when_named_and_hard_link_cycles_end(tmp_path):
    with h5py.File(tmp_path / "l.h5", "w") as file:
        file["g/x"] = np.arange(2)
        file["g/again"] = file["g"]  # a hard link cycle
        file["alias"] = h5py.SoftLink("/g/x")
        file["loop"] = h5py.SoftLink("/loop")
    path = tmp_path / "l.h5"
    assert parse(path).features == Features({"g": {"x": Value("int64")}})
    assert parse(path, ["alias"])["alias"][:] == [0, 1]
    with pytest.raises(ValueError, match="too many soft links"):
        parse(path, ["loop"])


def test_a_missing_compression_filter_and_a_giant_row_are_refused_before_reading(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as file:
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_chunk((4,))
        plist.set_filter(32001, h5py.h5z.FLAG_OPTIONAL)  # blosc, not installed here
        space = h5py.h5s.create_simple((8,))
        h5py.h5d.create(file.id, b"packed", h5py.h5t.NATIVE_INT32, space, dcpl=plist)
        # 8 GB a row, declared by a header of a few bytes: reading it would exhaust memory
        file.create_dataset("huge", (2, 2**16, 2**15), "f4", chunks=(1, 256, 256))
    path = tmp_path / "f.h5"
    with pytest.raises(ValueError, match=r"f\.h5: dataset '/packed' is compressed with HDF5 "
                                         r"filter 32001.*hdf5plugin"):  # fmt: skip
        parse(path, ["packed"])
    with pytest.raises(ValueError, match=r"f\.h5: dataset '/huge' has rows of 8,589,934,592"):
        parse(path, ["huge"])


# ── Against datasets' own hdf5 builder ──────────────────────────────────────────────────────


def shared_types_file(path):
    """A file of the types both readers map alike."""
    record = np.dtype([("a", "i4"), ("b", "f8")])
    with h5py.File(path, "w") as file:
        file["ints"] = np.arange(6, dtype="i2")
        file["floats"] = np.linspace(0, 1, 6, dtype="f2")
        file["flags"] = np.arange(6) % 2 == 0
        file["vector"] = np.arange(18, dtype="f4").reshape(6, 3)
        file["image"] = np.arange(6 * 24, dtype="u1").reshape(6, 2, 3, 4)
        file["wave"] = (np.arange(6) * (1 + 1j)).astype("c8")
        file["record"] = np.array([(i, i / 2) for i in range(6)], dtype=record)
        file.create_dataset("text", data=[f"row {i} é" for i in range(6)],
                            dtype=h5py.string_dtype())  # fmt: skip
        tokens = file.create_dataset("tokens", (6,), dtype=h5py.vlen_dtype("i8"))
        for row in range(6):
            tokens[row] = np.arange(row)
        file["group/inner"] = np.arange(6, dtype="u4")
    return str(path)


def builder(path, tmp_path, streaming=False):
    return load_dataset(
        "hdf5", data_files=str(path), split="train", streaming=streaming,
        cache_dir=str(tmp_path / "hf"),
    )  # fmt: skip


def test_features_and_rows_match_datasets_hdf5_builder(tmp_path):
    path = shared_types_file(tmp_path / "shared.h5")
    ours, theirs = parse(path, batch_rows=4), builder(path, tmp_path)
    assert ours.features == theirs.features
    assert table(ours).equals(table(theirs))
    assert list(parse(path, streaming=True)) == list(builder(path, tmp_path, streaming=True))


def test_where_we_differ_from_the_builder_fixed_strings_and_enums(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as file:
        file["name"] = np.array([b"ab", b"c"], dtype="S4")
        kinds = h5py.enum_dtype({"no": 0, "yes": 1}, basetype="i1")
        file.create_dataset("kind", data=np.array([1, 0], "i1"), dtype=kinds)
    ours, theirs = parse(tmp_path / "d.h5"), builder(tmp_path / "d.h5", tmp_path)
    assert theirs.features == Features({"kind": Value("int8"), "name": Value("binary")})
    assert ours.features == Features(
        {"kind": ClassLabel(names=["no", "yes"]), "name": Value("string")}
    )
    assert ours["kind"][:] == theirs["kind"][:]
    assert ours["name"][:] == [value.decode() for value in theirs["name"][:]]


# ── Memory ──────────────────────────────────────────────────────────────────────────────────

MEMORY_LIMIT_MB = 300
PROBE = """
import json, sys
import psutil
from ds_assets.formats.hdf5 import parse

def peak_rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

path, mode = sys.argv[1], sys.argv[2]
baseline = psutil.Process().memory_info().rss
dataset = parse(path, streaming=mode == "stream")
if mode == "stream":
    rows, last = 0, None
    for batch in dataset.with_format("arrow").iter(batch_size=10_000):
        rows, last = rows + batch.num_rows, batch
    last_label = last.column("label")[-1].as_py()
else:
    rows, last_label = dataset.num_rows, dataset[-1]["label"]
print(json.dumps({"rows": rows, "last_label": last_label,
                  "growth_mb": (peak_rss() - baseline) / 2**20}))
"""


def write_embeddings(path, rows, dim=256, step=65_536):
    """`rows` float32 rows of `dim` values (chunked) and an int64 label, written in slices."""
    block = np.arange(step * dim, dtype="f4").reshape(step, dim)
    with h5py.File(path, "w") as file:
        vectors = file.create_dataset("emb", (rows, dim), "f4", chunks=(1024, dim))
        labels = file.create_dataset("label", (rows,), "i8", chunks=(65_536,))
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            vectors[start:stop] = block[: stop - start]
            labels[start:stop] = np.arange(start, stop)


@pytest.mark.parametrize("mode", ["map", "stream"])
def test_reading_a_1gb_file_stays_under_300mb_above_baseline(tmp_path, mode):
    rows = 1_000_000  # 1 KB a row: 1.03 GB of HDF5 data
    path = tmp_path / "big.h5"
    write_embeddings(path, rows)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), mode],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rows"] == rows and report["last_label"] == rows - 1
    assert report["growth_mb"] < MEMORY_LIMIT_MB, report


def test_batches_are_arrow_tables_of_the_plan(tmp_path):
    path = write(tmp_path / "t.h5", x=np.arange(10), g__y=np.arange(10.0))
    plan = hdf5._plan([path], None, None, "/", False)
    batches = list(hdf5._tables([path], plan.selection, plan.features, False, 4, "/", False, 2**20))
    assert [batch.num_rows for batch in batches] == [4, 4, 2]
    assert all(isinstance(batch, pa.Table) for batch in batches)
    assert batches[0].schema.equals(plan.features.arrow_schema.remove_metadata())


def test_a_stream_has_one_shard_per_file(tmp_path):
    from datasets.distributed import split_dataset_by_node

    paths = [write(tmp_path / f"part{n}.h5", x=np.arange(3) + 10 * n) for n in range(2)]
    stream = parse(paths, streaming=True)
    assert stream.n_shards == 2
    assert [row["x"] for row in split_dataset_by_node(stream, rank=1, world_size=2)] == [
        10, 11, 12,
    ]  # fmt: skip
