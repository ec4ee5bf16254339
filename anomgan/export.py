"""A run's encoder-path scorer as one ONNX file, and scoring with it through onnxruntime.

The graph is ``Scorer.forward`` (preprocessing included): input ``x`` float32 ``N x C x H x W`` in [0, 1] at the
trained size (tables: ``N x D`` raw features), dynamic ``N``; outputs ``anomaly_score`` (N), each stored
component by its registry name (N), and for runs with maps ``anomaly_map`` (N x h x w at the working resolution).
Everything the CLI needs beside the graph (threshold, components, input shape, feature names) is in the model's
metadata, so ``anomgan score --run M.onnx`` writes the same CSV as the run it came from.

The export checks itself: onnxruntime scores the run's normal-validation samples and the file is refused (and
removed) when any ``anomaly_score`` differs from torch by more than ``SCORE_TOLERANCE`` x the standard deviation of
those scores (maps: the same bound on the maps' own spread).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from anomgan.data.preprocess import Preprocessor
from anomgan.errors import DataError, OutputError, RunError
from anomgan.io import atomic_path, check_output, require
from anomgan.model import Inversion, Scorer
from anomgan.scoring.parallel import scoring_threads, split_and_score, threads_per_batch

OPSET = 18  # torch 2.14's exporter; onnxruntime >= 1.16 runs it
SCORE_TOLERANCE = 1e-3  # x std of the normal-validation scores: the largest |torch - onnxruntime| accepted
CHECK_SAMPLES = 64  # normal-validation samples scored by both engines at export
METADATA_KEY = "anomgan"  # the model's metadata_props entry: JSON of what the CLI needs beside the graph


class _EncoderPath(nn.Module):
    """``Scorer.forward`` as a tuple of float32 tensors in a fixed order (ONNX outputs are positional)."""

    def __init__(self, scorer: Scorer, names: list):
        super().__init__()
        self.scorer, self.names = scorer, names

    def forward(self, x: torch.Tensor):
        out = self.scorer(x)
        return tuple(out[n].float() for n in self.names)


def output_names(scorer: Scorer) -> list:
    """The graph's outputs, in order: anomaly_score, the components, then anomaly_map when the run has maps."""
    return ["anomaly_score", *scorer.components] + (["anomaly_map"] if scorer.maps else [])


def _frozen_copy(scorer: Scorer) -> Scorer:
    """A CPU copy with spectral norm folded into plain weights (eval mode uses the stored estimate of sigma, so the
    folded weight is the one scoring uses) and only the encoder calibration kept."""
    from torch.nn.utils import parametrize

    s = Scorer.from_saved(scorer.saved())  # deepcopy of parametrized modules loses their weights
    for module in list(s.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    key = Inversion("encoder").key
    for other in [k for k in s.calibrations if k != key]:
        del s.calibrations[other]
    return s.eval().requires_grad_(False)


def metadata_of(scorer: Scorer, config: dict, meta: dict) -> dict:
    """What scoring with the file needs beside the graph (stored as JSON in the model's metadata)."""
    from anomgan import __version__

    cal = scorer.calibration(Inversion("encoder"))
    return {"anomgan_version": __version__, "outputs": output_names(scorer), "components": list(scorer.components),
            "threshold": float(cal.threshold), "preprocess": scorer.spec.preprocess,
            "score": {"batch_size": int(config["score"]["batch_size"]),
                      "num_workers": int(config["score"].get("num_workers", 0)),
                      "parallel_batches": int(config["score"].get("parallel_batches", 0))},
            "data": {"label_column": config["data"].get("label_column", "label")},
            "dataset": meta.get("dataset"), "opset": OPSET, "score_tolerance": SCORE_TOLERANCE}


def export_run(run: Path, out: Path, force: bool = False) -> dict:
    """Write ``out`` (one ``.onnx`` file, weights inside) from the run at ``run``, check it against torch on the
    run's normal-validation samples, and return the check's figures. Nothing is left at ``out`` on failure."""
    from anomgan.run_format import load_run

    for module in ("onnx", "onnxscript", "onnxruntime"):  # the exporter, and the check of what it wrote
        require(module, "export", "onnx")
    out = check_output(Path(out), force, "ONNX file")
    run_file = load_run(run)
    scorer = run_file.build_scorer(torch.device("cpu"))
    if scorer.calibration(Inversion("encoder")) is None:
        raise RunError(f"{run}: the run holds no encoder-path calibration to export")
    if scorer.encoder is None or scorer.calibration_x is None:
        raise RunError(f"{run}: the run has no encoder or normal-validation samples; it cannot be exported")
    frozen = _frozen_copy(scorer)
    names = output_names(frozen)
    graph = _EncoderPath(frozen, names)
    raw = raw_samples(frozen, CHECK_SAMPLES)
    example = raw[:2]
    meta = metadata_of(frozen, run_file.config, run_file.meta)
    with atomic_path(out) as tmp:
        _export_graph(graph, example, names, Path(tmp))
        _set_metadata(Path(tmp), meta)
        check = check_export(Path(tmp), scorer, raw, names)
    return {**check, "path": str(out), "outputs": names}


def raw_samples(scorer: Scorer, n: int) -> torch.Tensor:
    """Up to ``n`` normal-validation samples in the units and at the size the run's inputs come in (the graph's
    input): model space mapped back, then un-padded (e.g. MNIST's 28 px inside the 32-px model) or resized."""
    import torch.nn.functional as F

    x = scorer.preprocess.inverse(scorer.calibration_x[:n]).float()
    pre = Preprocessor.from_dict(scorer.spec.preprocess)
    if pre.kind != "image":
        return x
    c, h, w = pre.in_shape
    if (h, w) != tuple(x.shape[-2:]):
        if scorer.preprocess.pads(h, w):  # the inverse of Preprocess.forward's padding
            top, left = scorer.preprocess.pad_offsets(h, w)
            x = x[:, :, top:top + h, left:left + w]
        else:
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    if x.shape[1] != c:
        x = x.repeat(1, c, 1, 1) if x.shape[1] == 1 else x.mean(1, keepdim=True).repeat(1, c, 1, 1)
    return x.contiguous()


def _export_graph(graph: nn.Module, example: torch.Tensor, names: list, path: Path) -> None:
    """torch.export with a dynamic batch (an error, not a silently fixed batch size, when the code pins it), then
    ONNX with the weights inside the one file."""
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.export(graph, (example,), dynamic_shapes=({0: batch},), strict=False)
        except Exception as exc:  # noqa: BLE001 - the exporter's many error types: one line for the user
            raise OutputError(f"this run's scorer cannot be exported with a dynamic batch "
                              f"({str(exc).strip().splitlines()[0][:160]})") from None
        onnx_program = torch.onnx.export(program, (example,), dynamo=True, input_names=["x"], output_names=names,
                                         opset_version=OPSET, verbose=False, external_data=False, optimize=True)
    onnx_program.save(str(path), external_data=False)


def _set_metadata(path: Path, meta: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.save(model, str(path))


def check_export(path: Path, scorer: Scorer, raw: torch.Tensor, names: list) -> dict:
    """Score ``raw`` (source units) with torch and with onnxruntime; raise when they differ beyond the tolerance."""
    with torch.no_grad():
        ref = scorer(raw.to(scorer.dtype))
    got = dict(zip(names, _session(path).run(names, {"x": raw.numpy().astype(np.float32)})))
    cal = scorer.calibration(Inversion("encoder"))
    spread = float(scorer.combine({c: cal.values[:, i] for i, c in enumerate(scorer.components)}, cal).std())
    diff = float(np.abs(got["anomaly_score"] - ref["anomaly_score"].double().numpy()).max())
    bound = SCORE_TOLERANCE * max(spread, 1e-12)
    result = {"max_score_diff": diff, "score_bound": bound, "n_checked": len(raw)}
    if "anomaly_map" in got:
        m = ref["anomaly_map"].float().numpy()
        result["max_map_diff"] = float(np.abs(got["anomaly_map"] - m).max())
        result["map_bound"] = SCORE_TOLERANCE * max(float(m.std()), 1e-12)
    if diff > bound or result.get("max_map_diff", 0.0) > result.get("map_bound", np.inf):
        what = (f"scores by {diff:.3g} (allowed {bound:.3g})" if diff > bound else
                f"anomaly maps by {result['max_map_diff']:.3g} (allowed {result['map_bound']:.3g})")
        raise OutputError(f"the exported model's {what} differ from torch; the ONNX file was not written")
    return result


def _session(model, intra_op_threads: int = 0):
    """An onnxruntime CPU session of a file path or the model's bytes; ``intra_op_threads`` 0 = onnxruntime's
    default (one per core), else each batch's share when batches run side by side (``scoring.parallel``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = intra_op_threads
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def is_onnx(path) -> bool:
    p = Path(path)
    return p.suffix.lower() == ".onnx" and p.is_file()


class OnnxDetector:
    """Scores raw batches with an exported file through onnxruntime: the same dicts as ``AnoGAN.iter_scores``
    (encoder path only)."""

    def __init__(self, path: Optional[Path] = None, model_bytes: Optional[bytes] = None):
        import onnx

        where = str(path) if path is not None else "model bytes"
        try:
            data = Path(path).read_bytes() if model_bytes is None else model_bytes
            props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
            self.meta = json.loads(props[METADATA_KEY])
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one error
            raise RunError(f"{where}: not an ONNX file exported by anomgan ({str(exc).splitlines()[0][:80]})") from None
        self.names = self.meta["outputs"]
        self.threshold_ = float(self.meta["threshold"])
        self.preprocessor_ = Preprocessor.from_dict(self.meta["preprocess"])
        self.workers = scoring_threads("cpu", self.meta["score"].get("parallel_batches", 0),
                                       int(np.prod(self.preprocessor_.in_shape)))
        self.session = _session(data, intra_op_threads=threads_per_batch(self.workers))
        self.has_maps = "anomaly_map" in self.names
        self.batch_size = int(self.meta["score"]["batch_size"])
        self.num_workers = int(self.meta["score"]["num_workers"])
        self.label_column = self.meta["data"]["label_column"]

    def iter_scores(self, batches: Iterable[np.ndarray], batch_size: Optional[int] = None) -> Iterator[dict]:
        def prepare(raw) -> np.ndarray:
            return np.ascontiguousarray(self.preprocessor_.check(np.asarray(raw, dtype=np.float32)), dtype=np.float32)

        def score(x: np.ndarray) -> dict:
            return dict(zip(self.names, self.session.run(self.names, {"x": x})))

        for parts in split_and_score(batches, prepare, score, batch_size or self.batch_size, self.workers):
            res = {k: np.concatenate([p[k] for p in parts]) for k in self.names}
            res["anomaly_score"] = res["anomaly_score"].astype(np.float64)
            res["threshold"] = np.full(len(res["anomaly_score"]), self.threshold_)
            res["is_anomaly"] = (res["anomaly_score"] > self.threshold_).astype(np.int64)
            yield res

    def anomaly_score(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if len(X) == 0:
            raise DataError("no samples to score")
        return next(self.iter_scores([X]))["anomaly_score"]
