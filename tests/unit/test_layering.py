"""The layering the design promises: the core never imports gRPC, serving never imports torch/NNCF."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The package of edgeq/ allowed to import the transport, and only inside functions: the CLI.
FACE = ROOT / "edgeq" / "cli"


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at top level?) for every import in a file."""
    tree = ast.parse(path.read_text())
    top = set(id(n) for n in tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, id(node) in top))
    return found


def test_core_never_imports_grpc_or_the_server() -> None:
    for path in (ROOT / "edgeq").rglob("*.py"):
        for module, top_level in _imports(path):
            root = module.split(".")[0]
            if root in ("grpc", "grpc_health", "grpc_reflection", "edgeq_server", "server", "tritonclient"):
                assert path.parent == FACE and not top_level, f"{path.relative_to(ROOT)} imports {module}"


def test_transport_does_no_math() -> None:
    for path in (ROOT / "server").glob("*.py"):
        for module, _ in _imports(path):
            assert module.split(".")[0] not in ("nncf", "torch", "timm", "scipy"), f"{path.name} imports {module}"


def _modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=ROOT)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_serving_loads_no_torch_nncf_or_timm() -> None:
    loaded = _modules_after("import edgeq_server.app, edgeq.runtime.registry, edgeq.cli")
    assert not {"torch", "nncf", "timm", "matplotlib"} & loaded


def test_quantize_command_loads_no_grpc() -> None:
    loaded = _modules_after("import edgeq.cli, edgeq.quantization.pipeline; edgeq.cli.build_parser()")
    assert not {"grpc", "edgeq_server"} & loaded
