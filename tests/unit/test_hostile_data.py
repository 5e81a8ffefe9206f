"""Data files cannot lie their way into memory: hostile .npz files built here, read in a child
process whose peak RSS is measured (its own VmHWM), and the worker's memory limit."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeq.archive import ArchiveLimits
from edgeq.data.npz import NpzSamples
from edgeq.errors import InvalidArgument, ResourceExhausted
from edgeq.sources.spec import InputSpec

ROOT = Path(__file__).resolve().parents[2]
SPEC = InputSpec("x", (1, 28, 28))
ROW = 28 * 28 * 4


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": dtype, "fortran_order": False, "shape": shape})
    return stream.getvalue()


def _liar(path: Path, rows_declared: int, rows_present: int, labels_declared: int | None = None) -> Path:
    """An .npz whose 'inputs' header declares far more rows than it holds."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inputs.npy", _npy_header((rows_declared, 1, 28, 28)) + b"\0" * (ROW * rows_present))
        if labels_declared is not None:
            archive.writestr("labels.npy", _npy_header((labels_declared,), "<i8") + b"\0" * 8 * rows_present)
    return path


def _bomb(path: Path, rows: int) -> Path:
    """A deflate bomb: `rows` zero images, honest header, streamed so the test never holds them."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("inputs.npy", "w") as member:
            member.write(_npy_header((rows, 1, 28, 28)))
            block = b"\0" * (ROW * 1000)
            for _ in range(rows // 1000):
                member.write(block)
    return path


def _shrink_declared_size(path: Path, member: str, declared: int) -> Path:
    """Make the zip's directory understate a member's size (a bomb that passes the ratio check)."""
    raw = bytearray(path.read_bytes())
    name = member.encode()
    local = raw.find(b"PK\x03\x04")
    central = raw.find(b"PK\x01\x02")
    assert raw[local + 30: local + 30 + len(name)] == name
    struct.pack_into("<I", raw, local + 22, declared)
    struct.pack_into("<I", raw, central + 24, declared)
    path.write_bytes(bytes(raw))
    return path


def _read_in_child(path: Path, memory_limit: int = 0) -> tuple[dict, int]:
    """Run a job's data stage on `path` in a fresh interpreter (open, hold out a validation part,
    read both as the pipeline does); (what happened, its peak RSS in bytes)."""
    script = f"""
import json, sys
from edgeq.jobs.limits import apply_memory_limit
apply_memory_limit({memory_limit})
from edgeq.data import open_samples
from edgeq.data.samples import first, hold_out
from edgeq.errors import EdgeqError
from edgeq.sources.spec import InputSpec
try:
    calibration, validation = hold_out(open_samples({str(path)!r}, InputSpec("x", (1, 28, 28)), None), 0.3)
    rows = sum(1 for _ in first(calibration, 300)) + sum(1 for _ in first(validation, 10_000))
    print(json.dumps({{"rows": rows}}))
except EdgeqError as error:
    print(json.dumps({{"error": type(error).__name__, "message": str(error)}}))
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1])
"""
    # The child reports its own peak RSS (VmHWM belongs to the address space its exec created):
    # wait4's ru_maxrss would start from the forking process's RSS, which is pytest's.
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    *_, outcome, peak_kib = run.stdout.strip().splitlines()
    return json.loads(outcome), int(peak_kib) * 1024


@pytest.fixture(scope="module")
def baseline_rss(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Peak RSS of the same child reading an honest 4-row file."""
    path = tmp_path_factory.mktemp("honest") / "honest.npz"
    np.savez(path, inputs=np.zeros((4, 1, 28, 28), np.float32))
    outcome, peak = _read_in_child(path)
    assert outcome == {"rows": 4}
    return peak


def test_a_header_lying_about_rows_is_refused_before_allocating(tmp_path: Path, baseline_rss: int) -> None:
    path = _liar(tmp_path / "liar.npz", rows_declared=30_000_000, rows_present=4)
    assert path.stat().st_size < 20_000
    outcome, peak = _read_in_child(path)
    assert outcome["error"] == "InvalidArgument"
    assert outcome["message"] == (
        f"liar.npz: 'inputs' declares shape [30000000, 1, 28, 28] ({30_000_000 * ROW} bytes of float32), "
        f"but the file holds only {4 * ROW} bytes of data: truncated, or a header that lies")
    assert peak < baseline_rss + 32 * 2**20, (peak, baseline_rss)


def test_labels_lying_about_their_length_are_refused(tmp_path: Path) -> None:
    path = _liar(tmp_path / "labels.npz", rows_declared=4, rows_present=4, labels_declared=10**9)
    with pytest.raises(InvalidArgument, match=r"labels.npz: 'labels' declares shape \[1000000000\] \(8000000000 bytes"):
        NpzSamples(path, SPEC)


def test_a_deflate_bomb_is_refused_from_its_sizes(tmp_path: Path, baseline_rss: int) -> None:
    path = _bomb(tmp_path / "bomb.npz", rows=100_000)  # 314 MB of zeros in about 0.3 MB
    outcome, peak = _read_in_child(path)
    assert outcome["error"] == "ResourceExhausted"
    assert outcome["message"].startswith("bomb.npz: entry 'inputs.npy' expands ")
    assert "(limit 200x): refusing a possible decompression bomb" in outcome["message"]
    assert peak < baseline_rss + 32 * 2**20, (peak, baseline_rss)


def test_a_bomb_whose_zip_directory_understates_its_size_reads_no_further(tmp_path: Path, baseline_rss: int) -> None:
    path = _shrink_declared_size(_bomb(tmp_path / "sneaky.npz", rows=20_000), "inputs.npy", 1 << 20)
    outcome, peak = _read_in_child(path)
    assert outcome["error"] == "InvalidArgument"
    assert outcome["message"].startswith("sneaky.npz: 'inputs' declares shape [20000, 1, 28, 28]")
    assert peak < baseline_rss + 32 * 2**20, (peak, baseline_rss)


def test_decompressed_sizes_are_capped_like_archive_entries(tmp_path: Path) -> None:
    path = tmp_path / "big.npz"
    np.savez(path, inputs=np.ones((64, 1, 28, 28), np.float32))
    with pytest.raises(ResourceExhausted, match="big.npz: entry 'inputs.npy' expands to 200832 bytes; the limit is 100000"):
        NpzSamples(path, SPEC, ArchiveLimits(max_total_bytes=100_000))
    assert len(NpzSamples(path, SPEC)) == 64


def test_a_negative_dimension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "negative.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("inputs.npy", _npy_header((-5, 1, 28, 28)))
    with pytest.raises(InvalidArgument, match="negative dimension"):
        NpzSamples(path, SPEC)


def test_the_memory_limit_turns_a_huge_allocation_into_memory_error(tmp_path: Path) -> None:
    # The child reports its own peak RSS (VmHWM belongs to the address space its exec created):
    # wait4's ru_maxrss starts from the forking process's RSS, which is pytest's, not the child's.
    script = """
import numpy as np
from edgeq.jobs.limits import apply_memory_limit
apply_memory_limit(512 * 2**20)
try:
    np.ones(2**30 // 8 * 2)
    print("allocated")
except MemoryError as error:
    print("MemoryError", error)
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("peak_kib", peak.split()[1])
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    lines = run.stdout.splitlines()
    assert lines[0].startswith("MemoryError Unable to allocate 2.00 GiB"), run.stdout + run.stderr
    assert run.returncode == 0 and int(lines[-1].split()[1]) * 1024 < 512 * 2**20, lines


def test_the_default_memory_limit_comes_from_the_machine() -> None:
    from edgeq.jobs.limits import default_memory_limit
    from edgeq.runtime.memory import machine_memory_bytes as machine_memory

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < machine_memory() <= total
    assert default_memory_limit() == max(2 * 2**30, int(machine_memory() * 0.75))
