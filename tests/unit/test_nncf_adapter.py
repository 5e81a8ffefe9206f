"""The NNCF adapter: the one module using NNCF internals knows which NNCF it was written for, says
so when another is installed, and hands callers edgeq's errors instead of NNCF's."""

import tomllib
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from packaging.requirements import Requirement

from edgeq.errors import FailedPrecondition, InternalError, InvalidArgument
from edgeq.quantization import nncf_adapter
from edgeq.quantization.recipe import Recipe

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_nncf_is_one_the_adapter_knows() -> None:
    from importlib.metadata import version

    installed = version("nncf")
    assert installed in nncf_adapter.SUPPORTED, (
        f"NNCF {installed} is installed, but edgeq.quantization.nncf_adapter was written for nncf"
        f"{nncf_adapter.SUPPORTED}: check its uses of NNCF internals against the new release, then widen "
        "SUPPORTED and the pin in pyproject.toml together")
    assert nncf_adapter.check_version() == installed


def test_the_pin_in_pyproject_is_the_adapters_range() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = [Requirement(r) for r in extras["quantize"] if Requirement(r).name == "nncf"]
    assert pin.specifier == nncf_adapter.SUPPORTED


@pytest.mark.parametrize("unknown", ["3.3.0", "3.5.0", "4.0.0", "3.5.0.dev0", "2.19.0"])
def test_an_unknown_nncf_is_refused_with_the_supported_range(unknown: str) -> None:
    with pytest.raises(FailedPrecondition, match=rf"NNCF {unknown} is installed.*supports nncf<3\.5,>=3\.4"):
        nncf_adapter.check_version(unknown)


def test_known_releases_are_accepted() -> None:
    assert nncf_adapter.check_version("3.4.0") == "3.4.0"
    assert nncf_adapter.check_version("3.4.2") == "3.4.2"


def _matmul_model() -> ov.Model:
    """x[1,8] @ W[8,8] + b: the smallest model NNCF puts quantizers into (seeded weights)."""
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 8], ov.Type.f32, name="x")
    matmul = ops.matmul(x, ops.constant(rng.standard_normal((8, 8)).astype(np.float32)), False, True)
    matmul.set_friendly_name("fc")
    out = ops.add(matmul, ops.constant(rng.standard_normal((1, 8)).astype(np.float32)))
    return ov.Model([out], [x], "tiny")


def _calibration() -> list[np.ndarray]:
    return [np.random.default_rng(i).standard_normal(8).astype(np.float32) for i in range(4)]


def test_the_adapter_quantizes_through_nncf() -> None:
    int8 = nncf_adapter.quantize(_matmul_model(), _calibration(), Recipe(transformer=False, rules=()), [])
    assert any(op.get_type_name() == "FakeQuantize" for op in int8.get_ops())


def test_nncf_refusing_its_input_is_invalid_argument() -> None:
    """NNCF raises its own ValidationError for ignored names the model lacks: the caller gets ours."""
    with pytest.raises(InvalidArgument, match="NNCF post-training quantization: ValidationError: .*no_such_layer"):
        nncf_adapter.quantize(_matmul_model(), _calibration(), Recipe(transformer=False, rules=()), ["no_such_layer"])


def test_a_failure_inside_nncf_is_internal_error() -> None:
    """Calibration samples of the wrong shape fail inside OpenVINO's inference during statistics."""
    wrong = [np.zeros(3, np.float32)] * 4
    with pytest.raises(InternalError, match="NNCF post-training quantization failed"):
        nncf_adapter.quantize(_matmul_model(), wrong, Recipe(transformer=False, rules=()), [])
