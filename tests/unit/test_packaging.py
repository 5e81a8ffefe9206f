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


def test_the_installed_torch_pair_is_the_one_pinned_and_the_one_setup_installs() -> None:
    """torch and torchvision must move together: pyproject's exact pins, the pins .ci/setup passes to
    every pip call (so pip never resolves another torch), and what is installed all agree."""
    import importlib.metadata
    import re

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["quantize"]
    pins = [re.fullmatch(r"(torch|torchvision)==([\w.]+)", item) for item in extras if re.match(r"torch(vision)?\b", item)]
    pinned = {pin.group(1): pin.group(2) for pin in pins if pin}
    assert len(pins) == 2 and set(pinned) == {"torch", "torchvision"}, f"the quantize extra must pin both exactly: {extras}"
    setup = (ROOT / ".ci" / "setup").read_text()
    pip_calls = [line for line in setup.splitlines() if line.strip().startswith("pip install") and "torch" in line]
    assert pip_calls and all(f'"{name}=={version}"' in line for line in pip_calls for name, version in pinned.items())
    for name, version in pinned.items():
        assert importlib.metadata.version(name).split("+")[0] == version, f"{name} installed is not the pinned {version}"
