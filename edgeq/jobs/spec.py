"""A job as submitted (artifact references, options) and its translation to a QuantizeRequest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeq.archive import SafeArchive
from edgeq.artifacts import ArtifactStore
from edgeq.errors import InvalidArgument
from edgeq.names import check_model_name


@dataclass
class JobSpec:
    target_name: str
    timm: str = ""
    onnx_artifact: str = ""
    ir_artifact: str = ""
    weights_artifact: str = ""
    calibration_artifact: str = ""
    validation_artifact: str = ""
    input_shape: list[int] = field(default_factory=list)
    image_size: list[int] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    metric: str = "agreement"
    max_drop: float = 0.01
    relative_drop: bool = False
    preset: str = "performance"
    rules: list[str] = field(default_factory=list)
    subset_size: int = 300
    smooth_quant_alpha: float | None = None
    activations_range: str = "default"
    transformer: bool = True
    time_budget_seconds: float = 600.0
    max_iterations: int = 30
    no_fallback: bool = False
    min_speedup: float = 1.1
    speed_seconds: float = 1.0
    output_node: str = ""
    auto: bool = False
    force_promote: bool = False

    def validate(self, artifacts: ArtifactStore) -> None:
        """Cheap checks at submit time, so a bad spec fails before it is queued."""
        check_model_name(self.target_name)
        sources = [s for s in (self.timm, self.onnx_artifact, self.ir_artifact) if s]
        if len(sources) != 1:
            raise InvalidArgument("give exactly one model source: a timm name, an ONNX artifact or an IR artifact")
        if not self.calibration_artifact:
            raise InvalidArgument("a calibration artifact is required (upload an .npz or image archive first)")
        for ref in (self.onnx_artifact, self.ir_artifact, self.weights_artifact, self.calibration_artifact,
                    self.validation_artifact):
            if ref:
                artifacts.get(ref)
        self.to_request(artifacts, store=Path("."), workdir=None)  # validates every option

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobSpec":
        return cls(**data)

    def to_request(self, artifacts: ArtifactStore, store: Path, workdir: Path | None) -> Any:
        from edgeq.quantization.accuracy import Budget
        from edgeq.quantization.fallback import FallbackSettings
        from edgeq.quantization.pipeline import QuantizeRequest
        from edgeq.quantization.recipe import Recipe
        from edgeq.quantization.speed import SpeedSettings
        from edgeq.sources.spec import Preprocess

        if self.timm:
            model = f"timm:{self.timm}"
        elif self.onnx_artifact:
            model = str(artifacts.get(self.onnx_artifact).path)
        else:
            model = str(_unpack_ir(artifacts.get(self.ir_artifact).path, workdir)) if workdir else "ir.xml"
        preprocess = None
        if self.image_size:
            if len(self.image_size) != 2:
                raise InvalidArgument("preprocessing size must be [height, width]")
            channels = len(self.mean or self.std or [0, 0, 0])
            preprocess = Preprocess(size=(self.image_size[0], self.image_size[1]), channels=channels,
                                    mean=tuple(self.mean or [0.0] * channels), std=tuple(self.std or [1.0] * channels))
        recipe = Recipe(preset=self.preset, transformer=self.transformer,
                        rules=tuple(self.rules) if self.rules else Recipe().rules, subset_size=self.subset_size,
                        smooth_quant_alpha=self.smooth_quant_alpha, activations_range=self.activations_range)
        return QuantizeRequest(
            model=model, calibration=artifacts.get(self.calibration_artifact).path if workdir else "calibration",
            validation=(artifacts.get(self.validation_artifact).path if workdir else "validation")
            if self.validation_artifact else None,
            weights=artifacts.get(self.weights_artifact).path if self.weights_artifact and workdir else None,
            store=store, name=self.target_name, input_shape=tuple(self.input_shape) or None, preprocess=preprocess,
            output_node=self.output_node or None, metric=self.metric,
            budget=Budget(self.max_drop, self.relative_drop), recipe=recipe,
            fallback=None if self.no_fallback else FallbackSettings(self.time_budget_seconds, self.max_iterations),
            speed=SpeedSettings(seconds_per_round=self.speed_seconds) if self.speed_seconds > 0 else None,
            min_speedup=self.min_speedup, auto=self.auto, force_promote=self.force_promote,
        )


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


