"""Hostile data files against a job's data stage under the worker's memory limit.

A script, not a CI test (tests/unit/test_hostile_data.py checks the main cases on every change).
Each file is built here, then read the way a job's data stage reads it (open, hold out a validation
part, read up to 300 calibration and 10,000 validation samples) in a fresh interpreter that first
applies the worker's memory limit (`edgeq.jobs.limits.apply_memory_limit`, RLIMIT_DATA). A
MemoryError counts as the clear failure the worker turns it into ("ResourceExhausted: the job ran
out of memory ..."); any other exception, a signal, or a peak RSS above the limit does not.

    flock -s /tmp/edgeq-cpu.lock python benchmarks/hostile_data.py --limit-mib 512 \\
        --json docs/results/reliability/hostile_data_CPU.json

The goal: 0 files that push the reader past its limit without a clear job failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.overload import commit, cpu_flags  # noqa: E402

FMNIST = (1, 28, 28)
ROW = 28 * 28 * 4
IMAGE = (3, 224, 224)


# ------------------------------------------------------------------ builders
def npy_header(shape: tuple[int, ...], dtype: Any = "<f4", fortran: bool = False) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": dtype, "fortran_order": fortran, "shape": shape})
    return stream.getvalue()


def npz(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def liar(rows: int, dims: tuple[int, ...] = FMNIST, fortran: bool = False) -> Callable[[Path], Path]:
    return lambda path: npz(path, {"inputs.npy": npy_header((rows, *dims), fortran=fortran) + b"\0" * (ROW * 4)})


def labels_liar(path: Path) -> Path:
    return npz(path, {"inputs.npy": npy_header((4, *FMNIST)) + b"\0" * (ROW * 4),
                      "labels.npy": npy_header((10**9,), "<i8") + b"\0" * 32})


def dtype_liar(dtype: Any, shape: tuple[int, ...] = (4, *FMNIST)) -> Callable[[Path], Path]:
    return lambda path: npz(path, {"inputs.npy": npy_header(shape, dtype) + b"\0" * (ROW * 4)})


def streamed(path: Path, rows: int, row: Callable[[int], bytes], level: int = 9,
             header: bytes | None = None) -> Path:
    """An honest-header .npz of `rows` rows written member-by-member (never held in memory here)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        with archive.open("inputs.npy", "w", force_zip64=rows * ROW > 2**31 - 2**20) as member:
            member.write(header if header is not None else npy_header((rows, *FMNIST)))
            block = b"".join(row(i) for i in range(1000))
            for _ in range(rows // 1000):
                member.write(block)
    return path


def zero_bomb(rows: int) -> Callable[[Path], Path]:
    return lambda path: streamed(path, rows, lambda i: b"\0" * ROW)


def below_ratio(rows: int) -> Callable[[Path], Path]:
    """Large and honest, compressing about 30x: under the 200x ratio cap, far over the memory limit."""
    noise = np.random.default_rng(0).random(1000 * 24, dtype=np.float32).tobytes()

    def row(i: int) -> bytes:  # 24 random floats then zeros: no match within deflate's 32 KB window
        return noise[i * 96: (i + 1) * 96].ljust(ROW, b"\0")

    return lambda path: streamed(path, rows, row, level=6)


def understated(path: Path) -> Path:
    """A zero bomb whose zip directory says the member is 1 MiB (passes the ratio check)."""
    streamed(path, 20_000, lambda i: b"\0" * ROW)  # 63 MB: 32-bit sizes, no zip64 fields
    raw = bytearray(path.read_bytes())
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, local + 22, 1 << 20)  # uncompressed size, local header
    struct.pack_into("<I", raw, central + 24, 1 << 20)  # and in the central directory
    path.write_bytes(bytes(raw))
    return path


def declared_huge(path: Path) -> Path:
    """A zip64 member whose directory declares 2^50 bytes."""
    npz(path, {"inputs.npy": npy_header((4, *FMNIST)) + b"\0" * (ROW * 4)}, zipfile.ZIP_STORED)
    raw = bytearray(path.read_bytes())
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 0xFFFFFFFF)  # 32-bit size says: see the zip64 field
    name_len, extra_len = struct.unpack_from("<HH", raw, central + 28)
    extra = struct.pack("<HHQ", 1, 8, 1 << 50)
    raw[central + 46 + name_len: central + 46 + name_len + extra_len] = extra
    struct.pack_into("<H", raw, central + 30, len(extra))
    end = raw.find(b"PK\x05\x06")
    struct.pack_into("<I", raw, end + 12, struct.unpack_from("<I", raw, end + 12)[0] + len(extra) - extra_len)
    path.write_bytes(bytes(raw))
    return path


def huge_header(path: Path) -> Path:
    """A version-2 .npy header padded to 20 MB (numpy refuses headers over 10,000 bytes by default)."""
    text = repr({"descr": "<f4", "fortran_order": False, "shape": (4, *FMNIST)}).encode() + b" " * (20 << 20) + b"\n"
    header = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text
    return npz(path, {"inputs.npy": header + b"\0" * (ROW * 4)}, zipfile.ZIP_STORED)


def many_members(count: int) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("inputs.npy", npy_header((4, *FMNIST)) + b"\0" * (ROW * 4))
            for i in range(count):
                archive.writestr(f"m{i}.npy", b"")
        return path
    return build


def not_a_zip(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 255, 1 << 20, dtype=np.uint8).tobytes())
    return path


def truncated(path: Path) -> Path:
    honest = io.BytesIO()
    np.savez(honest, inputs=np.zeros((400, *FMNIST), np.float32))
    path.write_bytes(honest.getvalue()[: len(honest.getvalue()) // 2])
    return path


def png(width: int, height: int) -> bytes:
    """A 1-bit all-black PNG: a few KB on disk, width x height pixels decoded."""
    from PIL import Image

    stream = io.BytesIO()
    Image.new("1", (width, height)).save(stream, "PNG", optimize=True)
    return stream.getvalue()


def image_zip(images: dict[str, bytes]) -> Callable[[Path], Path]:
    return lambda path: npz(path, images)


def tar_bomb(size: int) -> Callable[[Path], Path]:
    """A .tar.gz whose one image entry is `size` bytes of zeros (a few KB per 10 MB compressed)."""
    class Zeros(io.RawIOBase):
        def __init__(self) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            n = min(len(buffer), self.left)
            buffer[:n] = b"\0" * n
            self.left -= n
            return n

    def build(path: Path) -> Path:
        with tarfile.open(path, "w:gz", compresslevel=1) as archive:
            info = tarfile.TarInfo("cat/a.png")
            info.size = size
            archive.addfile(info, io.BufferedReader(Zeros(), 1 << 20))
            info = tarfile.TarInfo("dog/b.png")
            small = png(64, 64)
            info.size = len(small)
            archive.addfile(info, io.BytesIO(small))
        return path
    return build


CASES: list[tuple[str, str, Callable[[Path], Path], tuple[int, ...]]] = [
    # (name, what it tries, builder, model input shape)
    ("liar_rows_30M.npz", "header declares 30 M rows, holds 4", liar(30_000_000), FMNIST),
    ("liar_rows_1e12.npz", "header declares 10^12 rows", liar(10**12), FMNIST),
    ("liar_rows_2^62.npz", "row count near int64's limit", liar(2**62), FMNIST),
    ("liar_dims_overflow.npz", "dimensions whose product overflows int64", liar(4, (2**40, 2**40, 2**40)), FMNIST),
    ("liar_fortran.npz", "Fortran-ordered header declaring 30 M rows", liar(30_000_000, fortran=True), FMNIST),
    ("labels_liar.npz", "labels declare 10^9 entries", labels_liar, FMNIST),
    ("dtype_void_2GB.npz", "4 rows of a 2 GB void dtype", dtype_liar("|V2000000000", (4,)), FMNIST),
    ("dtype_unicode.npz", "a unicode dtype of 10^8 characters", dtype_liar("<U100000000", (4,)), FMNIST),
    ("dtype_object.npz", "object array (would unpickle)", dtype_liar("|O"), FMNIST),
    ("dtype_structured.npz", "structured dtype", dtype_liar([("a", "<f4", (1, 28, 28))], (4,)), FMNIST),
    ("negative_dim.npz", "a negative dimension", liar(-5), FMNIST),
    ("huge_header.npz", "a 20 MB .npy header", huge_header, FMNIST),
    ("bomb_zeros_314MB.npz", "314 MB of zeros deflated (ratio ~1000x)", zero_bomb(100_000), FMNIST),
    ("bomb_zeros_3GB.npz", "3.1 GB of zeros deflated", zero_bomb(1_000_000), FMNIST),
    ("bomb_understated.npz", "zero bomb whose directory says 1 MiB", understated, FMNIST),
    ("declared_2^50.npz", "directory declares a 2^50-byte member", declared_huge, FMNIST),
    ("honest_800MB.npz", "honest 800 MB compressing ~30x (under the ratio cap, over the memory limit)",
     below_ratio(255_000), FMNIST),
    ("many_members.npz", "250,000 zip members", many_members(250_000), FMNIST),
    ("not_a_zip.npz", "1 MB of random bytes", not_a_zip, FMNIST),
    ("truncated.npz", "an honest file cut in half", truncated, FMNIST),
    ("png_at_cap.zip", "three 7999x7999 PNGs (64 M pixels each, just under the cap)",
     image_zip({f"cat/{i}.png": png(7999, 7999) for i in range(2)} | {"dog/0.png": png(7999, 7999)}), IMAGE),
    ("png_over_cap.zip", "a 30000x30000 PNG (900 M pixels)", image_zip({"cat/a.png": png(30000, 30000),
                                                                       "dog/b.png": png(64, 64)}), IMAGE),
    ("tar_bomb_1GB.tar.gz", "a 1 GB image entry of zeros in a .tar.gz", tar_bomb(1 << 30), IMAGE),
]

CHILD = r"""
import json, sys
limit, path, shape = int(sys.argv[1]), sys.argv[2], tuple(json.loads(sys.argv[3]))
from edgeq.jobs.limits import apply_memory_limit
apply_memory_limit(limit)
from edgeq.data import open_samples
from edgeq.data.samples import first, hold_out
from edgeq.errors import EdgeqError
from edgeq.sources.spec import InputSpec, Preprocess
preprocess = Preprocess((shape[1], shape[2]), channels=shape[0], mean=(0.5,) * shape[0], std=(0.25,) * shape[0])
try:
    calibration, validation = hold_out(open_samples(path, InputSpec("x", shape), preprocess), 0.3)
    rows = sum(1 for _ in first(calibration, 300)) + sum(1 for _ in first(validation, 10_000))
    outcome = {"rows": rows}
except EdgeqError as error:
    outcome = {"error": type(error).__name__, "message": str(error)[:300]}
except MemoryError as error:  # the worker reports this as ResourceExhausted: ran out of memory
    outcome = {"error": "MemoryError", "message": str(error)[:300]}
print(json.dumps(outcome))
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1])
"""


def run_case(path: Path, shape: tuple[int, ...], limit: int) -> dict[str, Any]:
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", CHILD, str(limit), str(path), json.dumps(shape)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    row: dict[str, Any] = {"exit": run.returncode, "seconds": round(time.monotonic() - started, 1)}
    lines = run.stdout.strip().splitlines()
    if run.returncode == 0 and len(lines) >= 2:
        row.update(json.loads(lines[-2]))
        row["peak_rss_mb"] = round(int(lines[-1]) * 1024 / 1e6, 1)
    else:
        row["stderr"] = run.stderr[-1500:]
    return row


def verdict(row: dict[str, Any], limit: int, name: str) -> str:
    """clear failure / read within the limit / PROBLEM."""
    if row["exit"] != 0 or "peak_rss_mb" not in row:
        return "PROBLEM: the reader died"
    if row["peak_rss_mb"] * 1e6 > limit:
        return "PROBLEM: past the memory limit"
    if "error" in row:
        named = name in row["message"] or row["error"] == "MemoryError"
        return "clear failure" if named else "PROBLEM: the error does not name the file"
    return "read within the limit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit-mib", type=int, default=512, help="the worker's memory limit for every case")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    limit = args.limit_mib << 20
    wanted = {n for n in args.only.split(",") if n}
    rows = []
    started = commit()
    with tempfile.TemporaryDirectory() as scratch:
        for name, what, build, shape in CASES:
            if wanted and name not in wanted:
                continue
            path = build(Path(scratch) / name)
            row = {"file": name, "what": what, "file_bytes": path.stat().st_size, **run_case(path, shape, limit)}
            row["verdict"] = verdict(row, limit, name)
            rows.append(row)
            path.unlink()
            print(f"{name:<24} {row['file_bytes']:>11,} B  peak {row.get('peak_rss_mb', '?'):>7} MB  "
                  f"{row['verdict']:<22} {row.get('error', '')} {row.get('message', row.get('rows', ''))!s:.150}",
                  flush=True)
    problems = [r for r in rows if r["verdict"].startswith("PROBLEM")]
    result = {"commit": started, "date": dt.date.today().isoformat(), "cpu_flags": cpu_flags(),
              "command": " ".join(["python", "benchmarks/hostile_data.py", *sys.argv[1:]]),
              "memory_limit_mib": args.limit_mib,
              "summary": {"files": len(rows), "problems": len(problems),
                          "clear_failures": sum(1 for r in rows if r["verdict"] == "clear failure"),
                          "read_within_limit": sum(1 for r in rows if r["verdict"] == "read within the limit"),
                          "max_peak_rss_mb": max((r.get("peak_rss_mb", 0) for r in rows), default=0)},
              "files": rows}
    print(json.dumps(result["summary"], indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
