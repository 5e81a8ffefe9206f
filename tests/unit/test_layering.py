"""The layering the design promises, as import-linter contracts (pyproject.toml) plus what only a
running interpreter shows: which modules a serve-only or quantize-only process actually loads."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_hold() -> None:
    """Every [[tool.importlinter.contracts]] in pyproject.toml, imports inside functions included."""
    lint = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()", "--no-cache", "--no-logo"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert lint.returncode == 0, lint.stdout[-6000:] + lint.stderr[-2000:]
    assert "0 broken" in lint.stdout and "kept" in lint.stdout, lint.stdout


def _modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=ROOT)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_serving_loads_no_torch_nncf_or_timm() -> None:
    loaded = _modules_after("import edgeq_server.app, edgeq.runtime.registry, edgeq.cli")
    assert not {"torch", "nncf", "timm", "matplotlib"} & loaded


def test_quantize_command_loads_no_grpc() -> None:
    loaded = _modules_after("import edgeq.cli, edgeq.quantization.pipeline; edgeq.cli.build_parser()")
    assert "grpc" not in loaded
    # `serve`'s flags come from the server's settings dataclass, which imports no gRPC; nothing else of it loads.
    assert {m for m in loaded if m.startswith("edgeq_server")} <= {"edgeq_server", "edgeq_server.config"}


def test_store_and_runtime_load_no_model_import_or_quantization() -> None:
    """A package's __init__ runs when any of its modules is imported, which import-linter does not
    follow (edgeq.data's init imports edgeq.sources): the store must not reach them that way either."""
    loaded = _modules_after("import edgeq.store, edgeq.store.bundle, edgeq.runtime.registry, edgeq.runtime.tensors")
    assert not {m for m in loaded if m.split(".")[:2] in (["edgeq", "sources"], ["edgeq", "quantization"],
                                                           ["edgeq", "data"], ["edgeq", "jobs"])}
