"""The libraries' known noise is logged at debug while edgeq calls them; everything else still shows."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest

from edgeq._boundary import dependency


class TracerWarning(Warning):
    """Named like torch.jit's (matched by name, so this test needs no torch)."""


def test_known_noise_goes_to_debug_and_other_warnings_pass(capsys: pytest.CaptureFixture[str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    handler = logging.StreamHandler()  # as torch and NNCF attach their own handlers
    nncf, cpp = logging.getLogger("nncf"), logging.getLogger("torch.utils.cpp_extension")
    for logger in (nncf, cpp):
        logger.addHandler(handler)
    caplog.set_level(logging.DEBUG, logger="edgeq.libraries")
    try:
        with warnings.catch_warnings(record=True) as seen:  # what would be shown
            warnings.simplefilter("always")
            with dependency("a library call"):
                warnings.warn("Converting a tensor to a Python boolean", TracerWarning)
                warnings.warn("torch.jit.trace is deprecated", FutureWarning)
                warnings.warn("a warning the user needs", UserWarning)
                cpp.warning("No CUDA runtime is found, using CUDA_HOME='/usr/local'")
                nncf.warning("Dataset contains only 32 samples, smaller than the requested subset size 300.")
                nncf.warning("something NNCF should say")
            nncf.warning("outside: smaller than the requested subset size 300")  # edgeq is not calling NNCF here
    finally:
        for logger in (nncf, cpp):
            logger.removeHandler(handler)
    shown = capsys.readouterr().err
    assert [str(w.message) for w in seen] == ["a warning the user needs"]
    assert "something NNCF should say" in shown
    assert "Python boolean" not in shown and "torch.jit.trace" not in shown and "No CUDA runtime" not in shown
    assert "smaller than the requested subset size 300." not in shown
    assert "outside: smaller than the requested subset size 300" in shown
    debug = [r.getMessage() for r in caplog.records if r.name == "edgeq.libraries"]
    assert len(debug) == 4 and any("No CUDA runtime" in m for m in debug), debug


def test_nncf_progress_bars_are_not_drawn_into_a_pipe() -> None:
    """NNCF's rich bars on rich's global console: nothing of them in a pipe in edgeq's children."""
    script = ("from edgeq.childproc import enter_child\n"
              "from nncf.common.logging.track_progress import track\n"
              "{quiet}\n"
              "for _ in track(range(3), description='Statistics collection'):\n"
              "    pass\n"
              "print('after')\n")
    for quiet, expected in (("pass", True), ("enter_child()", False)):
        run = subprocess.run([sys.executable, "-c", script.format(quiet=quiet)], capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        assert ("Statistics collection" in run.stdout) is expected, (quiet, run.stdout)
        assert run.stdout.splitlines()[-1] == "after"
