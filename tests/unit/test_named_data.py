"""Data for models with several or integer inputs: named .npz arrays and text, as structured rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeq.data import feed, open_samples
from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec

TEXT = [InputSpec("input_ids", (-1,), "int64"), InputSpec("attention_mask", (-1,), "int64")]


def _open(path: Path, **arrays: np.ndarray):  # type: ignore[no-untyped-def]
    np.savez(path, **arrays)
    return open_samples(path, TEXT[0], None, inputs=TEXT)


def test_named_npz_keeps_int64_rows_and_labels(tmp_path: Path) -> None:
    ids = np.arange(12, dtype=np.int64).reshape(3, 4) + 1000
    samples = _open(tmp_path / "d.npz", input_ids=ids, attention_mask=np.ones((3, 4), np.int32), labels=np.arange(3))
    rows = list(samples)
    assert len(samples) == 3 and samples.has_labels and [r.label for r in rows] == [0, 1, 2]
    assert rows[1].input.dtype.names == ("input_ids", "attention_mask")
    assert rows[1].input["input_ids"].dtype == np.int64 and rows[1].input["attention_mask"].dtype == np.int64
    np.testing.assert_array_equal(rows[1].input["input_ids"], ids[1])
    stacked = np.stack([r.input for r in rows])  # what the pipeline memory-maps
    fed = feed.batch(stacked[:2])
    assert set(fed) == {"input_ids", "attention_mask"} and fed["input_ids"].shape == (2, 4)
    np.testing.assert_array_equal(feed.one(stacked[2])["input_ids"], ids[2:3])


@pytest.mark.parametrize(("arrays", "message"), [
    ({"input_ids": np.ones((2, 4), np.int64)}, "no array named ['attention_mask']"),
    ({"input_ids": np.ones((2, 4)), "attention_mask": np.ones((2, 4), np.int64)}, "token ids are never rounded"),
    ({"input_ids": np.ones((2, 4), np.int64), "attention_mask": np.ones((3, 4), np.int64)}, "different numbers of samples"),
    ({"input_ids": np.ones((2, 4, 1), np.int64), "attention_mask": np.ones((2, 4), np.int64)}, "needs (N, L)"),
    ({"input_ids": np.ones((2, 4), np.int64), "attention_mask": np.ones((2, 4), np.int64),
      "pixel_values": np.ones((2, 4))}, "match no model input"),
    ({"input_ids": np.full((2, 4), 2**40), "attention_mask": np.ones((2, 4), np.int64)}, None),
])
def test_named_npz_refuses_what_does_not_fit(tmp_path: Path, arrays: dict[str, np.ndarray], message: str | None) -> None:
    if message is None:  # int64 values that fit int64 pass through unchanged (no float round trip)
        rows = list(_open(tmp_path / "d.npz", **arrays))
        assert rows[0].input["input_ids"][0] == 2**40
        return
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        list(_open(tmp_path / "d.npz", **arrays))


def test_text_files_are_tokenized_with_the_folders_tokenizer(tmp_path: Path) -> None:
    from tests.integration.hf_models import WORDS

    from transformers import BertTokenizerFast

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "."]) + "\n")
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(str(tmp_path / "tok"))
    (tmp_path / "s.txt").write_text("the train was late.\n\nthe bus and the ferry were cold today\n")
    specs = [*TEXT, InputSpec("token_type_ids", (-1,), "int64")]
    samples = open_samples(tmp_path / "s.txt", specs[0], None, inputs=specs, tokenizer=str(tmp_path / "tok"), max_length=6)
    rows = list(samples)
    assert len(samples) == 2 and not samples.has_labels and [r.name for r in rows] == ["s.txt:1", "s.txt:3"]
    first = rows[0].input
    assert first["input_ids"].shape == (6,) and first["input_ids"].dtype == np.int64
    assert first["input_ids"][0] == 2 and list(first["attention_mask"]) == [1, 1, 1, 1, 1, 1]  # [CLS] ... truncated
    (tmp_path / "s.jsonl").write_text(json.dumps({"text": "the bus", "label": 1}) + "\n" + json.dumps({"text": "rain", "label": 0}))
    labelled = list(open_samples(tmp_path / "s.jsonl", specs[0], None, inputs=specs, tokenizer=str(tmp_path / "tok"),
                                 max_length=8))
    assert [r.label for r in labelled] == [1, 0] and list(labelled[1].input["attention_mask"]) == [1, 1, 1, 0, 0, 0, 0, 0]
    (tmp_path / "bad.jsonl").write_text('{"txt": "x"}\n')
    with pytest.raises(InvalidArgument, match="bad.jsonl:1"):
        open_samples(tmp_path / "bad.jsonl", specs[0], None, inputs=specs, tokenizer=str(tmp_path / "tok"))
    with pytest.raises(InvalidArgument, match="needs the model's tokenizer"):
        open_samples(tmp_path / "s.txt", specs[0], None, inputs=specs)


def test_labels_whose_header_claims_more_rows_than_present_are_refused(tmp_path: Path) -> None:
    """Named and plain .npz read their labels the same way: a header that lies about the rows is refused."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (10,)})
    lying_labels = header.getvalue() + np.arange(3, dtype=np.int64).tobytes()
    path = tmp_path / "lying.npz"
    np.savez(path, input_ids=np.ones((10, 4), np.int64), attention_mask=np.ones((10, 4), np.int64))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("labels.npy", lying_labels)
    with pytest.raises(InvalidArgument, match="'labels' declares shape \\[10\\].*truncated"):
        open_samples(path, TEXT[0], None, inputs=TEXT)
