"""Tiny Hugging Face model folders saved by the tests (`save_pretrained`, random init, seeded).

Nothing comes from a hub: the configs are written here with tiny sizes, the BERT tokenizer is a
WordPiece vocabulary of the words `sentences` uses, so text calibration runs the real tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path

WORDS = ("the a an of to and in on for with my our we they it is was will be has had not this that "
         "train bus flight ferry storm rain snow wind sun fog doctor nurse patient clinic bread soup cake "
         "rice team match goal cup league server laptop database build query update bank market profit "
         "price stock garden tree rose tomato farmer morning night week year again today slowly late early "
         "cold hot bright heavy light new old big small good bad").split()


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def save_bert(folder: Path, *, seed: int = 0, sentence_transformer: bool = False) -> Path:
    """A 2-layer BERT (hidden 32) with its WordPiece tokenizer; with `sentence_transformer`, the
    modules.json + 1_Pooling/config.json of a sentence-transformers folder (mean pooling, normalised)."""
    _offline()
    import json

    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ".", ",", *[f"##{c}" for c in "sedy"]]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=max(len(vocab), 128), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(str(folder))
    if sentence_transformer:
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    return folder


def save_vit(folder: Path, *, seed: int = 0, classes: int = 4) -> Path:
    """A 2-layer ViT image classifier (32x32 images, 8x8 patches, hidden 32) with its preprocessor config."""
    _offline()
    import json

    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=classes)
    ViTForImageClassification(config).eval().save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
        "size": {"height": 32, "width": 32}}))
    return folder


def sentences(count: int, seed: int = 0) -> list[str]:
    """`count` short sentences over WORDS (some longer than others: padding matters)."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "." for _ in range(count)]
