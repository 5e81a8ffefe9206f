"""Build the machine-readable report (`edgeq.json`) of one quantization job."""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from edgeq import __version__


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def build_report(*, request: Any, loaded: Any, calibration_count: int, calibration_total: int, validation_count: int,
                 held_out: bool, has_labels: bool, matches: list[Any], float_score: float, ptq_score: float,
                 final_score: float, diagnostics: dict[str, Any], fallback: dict[str, Any], quantizable: list[str],
                 quantized: list[str], sqnr: dict[str, float], sizes: dict[str, int], speed: dict[str, Any] | None,
                 cpu: dict[str, Any], timings: dict[str, float], warnings: list[str], seconds: float,
                 recipe: Any = None, search: list[dict[str, Any]] | None = None,
                 attention: dict[str, float] | None = None) -> dict[str, Any]:
    budget = request.budget
    met = budget.met(float_score, final_score)
    speedup = None
    if speed:
        first_batch = next(iter(speed["batches"].values()))
        speedup = first_batch["speedup_vs_default"]
    speed_gate = None
    if request.min_speedup is not None and speedup is not None:
        fast_enough = speedup >= request.min_speedup
        speed_gate = {"min_speedup": request.min_speedup, "speedup_vs_default": speedup, "met": fast_enough,
                      "forced": request.force_promote, "served": fast_enough or request.force_promote}
        if not speed_gate["met"]:
            flags = set(cpu.get("isa_flags", []))
            why = ("this CPU has int8 dot-product units (VNNI/AMX), so the quantize/reorder layers INT8 adds outweigh "
                   "its faster matmuls at this model size and batch" if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}
                   else f"no VNNI or AMX on this CPU ({', '.join(sorted(flags)) or 'ISA unknown'}): int8 matmuls are "
                   "no faster than float ones")
            warnings = [*warnings, f"INT8 runs at x{speedup:.2f} the throughput of the default float model on this CPU "
                                   f"(speed gate x{request.min_speedup}): {why}; " +
                                   ("served anyway (forced)" if request.force_promote else
                                    "stored but not served: promote it with `edgeq models promote` or quantize with --force")]
    return {
        "format": "edgeq-report/1",
        "edgeq_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": request.name,
            "source": loaded.source,
            "input": loaded.input.to_dict(),
            "output": loaded.output_name,
            "preprocess": loaded.preprocess.to_dict() if loaded.preprocess else None,
            "notes": loaded.notes,
        },
        "data": {
            "calibration": {"path": str(request.calibration), "samples": calibration_total, "used": calibration_count},
            "validation": {"path": None if held_out else str(request.validation), "samples": validation_count,
                           "held_out_from_calibration": held_out, "labelled": has_labels},
        },
        "recipe": (recipe or request.recipe).to_dict(),
        "search": search,
        "rules": [m.to_dict() for m in matches],
        "accuracy": {
            "metric": request.metric,
            "float": float_score,
            "int8_ptq": ptq_score,
            "final": final_score,
            "drop": budget.drop(float_score, final_score),
            "ptq_drop": budget.drop(float_score, ptq_score),
            "budget": {"max_drop": budget.max_drop, "relative": budget.relative},
            "met": met,
            "verdict": ("within budget" if met else
                        f"BUDGET NOT MET: drop {budget.drop(float_score, final_score):.4f} > {budget.max_drop:.4f}"),
            "float_precision": "f32",
            **diagnostics,
        },
        "fallback": fallback,
        "layers": {
            "quantizable": len(quantizable),
            "quantized": len(quantized),
            "reverted": len(fallback.get("reverted", [])),
            "sqnr_db": {name: _finite(v) for name, v in sqnr.items()},
            # Spearman correlation of attention rows, INT8 vs FP32, per Softmax (unfused attention only)
            "attention_rank_correlation": dict(sorted((attention or {}).items(), key=lambda item: item[1])),
        },
        "size": {**sizes, "ratio": sizes["float_bytes"] / max(1, sizes["int8_bytes"])},
        "speed": speed,
        "speed_gate": speed_gate,
        "cpu": cpu,
        "timings_s": {**timings, "total": round(seconds, 2)},
        "warnings": warnings,
    }


def short_name(node: str) -> str:
    """'__module.blocks.2.mlp.fc2/aten::linear/MatMul' -> 'blocks.2.mlp.fc2/MatMul'."""
    parts = [p for p in node.replace("__module.", "").split("/") if p and not p.startswith("aten::")]
    return "/".join(parts)[-60:] if parts else node


def candidate_outcome(row: dict[str, Any]) -> str:
    """A recipe-search row's score, or why it has none (skipped, failed, stopped as too slow)."""
    return f"{row['score']:.4f}" if row["score"] is not None else str(row.get("skipped") or row.get("error"))


def candidate_label(row: dict[str, Any]) -> str:
    """Which search round a row is from and on how many calibration samples."""
    shared = ", shared stats" if row.get("shared_statistics") else ""
    return f"round {row.get('round', 1)}, {row['calibration']} cal.{shared}" if "calibration" in row else ""


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few lines for terminals and logs."""
    acc = report["accuracy"]
    lines = [
        f"model {report['model']['name']} from {report['model']['source']}",
        f"{acc['metric']}: float {acc['float']:.4f}  int8 (PTQ) {acc['int8_ptq']:.4f}  final {acc['final']:.4f}  "
        f"drop {acc['drop']:+.4f}  budget {acc['budget']['max_drop']}{' (relative)' if acc['budget']['relative'] else ''}"
        f"  -> {acc['verdict']}",
        f"layers: {report['layers']['quantized']}/{report['layers']['quantizable']} quantized, "
        f"{report['layers']['reverted']} reverted to float",
    ]
    for row in report.get("search") or []:
        lines.append(f"recipe candidate {row['candidate']:<24} {candidate_label(row):<18} {candidate_outcome(row)}  "
                     f"{row['seconds']:>6.1f}s"
                     f"{'  <- chosen' if row.get('chosen') else ''}")
    for rule in report["rules"]:
        lines.append(f"rule {rule['rule']}: {rule['matched']} node(s) kept in float ({rule['note']})")
    sqnr = list(report["layers"]["sqnr_db"].items())[:3]
    if sqnr:
        lines.append("worst SQNR: " + ", ".join(f"{short_name(n)} {v if isinstance(v, str) else f'{v:.1f}'} dB"
                                                for n, v in sqnr))
    attention = report["layers"].get("attention_rank_correlation") or {}
    if attention:
        worst = next(iter(attention.items()))
        lines.append(f"attention maps: rank correlation with FP32 mean {sum(attention.values()) / len(attention):.4f}, "
                     f"lowest {worst[1]:.4f} ({short_name(worst[0])})")
    if report.get("speed"):
        for batch, row in report["speed"]["batches"].items():
            lines.append(
                f"speed batch {batch}: int8 {row['int8_throughput']:.1f}/s, fp32 {row['fp32_throughput']:.1f}/s "
                f"(x{row['speedup_vs_fp32']:.2f}), float default [{report['speed']['float_default_precision']}] "
                f"{row['float_default_throughput']:.1f}/s (x{row['speedup_vs_default']:.2f})")
    lines.append(f"size: float {report['size']['float_bytes'] / 1e6:.2f} MB, int8 {report['size']['int8_bytes'] / 1e6:.2f} MB")
    lines.extend(f"warning: {w}" for w in report["warnings"])
    return lines
