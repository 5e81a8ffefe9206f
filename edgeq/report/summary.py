"""A report in a few lines for terminals and logs, and the wording shared with the HTML page."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the server (job recovery) imports this module without the quantization package
    from edgeq.report.model import Report, SearchRow


def short_name(node: str) -> str:
    """'__module.blocks.2.mlp.fc2/aten::linear/MatMul' -> 'blocks.2.mlp.fc2/MatMul'."""
    parts = [p for p in node.replace("__module.", "").split("/") if p and not p.startswith("aten::")]
    return "/".join(parts)[-60:] if parts else node


def candidate_outcome(row: SearchRow) -> str:
    """A recipe-search row's score, or why it has none (skipped, failed, stopped as too slow)."""
    return f"{row.score:.4f}" if row.score is not None else str(row.skipped or row.error)


def candidate_label(row: SearchRow) -> str:
    """Which search round a row is from and on how many calibration samples."""
    return f"round {row.round}, {row.calibration} cal.{', shared stats' if row.shared_statistics else ''}"


def summary_lines(report: Report) -> list[str]:
    acc, layers = report.accuracy, report.layers
    lines = [
        f"model {report.model.name} from {report.model.source}",
        f"{acc.metric}: float {acc.float:.4f}  int8 (PTQ) {acc.int8_ptq:.4f}  final {acc.final:.4f}  "
        f"drop {acc.drop:+.4f}  budget {acc.budget.max_drop}{' (relative)' if acc.budget.relative else ''}"
        f"  -> {acc.verdict}",
        f"layers: {layers.quantized}/{layers.quantizable} quantized, {layers.reverted} reverted to float",
    ]
    for row in report.search or []:
        lines.append(f"recipe candidate {row.candidate:<24} {candidate_label(row):<18} {candidate_outcome(row)}  "
                     f"{row.seconds:>6.1f}s{'  <- chosen' if row.chosen else ''}")
    for rule in report.rules:
        lines.append(f"rule {rule.rule}: {rule.matched} node(s) kept in float ({rule.note})")
    sqnr = list(layers.sqnr_db.items())[:3]
    if sqnr:
        lines.append("worst SQNR: " + ", ".join(f"{short_name(n)} {v if isinstance(v, str) else f'{v:.1f}'} dB"
                                                for n, v in sqnr))
    attention = layers.attention_rank_correlation
    if attention:
        worst = next(iter(attention.items()))
        lines.append(f"attention maps: rank correlation with FP32 mean {sum(attention.values()) / len(attention):.4f}, "
                     f"lowest {worst[1]:.4f} ({short_name(worst[0])})")
    if report.speed:
        for batch, speed in report.speed.batches.items():
            lines.append(
                f"speed batch {batch}: int8 {speed.int8_throughput:.1f}/s, fp32 {speed.fp32_throughput:.1f}/s "
                f"(x{speed.speedup_vs_fp32:.2f}), float default [{report.speed.float_default_precision}] "
                f"{speed.float_default_throughput:.1f}/s (x{speed.speedup_vs_default:.2f})")
    lines.append(f"size: float {report.size.float_bytes / 1e6:.2f} MB, int8 {report.size.int8_bytes / 1e6:.2f} MB")
    lines.extend(f"warning: {w}" for w in report.warnings)
    return lines
