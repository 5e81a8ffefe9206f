"""Serving: loaded model versions on OpenVINO's AsyncInferQueue, hot swap, statistics.

Imports nothing from the quantization side (no torch, NNCF): the serve-only install runs this.
"""
