"""Every mistake a user can make at the command line: one line, never a traceback, a documented code.

Codes (edgeq/cli/exits.py, README "Exit codes"): 1 failed, 2 usage, 3 budget not met, 4 user error,
5 server unreachable.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeq.cli import exits
from tests.integration.server_process import ROOT, ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = ServerProcess(tmp_path_factory.mktemp("errors") / "store").start()
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def closed_port() -> str:
    """An address where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("files")
    (folder / "calib.npz").write_bytes(b"not a store")
    import numpy as np

    np.savez(folder / "good.npz", inputs=np.zeros((4, 1, 28, 28), np.float32))
    (folder / "broken.onnx").write_text("junk\n")  # OpenVINO's TensorFlow frontend would log its parse errors
    (folder / "broken.tar").write_bytes(b"junk" * 200)
    (folder / "notes.txt").write_text("notes\n")
    return {"file": str(folder / "calib.npz"), "npz": str(folder / "good.npz"), "dir": str(folder),
            "onnx": str(folder / "broken.onnx"), "tar": str(folder / "broken.tar"), "txt": str(folder / "notes.txt")}


# (name, arguments; {target} {closed} {file} {npz} {dir} are filled in, expected exit code, text in the message)
CASES = [
    ("jobs show nonexistent", "jobs show nonexistent --target {target}", exits.USER_ERROR, "NOT_FOUND"),
    ("bench an unknown model", "bench --model nope --duration 1 --target {target}", exits.USER_ERROR, "NOT_FOUND"),
    ("export an unknown model", "export nope --out {dir} --target {target}", exits.USER_ERROR, "NOT_FOUND"),
    ("jobs show without an id", "jobs show --target {target}", exits.USAGE, "give the job id"),
    ("jobs list, no server", "jobs list --target {closed}", exits.UNREACHABLE, "cannot reach"),
    ("jobs, no server", "jobs --target {closed}", exits.UNREACHABLE, "cannot reach"),
    ("submit, no server", "submit --model timm:edgeq_vit_fmnist --calibration {npz} --name x --target {closed}",
     exits.UNREACHABLE, "cannot reach"),
    ("export, no server", "export vit --out {dir} --target {closed}", exits.UNREACHABLE, "cannot reach"),
    ("bench, no server", "bench --model vit --duration 1 --target {closed}", exits.UNREACHABLE, "cannot reach"),
    ("models on a server, no server", "models list --target {closed}", exits.UNREACHABLE, "cannot reach"),
    ("health, no server", "health --target {closed} --timeout 2", exits.FAILED, "cannot reach"),
    ("quantize --store a file", "quantize --store {file} --model timm:edgeq_vit_fmnist --calibration {npz} --name x",
     exits.USAGE, "is a file, not a store folder"),
    ("quantize --store /proc/nope", "quantize --store /proc/nope --model timm:edgeq_vit_fmnist --calibration {npz} "
     "--name x", exits.USER_ERROR, "cannot create the store folder /proc/nope"),
    ("models list, no store", "models list --store /nonexistent", exits.USER_ERROR, "no model store at /nonexistent"),
    ("models list, neither store nor server", "models list", exits.USAGE, "--store"),
    ("models list, store and server", "models list --store {dir} --target {closed}", exits.USAGE, "not both"),
    ("models show, no name", "models show --store {dir}", exits.USAGE, "give the model name"),
    ("models show, unknown model", "models show nope --store {dir}", exits.USER_ERROR, "nope"),
    ("models validate on a server", "models validate --target {closed}", exits.USAGE, "local store"),
    ("serve a missing store", "serve --store {dir}/typo --port 0", exits.USER_ERROR, "--create"),
    ("a token file that is missing", "jobs --token-file {dir}/no-token --target {closed}", exits.USAGE,
     "cannot read the token file"),
    ("a client certificate without its key", "jobs --cert {file} --target {closed}", exits.USAGE, "--key"),
    ("an unknown flag", "jobs --nope", exits.USAGE, "unrecognized arguments"),
    ("an unknown flag before the command", "--verison", exits.USAGE, "unrecognized arguments: --verison"),
    ("a misspelled command", "quantise --store {dir}", exits.USAGE, "invalid choice: 'quantise'"),
    ("a misspelled action", "jobs shw x --target {target}", exits.USAGE, "invalid choice: 'shw'"),
    ("--target without a port", "jobs --target 127.0.0.1", exits.USAGE, "is not HOST:PORT"),
    ("bench --concurrency not numbers", "bench --model vit --concurrency a --target {target}", exits.USAGE,
     "positive numbers"),
    ("bench --data not an .npz", "bench --model vit --data {file} --duration 1 --target {target}", exits.USAGE,
     "expected an .npz"),
    ("bench --data missing", "bench --model vit --data {dir}/nope.npz --duration 1 --target {target}",
     exits.USER_ERROR, "no such file"),
    ("quantize a broken .onnx", "quantize --store {dir} --model {onnx} --calibration {npz} --name x", exits.USAGE,
     "is not a valid ONNX model"),
    ("quantize a corrupt archive", "quantize --store {dir} --model timm:edgeq_vit_fmnist --calibration {tar} "
     "--name x", exits.USAGE, "is not a readable archive"),
    ("quantize a text file as data", "quantize --store {dir} --model timm:edgeq_vit_fmnist --calibration {txt} "
     "--name x", exits.USAGE, "text data needs the model's tokenizer"),
    ("a bad option value", "quantize --store {dir} --model m --calibration {npz} --name x --max-drop 2",
     exits.USAGE, "max_drop"),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_a_mistake_is_one_line_and_its_code(case: tuple[str, str, int, str], server: ServerProcess, closed_port: str,
                                            files: dict[str, str]) -> None:
    _, arguments, code, text = case
    filled = arguments.format(target=server.target, closed=closed_port, **files).split()
    run = subprocess.run([sys.executable, "-m", "edgeq.cli", *filled], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, env={k: v for k, v in os.environ.items() if not k.startswith("EDGEQ_")})
    output = run.stdout + run.stderr
    assert "Traceback" not in output, output
    assert run.returncode == code, output
    assert text in output, output
    if code != exits.USAGE or "usage:" not in run.stderr:  # argparse adds its usage line
        assert len(run.stderr.strip().splitlines()) <= 1, run.stderr
    assert not (Path(files["dir"]) / "typo").exists()


def test_exit_codes_are_distinct_and_documented() -> None:
    codes = [exits.OK, exits.FAILED, exits.USAGE, exits.BUDGET_NOT_MET, exits.USER_ERROR, exits.UNREACHABLE]
    assert len(set(codes)) == len(codes)
    readme = (ROOT / "README.md").read_text()
    for code, meaning in ((exits.OK, "done"), (exits.FAILED, "failed"), (exits.USAGE, "usage"),
                          (exits.BUDGET_NOT_MET, "budget"), (exits.USER_ERROR, "user error"),
                          (exits.UNREACHABLE, "unreachable")):
        assert f"| {code} | {meaning}" in readme.lower(), (code, meaning)
