"""Hugging Face model folders saved by the test (random init): quantized, served, answered.

A sentence-transformers BERT goes through `edgeq quantize` (the command) with text calibration
(.txt) and validation (.jsonl) tokenized by its own tokenizer; a ViT image classifier through
`edgeq.quantize` with an .npz. Both are served by one `edgeq serve` and answered over KServe v2
gRPC and HTTP by tritonclient: BERT with three INT64 inputs at a sequence length the data never
had (the dimension stayed dynamic), its answers equal to OpenVINO's in-process on the stored IR.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest

import edgeq
from tests.integration.hf_models import save_bert, save_vit, sentences
from tests.integration.server_process import ServerProcess

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def hf_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hf")
    bert, vit = save_bert(root / "bert", sentence_transformer=True), save_vit(root / "vit")
    (root / "sentences.txt").write_text("\n".join(sentences(40)) + "\n")
    (root / "validation.jsonl").write_text("\n".join(json.dumps({"text": s}) for s in sentences(16, seed=1)) + "\n")
    store = root / "store"
    run = subprocess.run(
        [sys.executable, "-m", "edgeq.cli", "quantize", "--model", str(bert), "--calibration", str(root / "sentences.txt"),
         "--validation", str(root / "validation.jsonl"), "--max-length", "16", "--metric", "cosine",
         "--max-drop", "0.05", "--no-fallback", "--speed-seconds", "0", "--sensitivity-samples", "2",
         "--store", str(store), "--name", "bert"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((24, 3, 32, 32)).astype(np.float32)
    np.savez(root / "images.npz", inputs=images, labels=rng.integers(0, 4, 24))
    vit_result = edgeq.quantize(str(vit), calibration=str(root / "images.npz"), store=str(store), name="vit",
                                metric="agreement", max_drop=0.5, no_fallback=True, speed_seconds=0,
                                sensitivity_samples=2)
    return {"root": root, "store": store, "bert": bert, "vit": vit, "vit_result": vit_result}


def _report(store: Path, name: str) -> dict[str, Any]:
    return json.loads((store / name / "1" / "edgeq.json").read_text())


def _in_process(xml: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    compiled = ov.Core().compile_model(ov.Core().read_model(str(xml)), "CPU")
    return compiled(inputs)[0]


def test_bert_folder_keeps_int64_inputs_dynamic_and_its_rules(hf_store: dict[str, Any]) -> None:
    report = _report(hf_store["store"], "bert")
    assert [(i["name"], i["dtype"], i["shape"]) for i in report["model"]["inputs"]] == [
        ("input_ids", "int64", [-1]), ("attention_mask", "int64", [-1]), ("token_type_ids", "int64", [-1])]
    assert report["model"]["output"] == "sentence_embedding"
    assert report["data"]["calibration"]["samples"] == 40 and report["data"]["validation"]["samples"] == 16
    accuracy = report["accuracy"]
    assert accuracy["metric"] == "cosine" and accuracy["final"] > 0.95, accuracy
    assert accuracy["neighbour_agreement"] is not None
    model = ov.Core().read_model(str(hf_store["store"] / "bert" / "1" / "model.xml"))
    for port in model.inputs:  # the sequence stayed dynamic through quantization
        assert port.get_element_type() == ov.Type.i64 and port.get_partial_shape().to_string() == "[?,?]"
    # The ignored-scope rules on BERT as openvino.convert_model gives it: LayerNorm as MVN (embeddings
    # + 2 per layer), attention fused into ScaledDotProductAttention (its softmax runs in float inside).
    rules = {r["rule"]: r for r in report["rules"]}
    assert rules["layernorm"]["matched"] == 5 and rules["softmax"]["matched"] == 0, rules
    assert sum(op.get_type_name() == "ScaledDotProductAttention" for op in model.get_ops()) == 2
    _assert_kept_in_float(model, rules["layernorm"]["nodes"])
    assert sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops()) >= 8, "the MatMuls are quantized"


def _assert_kept_in_float(model: ov.Model, names: list[str]) -> None:
    ops = {op.get_friendly_name(): op for op in model.get_ops()}
    for name in names:
        assert name in ops, name
        feeding = {ops[name].input_value(i).get_node().get_type_name() for i in range(ops[name].get_input_size())}
        assert "FakeQuantize" not in feeding, f"{name} is quantized: {feeding}"


def test_bert_onnx_with_named_npz_keeps_decomposed_layernorm_softmax_and_tanh_gelu_in_float(tmp_path: Path) -> None:
    """The other BERT form: torch.onnx.export at opset 14 writes LayerNorm decomposed (ReduceMean, Sub,
    Pow, Sqrt, Div), an explicit Softmax and, with gelu_new, GELU as Tanh; calibrated from an .npz of
    the three int64 inputs by name."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, hidden_act="gelu_new",
                        attn_implementation="eager")
    bert = BertModel(config, add_pooling_layer=False).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]

    class ByName(torch.nn.Module):  # BertModel.forward's positional order is not ours to rely on
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    example = tuple(torch.ones(2, 8, dtype=torch.int64) for _ in names)
    with torch.no_grad():
        torch.onnx.export(ByName().eval(), example, str(tmp_path / "bert.onnx"), dynamo=False, opset_version=14,
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]})
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 128, (30, 12)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[::2, 9:] = 0
    np.savez(tmp_path / "data.npz", input_ids=ids, attention_mask=mask, token_type_ids=np.zeros_like(ids))
    result = edgeq.quantize(str(tmp_path / "bert.onnx"), calibration=str(tmp_path / "data.npz"), store=str(tmp_path / "s"),
                            name="bert-onnx", metric="cosine", max_drop=0.05, no_fallback=True, speed_seconds=0,
                            sensitivity_samples=2)
    rules = {r.rule: r for r in result.report.rules}
    assert rules["softmax"].matched == 2 and rules["layernorm"].matched >= 5, rules
    model = ov.Core().read_model(str(result.path / "model.xml"))
    types = {op.get_type_name() for op in model.get_ops()}
    assert "Softmax" in types and ({"Tanh", "Gelu"} & types) and "ScaledDotProductAttention" not in types, types
    _assert_kept_in_float(model, [*rules["softmax"].nodes, *rules["layernorm"].nodes])
    assert [port.get_partial_shape().to_string() for port in model.inputs] == ["[?,?]"] * 3
    assert result.report.accuracy.final > 0.95


def test_vit_folder_quantized_with_its_preprocessing(hf_store: dict[str, Any]) -> None:
    report = hf_store["vit_result"].report
    assert report.model.input.name == "pixel_values" and report.model.input.shape == (3, 32, 32)
    assert report.model.output == "logits" and report.model.preprocess.mean == (0.5, 0.5, 0.5)
    assert report.layers.quantized > 0 and 0.5 <= report.accuracy.final <= 1.0


def test_served_over_kserve_v2_with_int64_inputs(hf_store: dict[str, Any], tmp_path: Path) -> None:
    tokenizer_text = ["the storm was late again today", "bread"]  # 9 and 3 tokens: neither the data's 16
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(hf_store["bert"]), local_files_only=True)
    encoded = tokenizer(tokenizer_text, padding="longest", return_tensors="np")
    bert_inputs = {name: np.asarray(encoded[name], dtype=np.int64)
                   for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert bert_inputs["input_ids"].shape[1] not in (16,)
    np.savez(tmp_path / "bert.npz", **bert_inputs)
    images = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "vit.npz", pixel_values=images)
    server = ServerProcess(hf_store["store"]).start()
    try:
        checks = {}
        for name in ("bert", "vit"):
            run = subprocess.run([sys.executable, str(HERE / "triton_named_check.py"), server.target, server.http_url,
                                  name, str(tmp_path / f"{name}.npz"), str(tmp_path / f"{name}-out.npz")],
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stdout + run.stderr
            checks[name] = json.loads(run.stdout.strip().splitlines()[-1])
        bench = subprocess.run([sys.executable, "-m", "edgeq.cli", "bench", "--target", server.target, "--model", "bert",
                                "--concurrency", "1", "--duration", "1", "--json", str(tmp_path / "bench.json")],
                               capture_output=True, text=True, timeout=300)
        assert bench.returncode == 0, bench.stdout + bench.stderr
        # The management API takes the same folder (uploaded as a .tar) and the same text files.
        root = hf_store["root"]
        submit = subprocess.run(
            [sys.executable, "-m", "edgeq.cli", "submit", "--target", server.target, "--model", str(hf_store["bert"]),
             "--calibration", str(root / "sentences.txt"), "--validation", str(root / "validation.jsonl"),
             "--max-length", "12", "--metric", "cosine", "--max-drop", "0.05", "--no-fallback", "--speed-seconds", "0",
             "--sensitivity-samples", "2", "--name", "bert-remote"], capture_output=True, text=True, timeout=900)
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    finally:
        server.stop()
    remote = _report(hf_store["store"], "bert-remote")
    assert [i["dtype"] for i in remote["model"]["inputs"]] == ["int64"] * 3 and remote["data"]["validation"]["samples"] == 16
    assert remote["accuracy"]["final"] > 0.95
    metadata = checks["bert"]["metadata"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("input_ids", "INT64", ["-1", "-1"]), ("attention_mask", "INT64", ["-1", "-1"]),
        ("token_type_ids", "INT64", ["-1", "-1"])]
    assert [i["name"] for i in checks["bert"]["config"]["input"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i["data_type"] == "TYPE_INT64" for i in checks["bert"]["config"]["input"])
    assert [i["datatype"] for i in checks["bert"]["http_metadata"]["inputs"]] == ["INT64"] * 3
    served = np.load(tmp_path / "bert-out.npz")
    expected = _in_process(hf_store["store"] / "bert" / "1" / "model.xml", bert_inputs)
    assert served["grpc"].shape == (2, 32)
    np.testing.assert_allclose(served["grpc"], expected, atol=2e-3)
    np.testing.assert_allclose(served["http"], expected, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(served["grpc"], axis=1), 1.0, atol=1e-2)  # the normalised embedding
    vit_out = np.load(tmp_path / "vit-out.npz")
    assert checks["vit"]["metadata"]["inputs"][0]["shape"] == ["-1", "3", "32", "32"]
    np.testing.assert_allclose(vit_out["grpc"], _in_process(hf_store["store"] / "vit" / "1" / "model.xml",
                                                            {"pixel_values": images}), atol=2e-3)
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert rows[0]["requests"] > 0 and rows[0]["errors"] == 0, rows


@pytest.mark.parametrize("kind", ["deit", "swin"])
def test_deit_and_swin_folders_convert_to_what_transformers_computes(kind: str, tmp_path: Path) -> None:
    import torch
    from transformers import DeiTConfig, DeiTForImageClassification, SwinConfig, SwinForImageClassification

    from edgeq.sources import load_model

    torch.manual_seed(0)
    if kind == "deit":
        model = DeiTForImageClassification(DeiTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=2, intermediate_size=64, num_labels=3))
    else:
        model = SwinForImageClassification(SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                                                      num_heads=[1, 2], window_size=4, num_labels=3))
    model.eval().save_pretrained(str(tmp_path / kind))
    loaded = load_model(str(tmp_path / kind))
    assert loaded.input.name == "pixel_values" and loaded.input.shape == (3, 32, 32) and loaded.output_name == "logits"
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = ov.Core().compile_model(loaded.model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(images)[0]
    with torch.no_grad():
        expected = model(pixel_values=torch.from_numpy(images)).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
