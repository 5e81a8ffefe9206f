"""Every remote command, the Python client and install.sh against one TLS + mTLS + token server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeq_server.client import EdgeqClient
from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb
from tests.integration.server_process import ROOT, ServerProcess, copy_store
from tests.integration.test_security import INFER, MANAGE, pki  # noqa: F401 - pki is a fixture


@pytest.fixture(scope="module")
def secured(fmnist_result, pki: dict[str, Path],  # type: ignore[no-untyped-def]  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("secured")
    store = copy_store(fmnist_result.path.parent.parent, folder / "store")
    (folder / "tokens").write_text(f"manage {MANAGE}\ninfer {INFER}\n")
    server = ServerProcess(store, "--tls-cert", str(pki["server.pem"]), "--tls-key", str(pki["server.key"]),
                           "--tls-client-ca", str(pki["ca.pem"]), "--token-file", str(folder / "tokens"),
                           "--require-infer-token").start()
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(MANAGE + "\n")  # the bare token, as an operator would save it
    return path


def _tls(pki: dict[str, Path]) -> list[str]:  # noqa: F811
    return ["--ca", str(pki["ca.pem"]), "--cert", str(pki["client.pem"]), "--key", str(pki["client.key"])]


def edgeq(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "EDGEQ_TOKEN"}
    run = subprocess.run([sys.executable, "-m", "edgeq.cli", *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=timeout, env={**environment, **(env or {})})
    assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    return run


def test_every_remote_command_on_a_secured_server(secured: ServerProcess, pki: dict[str, Path],  # noqa: F811
                                                  token_file: Path, fmnist_npz: dict[str, Path],
                                                  tmp_path: Path) -> None:
    secure = ["--target", secured.target, *_tls(pki), "--token-file", str(token_file)]

    health = edgeq("health", *secure)
    assert health.returncode == 0 and health.stdout.strip() == "SERVING", health.stdout + health.stderr

    listed = edgeq("models", "list", "--json", *secure)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["version"], r["metric"]) for r in rows] == [("vit-fmnist", 1, "top1")]
    shown = edgeq("models", "show", "vit-fmnist", *secure)
    assert shown.returncode == 0 and json.loads(shown.stdout)["accuracy"]["metric"] == "top1", shown.stderr

    exported = edgeq("export", "vit-fmnist", "--version", "1", "--out", str(tmp_path / "bundles"), *secure)
    assert exported.returncode == 0, exported.stderr
    bundle = Path(exported.stdout.strip().removeprefix("bundle written to "))
    assert bundle.parent == tmp_path / "bundles" and bundle.stat().st_size > 100_000

    bench = edgeq("bench", "--model", "vit-fmnist", "--concurrency", "1", "--duration", "1",
                  "--json", str(tmp_path / "bench.json"), *secure)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    (row,) = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert row["requests"] > 5 and row["errors"] == 0

    empty = edgeq("jobs", *secure)
    assert empty.returncode == 0 and empty.stdout == "" and "no jobs on" in empty.stderr, empty.stdout + empty.stderr

    submitted = edgeq("submit", "--model", "timm:edgeq_vit_fmnist", "--calibration", str(fmnist_npz["calibration"]),
                      "--name", "secured-job", "--no-watch", "--no-fallback", *secure)
    assert submitted.returncode == 0, submitted.stderr
    job = re.search(r"job (\w+) queued", submitted.stdout)
    assert job, submitted.stdout
    cancelled = edgeq("jobs", "cancel", job[1], *secure)
    assert cancelled.returncode == 0 and cancelled.stdout.startswith(job[1]), cancelled.stderr
    shown_job = edgeq("jobs", "show", job[1], *secure)
    assert shown_job.returncode == 0 and "secured-job" in shown_job.stdout, shown_job.stderr

    # the token from EDGEQ_TOKEN instead of a file; `edgeq jobs` alone lists
    by_env = edgeq("jobs", "--target", secured.target, *_tls(pki), env={"EDGEQ_TOKEN": MANAGE})
    assert by_env.returncode == 0 and job[1] in by_env.stdout and "secured-job" in by_env.stdout, by_env.stderr


def test_missing_credentials_are_one_line_with_the_fix(secured: ServerProcess, pki: dict[str, Path],  # noqa: F811
                                                       token_file: Path) -> None:
    no_token = edgeq("jobs", "list", "--target", secured.target, *_tls(pki))
    assert no_token.returncode == 4, no_token.stderr
    assert "UNAUTHENTICATED" in no_token.stderr and "--token-file" in no_token.stderr
    assert len(no_token.stderr.strip().splitlines()) == 1
    infer_only = edgeq("jobs", "list", "--target", secured.target, *_tls(pki), env={"EDGEQ_TOKEN": INFER})
    assert infer_only.returncode == 4 and "PERMISSION_DENIED" in infer_only.stderr, infer_only.stderr
    plain = edgeq("models", "list", "--target", secured.target, "--token-file", str(token_file))
    assert plain.returncode == 5 and "cannot reach" in plain.stderr, plain.stderr
    no_client_cert = edgeq("models", "list", "--target", secured.target, "--ca", str(pki["ca.pem"]),
                           "--token-file", str(token_file))
    assert no_client_cert.returncode == 5 and "--cert" in no_client_cert.stderr, no_client_cert.stderr
    unhealthy = edgeq("health", "--target", secured.target)
    assert unhealthy.returncode == 1 and unhealthy.stdout.startswith("unhealthy: cannot reach"), unhealthy.stdout


def test_python_client_with_tls_and_token(secured: ServerProcess, pki: dict[str, Path]) -> None:  # noqa: F811
    with EdgeqClient(secured.target, ca=pki["ca.pem"], cert=pki["client.pem"], key=pki["client.key"],
                     token=MANAGE) as client:
        names = [model.name for model in client.models.List(pb.ListModelsRequest()).models]
        assert names == ["vit-fmnist"]
        assert client.report("vit-fmnist")["accuracy"]["metric"] == "top1"


def test_install_sh_pulls_from_a_secured_server(secured: ServerProcess, pki: dict[str, Path],  # noqa: F811
                                                token_file: Path, tmp_path: Path) -> None:
    """install.sh --from with --token-file/--ca/--cert/--key; the runtime is this venv (linked in)."""
    def install(root: Path, *flags: str) -> subprocess.CompletedProcess[str]:
        venv_bin = root / "opt" / "edgeq" / "venv" / "bin"
        venv_bin.mkdir(parents=True)
        for tool in ("edgeq", "python"):
            (venv_bin / tool).symlink_to(Path(sys.executable).parent / tool)
        return subprocess.run(["bash", str(ROOT / "deploy" / "edge" / "install.sh"), "--root", str(root), "--from",
                               secured.target, "--model", "vit-fmnist", "--version", "1", *_tls(pki), *flags,
                               "--no-systemd", "--no-smoke"], capture_output=True, text=True, timeout=300,
                              env={k: v for k, v in os.environ.items() if k != "EDGEQ_TOKEN"})

    run = install(tmp_path / "edge", "--token-file", str(token_file))
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "edge/var/lib/edgeq/models/vit-fmnist/1/model.xml").is_file(), run.stdout
    refused = install(tmp_path / "refused")
    assert refused.returncode != 0 and "UNAUTHENTICATED" in refused.stderr, refused.stdout + refused.stderr
    assert not (tmp_path / "refused/var/lib/edgeq/models/vit-fmnist").exists()
