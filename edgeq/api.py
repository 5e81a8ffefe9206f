"""`edgeq.quantize`: one job from Python, with the options of edgeq.options as keyword parameters.

The model and the data may be paths (as the CLI takes them) or in memory, as `nncf.quantize`
takes them: an `openvino.Model`, a numpy array of inputs, an (inputs, labels) pair, or an
iterable of samples (arrays, or (array, label) pairs). In-memory values are written to a
temporary folder that lives as long as the call, so the pipeline reads one kind of input.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from edgeq._offline import disable_telemetry

if TYPE_CHECKING:
    import numpy as np
    import openvino as ov

    from edgeq.options import Metric, Preset, RangeEstimator
    from edgeq.quantization.events import ProgressEvent
    from edgeq.quantization.pipeline import QuantizeResult

PathLike = Union[str, "os.PathLike[str]"]
ModelLike = Union[PathLike, "ov.Model"]
DataLike = Union[PathLike, "np.ndarray", "tuple[np.ndarray, np.ndarray]", Iterable[Any]]


def quantize(
    model: ModelLike,
    calibration: DataLike,
    *,
    store: PathLike,
    name: str,
    validation: DataLike | None = None,
    weights: PathLike | None = None,
    input_shape: tuple[int, ...] | None = None,
    image_size: tuple[int, int] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    output_node: str | None = None,
    max_length: int | None = None,
    metric: Metric = "agreement",
    max_drop: float = 0.01,
    relative: bool = False,
    validation_limit: int = 10_000,
    holdout_fraction: float = 0.3,
    preset: Preset = "performance",
    rules: tuple[str, ...] | None = None,
    subset_size: int = 300,
    smooth_quant_alpha: float | None = None,
    activations_range: RangeEstimator = "default",
    no_transformer: bool = False,
    auto: bool = False,
    ranking_samples: int = 300,
    search_calibration: int = 100,
    plan: bool = False,
    no_fallback: bool = False,
    time_budget: float = 600.0,
    max_iterations: int = 30,
    ranking_subset: int | None = None,
    sensitivity_samples: int = 8,
    speed_seconds: float = 1.0,
    speed_rounds: int = 3,
    batch_sizes: tuple[int, ...] = (1,),
    min_speedup: float = 1.1,
    force_promote: bool = False,
    no_float_ir: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    search_workers: int | None = None,
) -> QuantizeResult:
    """Quantize `model` to INT8 and publish it in `store` as a new version of `name`.

    - `model`: "timm:NAME", an .onnx or OpenVINO .xml path, a Hugging Face model folder
      (config.json + safetensors), or an `openvino.Model`.
    - `calibration`, `validation`: an .npz (inputs, labels) or image archive path, an array of
      inputs (N, ...), an (inputs, labels) pair, or an iterable of samples / (sample, label). For
      a model with several or integer inputs: an .npz with one array per input, named as the
      inputs, or a .txt/.jsonl of sentences tokenized with the folder's tokenizer (`max_length`).
      Without `validation`, `holdout_fraction` of the calibration set is held out.
    - Every other keyword is a field of `edgeq.options.QuantizeOptions` (same name, default and
      range; its help says what it does): the metric and accuracy budget (`metric`, `max_drop`,
      `relative`), the recipe (`preset`, `rules`, `subset_size`, `smooth_quant_alpha`, `auto`, `plan`),
      the fallback (`no_fallback`, `time_budget`, `max_iterations`), the speed table and gate
      (`speed_seconds`, `batch_sizes`, `min_speedup`, `force_promote`), whether the version
      carries the float IR for the serving machine to measure against (`no_float_ir`).
    - `on_event` receives progress events; `cancelled` is polled and stops the job when true;
      `search_workers` caps parallel `auto` candidates (default: one per core).

    Returns a `QuantizeResult` (version, path, report; `budget_met`, `served`). A missed budget is
    a result, not an error; bad input raises `edgeq.InvalidArgument` naming what is wrong.
    """
    arguments = dict(locals())
    disable_telemetry()  # before OpenVINO loads: it imports its telemetry package with its converter
    from edgeq.options import OPTION_NAMES, QuantizeOptions
    from edgeq.quantization.events import ignore
    from edgeq.quantization.pipeline import QuantizeRequest, run

    options = QuantizeOptions(**{k: arguments[k] for k in OPTION_NAMES})
    with tempfile.TemporaryDirectory(prefix="edgeq-inputs-") as scratch:
        folder = Path(scratch)
        request = QuantizeRequest(
            model=_model_path(model, folder), calibration=_data_path(calibration, folder / "calibration.npz"),
            validation=None if validation is None else _data_path(validation, folder / "validation.npz"),
            weights=None if weights is None else os.fspath(weights), store=os.fspath(store), name=name,
            options=options, search_workers=search_workers)
        return run(request, on_event or ignore, cancelled or (lambda: False))


def _model_path(model: ModelLike, folder: Path) -> str:
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    import openvino as ov

    if not isinstance(model, ov.Model):
        raise TypeError(f"model must be a path, 'timm:NAME' or an openvino.Model, not {type(model).__name__}")
    path = folder / f"{model.get_friendly_name() or 'model'}.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return str(path)


def _data_path(data: DataLike, path: Path) -> str:
    """A path as it is; arrays and samples as an .npz of `inputs` (float32) and `labels`."""
    import numpy as np

    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    labels: Any = None
    if isinstance(data, np.ndarray):
        inputs = data
    elif isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, np.ndarray) for d in data):
        inputs, labels = data
    else:
        samples = [item if isinstance(item, tuple) else (item, None) for item in data]
        inputs = np.stack([np.asarray(sample) for sample, _ in samples]) if samples else np.zeros((0,))
        if samples and all(label is not None for _, label in samples):
            labels = np.asarray([label for _, label in samples])
    arrays: dict[str, Any] = {"inputs": np.asarray(inputs, dtype=np.float32)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    np.savez(path, **arrays)
    return str(path)
