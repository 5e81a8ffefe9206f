"""Readers for data sets that arrive through package registries (never a hub)."""
