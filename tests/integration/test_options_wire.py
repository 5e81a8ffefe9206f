"""Every option reaches a real server's job record, from `edgeq submit` flags and from a JobSpec,
with the defaults `edgeq quantize` has; bad values are refused at Submit naming the field."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from edgeq.options import OPTION_NAMES, QuantizeOptions
from edgeq_server.client import EdgeqClient
from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb
from edgeq_server.specs import options_from_proto, options_to_proto
from tests.integration.server_process import ROOT, ServerProcess
from tests.unit.test_options import NON_DEFAULT, cli_arguments, parse


def _recorded(client: EdgeqClient, job_id: str) -> pb.JobSpec:
    """The job's spec as the server recorded it; the job itself is cancelled (nothing to quantize)."""
    try:
        client.quantization.Cancel(pb.JobRef(id=job_id))
    except grpc.RpcError as error:  # it may already have ended
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    return client.quantization.Get(pb.JobRef(id=job_id)).spec


def _cli_submit(target: str, calibration: Path, name: str, *flags: str) -> str:
    run = subprocess.run([sys.executable, "-m", "edgeq.cli", "submit", "--target", target, "--model",
                          "timm:edgeq_vit_fmnist", "--calibration", str(calibration), "--name", name, "--no-watch",
                          *flags], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    found = re.search(r"job (\w+) queued", run.stdout)
    assert found, run.stdout
    return found[1]


def test_every_option_from_flags_and_job_specs_with_the_same_defaults(fmnist_npz: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    calibration = fmnist_npz["calibration"]
    server = ServerProcess(tmp_path / "store").start()
    try:
        with EdgeqClient(server.target) as client:
            source = dict(model=pb.ModelSource(timm="edgeq_vit_fmnist"),
                          calibration_artifact=client.upload(calibration).sha256)
            # defaults: a bare JobSpec, bare `edgeq submit` and bare `edgeq quantize` agree
            bare = _recorded(client, client.submit(pb.JobSpec(target_name="bare", **source)).id)
            assert options_from_proto(bare) == QuantizeOptions() == parse("quantize")
            assert bare.HasField("max_drop") and bare.max_drop == 0.01 and bare.min_speedup == 1.1
            flagless = _recorded(client, _cli_submit(server.target, calibration, "flagless"))
            assert options_from_proto(flagless) == QuantizeOptions()
            # every option set, max_drop 0 and min_speedup 0 among them
            wanted = QuantizeOptions(**NON_DEFAULT)
            spec = options_to_proto(wanted, pb.JobSpec(target_name="every", **source))
            assert options_from_proto(_recorded(client, client.submit(spec).id)) == wanted
            from_flags = _recorded(client, _cli_submit(server.target, calibration, "flags", *cli_arguments(NON_DEFAULT)))
            assert options_from_proto(from_flags) == wanted
            assert from_flags.max_drop == 0.0 and from_flags.HasField("min_speedup") and from_flags.min_speedup == 0.0
            assert set(OPTION_NAMES) == set(NON_DEFAULT)

            refused = [
                (pb.JobSpec(max_drop=math.nan), "max_drop"), (pb.JobSpec(min_speedup=-1), "min_speedup"),
                (pb.JobSpec(speed_seconds=1e9), "speed_seconds"), (pb.JobSpec(time_budget_seconds=-5), "time_budget"),
                (pb.JobSpec(time_budget_seconds=1e300), "time_budget_seconds"),
                (pb.JobSpec(max_iterations=2**32 - 1), "max_iterations"),
                (pb.JobSpec(recipe=pb.Recipe(smooth_quant_alpha=math.nan)), "recipe.smooth_quant_alpha"),
                (pb.JobSpec(input_shape=[2**40]), "input_shape"), (pb.JobSpec(input_shape=[-1]), "input_shape"),
                (pb.JobSpec(preprocessing=pb.Preprocessing(size=[-5, -5])), "preprocessing.size"),
            ]
            for options, field in refused:
                options.MergeFrom(pb.JobSpec(target_name="bad", **source))
                with pytest.raises(grpc.RpcError) as caught:
                    client.submit(options)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
                assert f"invalid option {field}" in caught.value.details(), caught.value.details()
            listed = [job.target_name for job in client.quantization.List(pb.ListJobsRequest()).jobs]
            assert "bad" not in listed and len(listed) == 4
        # the CLI refuses a bad flag before uploading anything
        run = subprocess.run([sys.executable, "-m", "edgeq.cli", "submit", "--target", server.target, "--model",
                              "timm:x", "--calibration", "missing.npz", "--name", "x", "--min-speedup", "nan"],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert run.returncode == 2 and "invalid option min_speedup" in run.stderr, run.stderr
    finally:
        assert server.stop() == 0
