"""A job as submitted (artifact references, options) and its translation to a QuantizeRequest."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeq.archive import ArchiveLimits, SafeArchive
from edgeq.artifacts import ArtifactStore
from edgeq.errors import InvalidArgument
from edgeq.names import check_model_name
from edgeq.options import QuantizeOptions


@dataclass
class JobSpec:
    """What a job quantizes (a timm name or artifacts) and how (its options, declared in edgeq.options)."""

    target_name: str
    timm: str = ""
    onnx_artifact: str = ""
    ir_artifact: str = ""
    hf_artifact: str = ""  # a .tar of a Hugging Face model folder
    weights_artifact: str = ""
    calibration_artifact: str = ""
    validation_artifact: str = ""
    options: QuantizeOptions = field(default_factory=QuantizeOptions)

    def validate(self, artifacts: ArtifactStore) -> None:
        """Cheap checks at submit time, so a bad spec fails before it is queued (the options
        were checked when they were built)."""
        check_model_name(self.target_name)
        sources = [s for s in (self.timm, self.onnx_artifact, self.ir_artifact, self.hf_artifact) if s]
        if len(sources) != 1:
            raise InvalidArgument("give exactly one model source: a timm name, an ONNX artifact, an IR artifact or "
                                  "a Hugging Face folder artifact")
        if not self.calibration_artifact:
            raise InvalidArgument("a calibration artifact is required (upload an .npz or image archive first)")
        for ref in (self.onnx_artifact, self.ir_artifact, self.hf_artifact, self.weights_artifact, self.calibration_artifact,
                    self.validation_artifact):
            if ref:
                artifacts.get(ref)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        return {**data, "options": self.options.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobSpec":
        if "options" not in data:
            data = _from_flat_record(data)
        return cls(**{**data, "options": QuantizeOptions(**data["options"])})

    def to_request(self, artifacts: ArtifactStore, store: Path, workdir: Path) -> Any:
        from edgeq.quantization.pipeline import QuantizeRequest

        if self.timm:
            model = f"timm:{self.timm}"
        elif self.onnx_artifact:
            model = str(artifacts.get(self.onnx_artifact).path)
        elif self.hf_artifact:
            model = str(_unpack_folder(artifacts.get(self.hf_artifact).path, workdir))
        else:
            model = str(_unpack_ir(artifacts.get(self.ir_artifact).path, workdir))
        return QuantizeRequest(
            model=model, calibration=artifacts.get(self.calibration_artifact).path,
            validation=artifacts.get(self.validation_artifact).path if self.validation_artifact else None,
            weights=artifacts.get(self.weights_artifact).path if self.weights_artifact else None,
            store=store, name=self.target_name, options=self.options,
        )


_SOURCE_FIELDS = ("target_name", "timm", "onnx_artifact", "ir_artifact", "hf_artifact", "weights_artifact",
                  "calibration_artifact", "validation_artifact")
_RENAMED = {"relative_drop": "relative", "time_budget_seconds": "time_budget"}


def _from_flat_record(data: dict[str, Any]) -> dict[str, Any]:
    """A record written before the options were one model: options at the top level, empty
    values for "unset", `transformer` where `no_transformer` is now, negative speed_seconds to skip."""
    sources = {k: v for k, v in data.items() if k in _SOURCE_FIELDS}
    options = {_RENAMED.get(k, k): v for k, v in data.items()
               if k not in _SOURCE_FIELDS and k != "transformer" and v not in ("", [], None)}
    options["speed_seconds"] = max(0.0, options.get("speed_seconds", 1.0))
    return {**sources, "options": {**options, "no_transformer": not data.get("transformer", True)}}


def _unpack_ir(archive: Path, workdir: Path) -> Path:
    """An IR upload is a .tar with model.xml and model.bin at its top level (nothing else read)."""
    safe = SafeArchive(archive)
    names = {Path(e.name).name: e for e in safe.entries if Path(e.name).suffix in (".xml", ".bin")}
    xml = [n for n in names if n.endswith(".xml")]
    if len(xml) != 1 or Path(xml[0]).with_suffix(".bin").name not in names:
        raise InvalidArgument(f"{archive.name}: an IR archive needs exactly one .xml and its .bin")
    target = workdir / "ir"
    target.mkdir(parents=True, exist_ok=True)
    with safe.reader() as reader:
        for name in (xml[0], Path(xml[0]).with_suffix(".bin").name):
            (target / name).write_bytes(reader.read(names[name]))
    return target / xml[0]


def _unpack_folder(archive: Path, workdir: Path) -> Path:
    """A Hugging Face folder upload: a .tar whose files (config.json at the top, or under one top
    folder) are written out as they are; SafeArchive has refused links, `..` and bombs."""
    safe = SafeArchive(archive, ArchiveLimits(max_entry_bytes=8 << 30))  # weights files are large
    configs = sorted((e for e in safe.entries if Path(e.name).name == "config.json"), key=lambda e: len(Path(e.name).parts))
    if not configs:
        raise InvalidArgument(f"{archive.name}: a Hugging Face folder archive needs a config.json")
    top = Path(configs[0].name).parent
    target = workdir / "hf"
    with safe.reader() as reader:
        for entry in safe.entries:
            relative = Path(entry.name).relative_to(top) if Path(entry.name).is_relative_to(top) else None
            if relative is None or not relative.parts:
                continue
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).write_bytes(reader.read(entry))
    return target
