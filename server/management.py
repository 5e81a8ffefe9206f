"""edgeq.v1 management services: Artifacts, Quantization, Models. Conversions only, no logic."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from edgeq.artifacts import ArtifactStore, iter_file
from edgeq.errors import FailedPrecondition, InvalidArgument
from edgeq.jobs.db import JobDB, JobRecord
from edgeq.jobs.spec import JobSpec
from edgeq.runtime.registry import ModelRegistry
from edgeq.store import ModelStore
from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb
from edgeq_server.gen.edgeq.v1 import edgeq_pb2_grpc as pb_grpc
from edgeq_server.specs import spec_from_proto, spec_to_proto

BUNDLE_CHUNK = 1 << 20


class ArtifactsServicer(pb_grpc.ArtifactsServicer):
    def __init__(self, artifacts: ArtifactStore):
        self.artifacts = artifacts

    async def Upload(self, chunks: AsyncIterator[pb.UploadChunk], context: grpc.aio.ServicerContext) -> pb.Artifact:
        writer = None
        try:
            async for chunk in chunks:
                if writer is None:
                    if not chunk.HasField("info") or not chunk.info.filename:
                        raise InvalidArgument("the first upload chunk must carry info with a filename")
                    writer = self.artifacts.writer(chunk.info.filename, chunk.info.sha256, chunk.info.size)
                if chunk.data:
                    writer.write(chunk.data)
            if writer is None:
                raise InvalidArgument("the upload stream was empty")
            artifact = writer.finish()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        return pb.Artifact(sha256=artifact.sha256, size=artifact.size, filename=artifact.filename)


def job_to_proto(record: JobRecord) -> pb.Job:
    return pb.Job(id=record.id, state=pb.JobState.Value(record.state), target_name=record.target_name,
                  version=record.version, error=record.error, stage=record.stage, fraction=record.fraction,
                  message=record.message, created_unix=record.created, updated_unix=record.updated,
                  result_json=json.dumps(record.result) if record.result else "", budget_met=record.budget_met,
                  spec=spec_to_proto(JobSpec.from_dict(record.spec), every=True))


class QuantizationServicer(pb_grpc.QuantizationServicer):
    def __init__(self, jobs: JobDB, artifacts: ArtifactStore, wake_runner: Any, quantize_available: Any):
        self.jobs = jobs
        self.artifacts = artifacts
        self.wake_runner = wake_runner
        self.quantize_available = quantize_available  # callable -> str | None (why not)

    async def Submit(self, request: pb.JobSpec, context: grpc.aio.ServicerContext) -> pb.Job:
        missing = self.quantize_available()
        if missing:
            raise FailedPrecondition(missing)
        spec = spec_from_proto(request)
        await asyncio.to_thread(spec.validate, self.artifacts)
        record = await asyncio.to_thread(self.jobs.create, spec.target_name, spec.to_dict())
        self.wake_runner()
        return job_to_proto(record)

    async def Watch(self, request: pb.JobRef, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.JobEvent]:
        last: tuple[Any, ...] | None = None
        while True:
            record = await asyncio.to_thread(self.jobs.get, request.id)
            key = (record.state, record.stage, round(record.fraction, 3), record.message)
            if key != last:
                last = key
                yield pb.JobEvent(job_id=record.id, state=pb.JobState.Value(record.state), stage=record.stage,
                                  fraction=record.fraction, message=record.error or record.message,
                                  metrics_json=json.dumps(record.result or record.metrics, default=str))
            if record.finished:
                return
            await asyncio.sleep(0.25)

    async def Get(self, request: pb.JobRef, context: grpc.aio.ServicerContext) -> pb.Job:
        return job_to_proto(await asyncio.to_thread(self.jobs.get, request.id))

    async def List(self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext) -> pb.ListJobsResponse:
        records = await asyncio.to_thread(self.jobs.recent, request.limit or 100)
        return pb.ListJobsResponse(jobs=[job_to_proto(r) for r in records])

    async def Cancel(self, request: pb.JobRef, context: grpc.aio.ServicerContext) -> pb.Job:
        return job_to_proto(await asyncio.to_thread(self.jobs.request_cancel, request.id))


class ModelsServicer(pb_grpc.ModelsServicer):
    def __init__(self, store: ModelStore, registry: ModelRegistry):
        self.store = store
        self.registry = registry

    def _info(self, name: str) -> pb.ModelInfo:
        from edgeq.report.model import Report  # its sections' types import the quantization package

        loaded = self.registry.loaded.get(name, {})
        info = pb.ModelInfo(name=name)
        for version in self.store.versions(name):
            report = version.report()
            acc = read.accuracy if (read := Report.read(report)) else None
            scores = dict(metric=acc.metric, float_score=acc.float, int8_score=acc.final, budget_met=acc.met) if acc else {}
            info.versions.add(version=version.version, loaded=version.version in loaded, **scores,
                              report_json=json.dumps(report), held_reason=version.held() or "",
                              served_ir=version.served_ir, ir_choice=version.serve_reason,
                              has_float_ir=version.has_float)
        return info

    async def List(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        names = await asyncio.to_thread(self.store.names)
        return pb.ListModelsResponse(models=[self._info(n) for n in names])

    async def Get(self, request: pb.ModelRef, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        self.store.get(request.name)  # NOT_FOUND for unknown names
        return self._info(request.name)

    async def GetReport(self, request: pb.ModelRef, context: grpc.aio.ServicerContext) -> pb.Report:
        info = self.store.get(request.name, request.version)
        html_path = info.path / "report.html"
        return pb.Report(name=info.name, version=info.version,
                         html=html_path.read_text() if html_path.exists() else "", json=json.dumps(info.report()))

    async def Delete(self, request: pb.ModelRef, context: grpc.aio.ServicerContext) -> pb.DeleteModelResponse:
        if not request.version:
            raise InvalidArgument("give the version to delete (deleting 'latest' by accident is too easy)")
        info = self.store.get(request.name, request.version)
        if self.registry.is_loading(info.name, info.version):
            raise FailedPrecondition(f"{info.name} version {info.version} is being loaded; retry in a moment")
        await asyncio.to_thread(self.store.delete, info.name, info.version)
        await self.registry.refresh()
        return pb.DeleteModelResponse()

    async def Promote(self, request: pb.ModelRef, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        if not request.version:
            raise InvalidArgument("give the version to promote")
        info = await asyncio.to_thread(self.store.promote, request.name, request.version)
        await self.registry.refresh()
        return self._info(info.name)

    async def Export(self, request: pb.ModelRef, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.BundleChunk]:
        from edgeq.store.bundle import export_bundle

        info = self.store.get(request.name, request.version)
        with tempfile.TemporaryDirectory() as scratch:
            bundle = Path(scratch) / f"{info.name}-{info.version}.edgeq.tar"
            await asyncio.to_thread(export_bundle, info, bundle)
            digest = hashlib.sha256()
            first = True
            for block in iter_file(bundle, BUNDLE_CHUNK):
                digest.update(block)
                yield pb.BundleChunk(data=block, filename=bundle.name if first else "")
                first = False
            yield pb.BundleChunk(sha256=digest.hexdigest())
