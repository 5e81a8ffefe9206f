"""Text data for text models: `.txt` (one sentence a line) or `.jsonl` (`{"text": ..., "label": 3}`
or a JSON string a line), tokenized with the model folder's own tokenizer.

Every sentence is padded (and truncated) to `max_length` tokens, so the rows of a data set stack
into one array; the model keeps a dynamic sequence length, so the length chosen here binds only
the data, never the served model. Empty lines are skipped. The file is read and tokenized in
chunks: memory stays at one chunk of text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.data.feed import pack
from edgeq.data.samples import Sample
from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec

DEFAULT_MAX_LENGTH = 128
MAX_LINE_CHARS = 100_000
CHUNK = 64


def _entries(path: Path) -> Iterator[tuple[int, str, int | None]]:
    """(line number, text, label or None) of each non-empty line."""
    jsonl = path.name.lower().endswith(".jsonl")
    with path.open(encoding="utf-8", errors="strict") as lines:
        try:
            for number, line in enumerate(lines, 1):
                if len(line) > MAX_LINE_CHARS:
                    raise InvalidArgument(f"{path.name}:{number}: a line of {len(line)} characters (limit {MAX_LINE_CHARS})")
                line = line.strip()
                if not line:
                    continue
                yield (number, *_json_line(path, number, line)) if jsonl else (number, line, None)
        except UnicodeDecodeError as error:
            raise InvalidArgument(f"{path.name}: not UTF-8 text ({error})") from error


def _json_line(path: Path, number: int, line: str) -> tuple[str, int | None]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"{path.name}:{number}: not JSON ({error})") from error
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        label = value.get("label")
        if label is not None and (not isinstance(label, int) or isinstance(label, bool) or label < 0):
            raise InvalidArgument(f"{path.name}:{number}: 'label' must be a non-negative integer, got {label!r}")
        return value["text"], label
    raise InvalidArgument(f"{path.name}:{number}: expected a JSON string or an object with a \"text\" string")


class TextSamples:
    def __init__(self, path: Path, specs: list[InputSpec], tokenizer_folder: str | None, max_length: int | None):
        if tokenizer_folder is None:
            raise InvalidArgument(f"{path.name}: text data needs the model's tokenizer: give a Hugging Face model "
                                  "folder with its tokenizer files, or an .npz with one array per model input")
        if not specs or any(np.dtype(spec.dtype).kind not in "iu" for spec in specs):
            raise InvalidArgument(f"{path.name}: text data feeds token-id inputs; this model's inputs are "
                                  f"{[(s.name, s.dtype) for s in specs]}")
        from edgeq.sources.hf_source import load_tokenizer

        self.path, self.specs = path, specs
        self.max_length = max_length or DEFAULT_MAX_LENGTH
        self.tokenizer: Any = load_tokenizer(tokenizer_folder)
        labels = [label for _, _, label in _entries(path)]
        self.count = len(labels)
        if self.count == 0:
            raise InvalidArgument(f"{path.name}: no text (every line is empty)")
        labelled = [label is not None for label in labels]
        if any(labelled) and not all(labelled):
            raise InvalidArgument(f"{path.name}: some lines have a 'label' and some do not")
        self.has_labels = all(labelled)

    def __len__(self) -> int:
        return self.count

    def _encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        encoded = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_length,
                                 return_tensors="np")
        arrays: dict[str, np.ndarray] = {}
        for spec in self.specs:
            if spec.name in encoded:
                arrays[spec.name] = np.asarray(encoded[spec.name]).astype(spec.dtype)
            elif spec.name == "token_type_ids":  # a tokenizer that does not make them: one segment
                arrays[spec.name] = np.zeros((len(texts), self.max_length), dtype=spec.dtype)
            else:
                raise InvalidArgument(f"the tokenizer makes {sorted(encoded)}, not the model input {spec.name!r}")
        return arrays

    def __iter__(self) -> Iterator[Sample]:
        entries = _entries(self.path)
        index = 0
        while chunk := list(islice(entries, CHUNK)):
            arrays = self._encode([text for _, text, _ in chunk])
            for row, (number, _, label) in enumerate(chunk):
                yield Sample(index, pack({name: array[row] for name, array in arrays.items()}), label,
                             f"{self.path.name}:{number}")
                index += 1
