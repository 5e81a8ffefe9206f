"""pyproject lists every package (the server/ -> edgeq_server mapping needs an explicit list)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in (ROOT / "edgeq").rglob("__init__.py")}
    found |= {("edgeq_server" + str(p.parent.relative_to(ROOT))[len("server"):]).replace("/", ".")
              for p in (ROOT / "server").rglob("__init__.py")}
    assert listed == found


def test_torch_pair_is_pinned() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["quantize"]
    assert "torch==2.14.1" in extras and "torchvision==0.29.1" in extras
