"""Shared fixtures. Tests are marked `unit` or `integration` by their folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NNCF_CI", "1")  # belt and braces: edgeq also blocks telemetry itself
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in ("unit", "integration"):
            item.add_marker(getattr(pytest.mark, folder))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A test that skips itself fails: tests build their case, and a missing tool is a broken setup."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} skipped itself ({reason}): build the case, or fail saying what is missing"


def fmnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 400 committed Fashion-MNIST test images, normalised as the ViT expects."""
    from edgeq.models import fmnist_vit

    data = np.load(FIXTURES / "fmnist_sample.npz")
    images = data["images"].astype(np.float32) / 255.0
    return ((images - fmnist_vit.MEAN[0]) / fmnist_vit.STD[0]).astype(np.float32), data["labels"].astype(np.int64)


@pytest.fixture(scope="session")
def fmnist_npz(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """calibration.npz (200, unlabelled-agnostic) and validation.npz (200 labelled), disjoint."""
    folder = tmp_path_factory.mktemp("fmnist")
    inputs, labels = fmnist_arrays()
    order = np.random.default_rng(0).permutation(len(inputs))
    calibration, validation = order[:200], order[200:]
    np.savez(folder / "calibration.npz", inputs=inputs[calibration], labels=labels[calibration])
    np.savez(folder / "validation.npz", inputs=inputs[validation], labels=labels[validation])
    return {"calibration": folder / "calibration.npz", "validation": folder / "validation.npz", "dir": folder}


FAST_SPEED_SECONDS = 0.2


@pytest.fixture(scope="session")
def fmnist_result(fmnist_npz: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The shipped ViT quantized once per session (top1, budget 0.02) into its own store.

    Promotion is forced: this tiny model is not always faster in INT8, and the serving tests need it
    served; the speed gate's own behaviour is tested in test_speed_gate.py.
    """
    import edgeq

    store = tmp_path_factory.mktemp("store")
    return edgeq.quantize("timm:edgeq_vit_fmnist", calibration=str(fmnist_npz["calibration"]),
                          validation=fmnist_npz["validation"], store=str(store), name="vit-fmnist", metric="top1",
                          max_drop=0.02, speed_seconds=FAST_SPEED_SECONDS, speed_rounds=1, sensitivity_samples=4,
                          force_promote=True)
