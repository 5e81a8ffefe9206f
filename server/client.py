"""A Python client for edgeq's management API: upload, submit, watch, export."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb
from edgeq_server.gen.edgeq.v1 import edgeq_pb2_grpc as pb_grpc

CHUNK = 1 << 20
MAX_MESSAGE = 64 * 2**20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class EdgeqClient:
    def __init__(self, target: str = "127.0.0.1:8001", channel: grpc.Channel | None = None):
        self.channel = channel or grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)])
        self.artifacts = pb_grpc.ArtifactsStub(self.channel)
        self.quantization = pb_grpc.QuantizationStub(self.channel)
        self.models = pb_grpc.ModelsStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "EdgeqClient":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def upload(self, path: str | Path) -> pb.Artifact:
        path = Path(path)
        info = pb.UploadInfo(filename=path.name, sha256=sha256_of(path), size=path.stat().st_size)

        def chunks() -> Iterator[pb.UploadChunk]:
            with open(path, "rb") as stream:
                first = True
                while True:
                    block = stream.read(CHUNK)
                    if not block and not first:
                        return
                    yield pb.UploadChunk(info=info if first else None, data=block)
                    first = False
                    if not block:
                        return

        return self.artifacts.Upload(chunks())

    def submit(self, spec: pb.JobSpec) -> pb.Job:
        return self.quantization.Submit(spec)

    def watch(self, job_id: str, on_event: Callable[[pb.JobEvent], None] | None = None) -> pb.Job:
        for event in self.quantization.Watch(pb.JobRef(id=job_id)):
            if on_event:
                on_event(event)
        return self.quantization.Get(pb.JobRef(id=job_id))

    def export(self, name: str, version: int, out_dir: str | Path) -> Path:
        """Download a bundle; verifies the sha256 the server announces in its last chunk."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        target: Path | None = None
        announced = ""
        partial = out_dir / f".{name}-{version}.partial"
        with open(partial, "wb") as stream:
            for chunk in self.models.Export(pb.ModelRef(name=name, version=version)):
                if chunk.filename:
                    target = out_dir / Path(chunk.filename).name
                if chunk.data:
                    digest.update(chunk.data)
                    stream.write(chunk.data)
                if chunk.sha256:
                    announced = chunk.sha256
        if target is None or announced != digest.hexdigest():
            partial.unlink(missing_ok=True)
            raise ValueError("bundle download incomplete or corrupted (sha256 mismatch)")
        partial.replace(target)
        return target

    def report(self, name: str, version: int = 0) -> dict[str, Any]:
        return dict(json.loads(self.models.GetReport(pb.ModelRef(name=name, version=version)).json))
