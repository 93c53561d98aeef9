"""Small datasets with the feature kinds the store must carry unchanged."""

from __future__ import annotations

import io

from datasets import Audio, ClassLabel, Dataset, Features, Image, List, Value


def png_bytes(shade: int) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 3), (shade, 0, 255 - shade)).save(buffer, format="PNG")
    return buffer.getvalue()


RICH_FEATURES = Features(
    {
        "id": Value("int64"),
        "text": Value("string"),
        "label": ClassLabel(names=["neg", "pos"]),
        "tokens": List(Value("int32")),
        "nested": {"a": Value("float32"), "b": List({"c": Value("string")})},
        "image": Image(),
        "audio": Audio(decode=False),
    }
)


def rich_dataset(rows: int = 12) -> Dataset:
    """Rows with ClassLabel, nested lists and structs, and Image/Audio stored as bytes."""
    # Audio is cast from its Arrow storage: encoding through `datasets` needs torchcodec.
    plain = Features(
        {**RICH_FEATURES, "audio": {"bytes": Value("binary"), "path": Value("string")}}
    )
    dataset = Dataset.from_dict(
        {
            "id": list(range(rows)),
            "text": [f"row {i} " + "x" * (i % 7) for i in range(rows)],
            "label": [i % 2 for i in range(rows)],
            "tokens": [list(range(i % 5)) for i in range(rows)],
            "nested": [
                {"a": i / 2, "b": [{"c": str(j)} for j in range(i % 3)]} for i in range(rows)
            ],
            "image": [{"bytes": png_bytes(i * 10 % 256), "path": None} for i in range(rows)],
            "audio": [{"bytes": b"RIFF" + bytes([i]) * 8, "path": None} for i in range(rows)],
        },
        features=plain,
    )
    return dataset.cast_column("audio", Audio(decode=False))


def table_dataset(rows: int) -> Dataset:
    return Dataset.from_dict(
        {"id": list(range(rows)), "text": [f"t{i}" for i in range(rows)]},
        features=Features({"id": Value("int64"), "text": Value("string")}),
    )
