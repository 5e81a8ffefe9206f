"""Quantization: ignored-scope rules, NNCF PTQ, accuracy-aware fallback, per-layer analysis."""
