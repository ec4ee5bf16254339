"""Run-level operations behind the CLI: train a run directory, score an input, evaluate a run.

Each function does one library job and returns a typed result; none prints or exits.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from anomgan.config import Config
from anomgan.data.sources import Dataset, load_source
from anomgan.data.splits import Splits, make_splits
from anomgan.data.stream import count_input, iter_input
from anomgan.distributed import barrier
from anomgan.errors import ConfigError, DataError, OutputError
from anomgan.estimator import AnoGAN
from anomgan.evaluation.metrics import evaluate_scores, score_columns
from anomgan.io import atomic_write, atomic_write_text, check_output
from anomgan.run_format import RUN_FILE, clear_run, load_run, save_run, update_scorer, write_descriptors
from anomgan.training.trainer import Trainer, dist_info


def load_data(cfg: Config) -> Dataset:
    d = cfg.data
    if d.source.startswith(("mvtec:", "folder:")):
        from anomgan.data.layouts import load_folder_layout, load_mvtec

        kind, path = d.source.split(":", 1)
        if kind == "mvtec":
            return load_mvtec(path, d.channels, d.image_size)
        return load_folder_layout(path, d.normal_dir, d.abnormal_dirs, d.mask_dir, d.normal_test_dir,
                                  d.normal_split_ratio, cfg.train.seed, d.channels, d.image_size)
    return load_source(d.source, root=d.root, download=d.download, labels=d.labels, label_column=d.label_column,
                       channels=d.channels, image_size=d.image_size if d.resize == "resize" else None)


def run_data(det: AnoGAN, data_root: Optional[str] = None) -> tuple[Dataset, Splits]:
    """The data set a loaded run was trained on and its splits (its config's seed: the same split again);
    ``data_root`` overrides where the data lives."""
    if data_root is not None:
        det.config_.data.root = data_root
    ds = load_data(det.config_)
    return ds, split_data(det.config_, ds)


def split_data(cfg: Config, ds: Dataset) -> Splits:
    d = cfg.data
    normal = d.normal_classes
    if not normal and d.source.startswith(("mvtec:", "folder:")):
        from anomgan.data.layouts import NORMAL

        normal = [NORMAL]  # inspection layouts name their normal images
    return make_splits(ds, normal, d.val_fraction, d.test_fraction, cfg.train.seed, d.max_train)


@dataclass
class TrainResult:
    run_dir: Path
    detector: AnoGAN
    n_train: int
    n_val: int
    n_test: int
    seconds: float
    resumed: bool


def prepare_run_dir(out: Path, resume: bool, force: bool) -> bool:
    """Check/clear ``out`` before training; returns whether a checkpoint will be resumed."""
    has_run = (out / RUN_FILE).exists()
    if resume and force:
        raise OutputError("resume and force contradict each other: choose one",
                          cli="--resume and --force contradict each other: choose one")
    if resume:
        if not has_run:
            raise OutputError(f"nothing to resume: {out} holds no run")
        return True
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a run directory")
    if has_run and not force:
        raise OutputError(f"{out} already holds a run (resume it, or force a new start)",
                          cli=f"{out} already holds a run (use --resume to continue it or --force to start over)")
    if force and out.exists():
        clear_run(out)
    return False


def _sample_grid(generator, z: torch.Tensor, path: Path, to_unit) -> None:
    """Save a grid of G(z) as PNG (images only)."""
    from torchvision.utils import save_image

    from anomgan.evaluation.plots import upscale

    generator.eval()
    with torch.no_grad():
        x = upscale(to_unit(generator(z).float().cpu()), 64)  # 64 tiles of >= 64 px
    nrow = max(1, int(np.sqrt(len(x))))
    atomic_write(path, lambda tmp: save_image(x, tmp, nrow=nrow, format="png", padding=1))


def train_run(cfg: Config, out: Path, resume: bool = False, force: bool = False, verbose: bool = False,
              dataset: Optional[Dataset] = None) -> TrainResult:
    """Load data, split by seed, train on normal-train, calibrate on normal-validation, write the run.

    The run is saved after every epoch (``resume`` continues it, also to more epochs once finished)."""
    from anomgan.data.preprocess import Preprocessor
    from anomgan.training.fit import fit_detector

    out = Path(out)
    rank, world = dist_info()
    resumed = prepare_run_dir(out, resume, force) if rank == 0 else resume  # architecture change: refused in fit
    barrier()  # other ranks start once rank 0 has prepared the directory
    state = load_run(out).training_state() if resumed else None
    ds = dataset if dataset is not None else load_data(cfg)
    splits = split_data(cfg, ds)
    meta = {"dataset": ds.name, "kind": ds.kind, "normal_classes": splits.normal_classes,
            "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test), "world_size": world}

    if rank == 0:
        write_descriptors(out, cfg, "gan" if state is None else state["phase"], meta)

    def on_epoch(trainer: Trainer) -> None:
        if rank != 0:
            return
        save_run(out, cfg, trainer.state.phase, trainer.state_dict(), meta=meta, descriptors=False)
        e, t = trainer.state, cfg.train
        due = e.epoch % t.sample_every == 0 or e.epoch == t.epochs
        if ds.kind == "image" and e.phase == "gan" and due:
            (out / "samples").mkdir(exist_ok=True)
            _sample_grid(trainer.generator_ema, trainer.fixed_z, out / "samples" / f"epoch_{e.epoch:04d}.png",
                         Preprocessor.from_dict(trainer.preprocess).to_unit)

    result = fit_detector(cfg, ds.x[splits.train], ds.x[splits.val], feature_names=ds.feature_names, resume=state,
                          on_epoch=on_epoch, verbose=verbose)
    det = None
    if rank == 0:
        meta["train_seconds"] = result.seconds
        det = AnoGAN(config=cfg, verbose=verbose)
        det._adopt(result.scorer, cfg, result.trainer.state_dict())
        det.n_features_in_ = int(result.preprocessor.in_shape[0])
        det.save(out, meta)
        if ds.kind == "image":
            _sample_grid(result.scorer.generator, result.trainer.fixed_z, out / "samples.png",
                         result.preprocessor.to_unit)
    return TrainResult(out, det, len(splits.train), len(splits.val), len(splits.test), result.seconds, resumed)


# ---------------------------------------------------------------------------- score


@dataclass
class ScoreResult:
    out: Path
    n: int
    n_flagged: int
    threshold: float
    seconds: float
    reconstructions: list = field(default_factory=list)


class TopK:
    """The k highest-scoring samples seen so far, with their inputs and reconstructions (bounded memory)."""

    def __init__(self, k: int):
        self.k, self.heap, self.count = k, [], 0

    def push(self, scores: np.ndarray, ids, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        for i in np.argsort(-scores)[: self.k]:
            item = (float(scores[i]), self.count, str(ids[i]), x[i].clone(), x_hat[i].clone())
            self.count += 1
            if len(self.heap) < self.k:
                heapq.heappush(self.heap, item)
            elif item[0] > self.heap[0][0]:
                heapq.heapreplace(self.heap, item)

    def items(self) -> list:
        return sorted(self.heap, key=lambda t: -t[0])


@dataclass
class ScoringSetup:
    """What scoring an input needs of a run, whichever engine scores it: a torch run directory (``AnoGAN``) or an
    exported ``.onnx`` file (``OnnxDetector``, encoder path only)."""

    detector: object  # AnoGAN | OnnxDetector: iter_scores(batches, ..., batch_size=) -> dicts of (B,) arrays
    preprocessor: object  # Preprocessor: how inputs are read and checked
    has_maps: bool
    batch_size: int
    num_workers: int
    label_column: str
    data_root: str
    download: bool
    backend: str  # torch | onnx


def scoring_setup(run: Path, device: str = "auto", verbose: bool = False, method: Optional[str] = None,
                  steps: Optional[int] = None) -> ScoringSetup:
    """The detector behind ``run``: a run directory, or an ``.onnx`` file written by ``anomgan export``."""
    from anomgan.export import OnnxDetector, is_onnx

    if is_onnx(run):
        if (method or "encoder") != "encoder" or steps is not None:
            raise ConfigError("an exported ONNX model scores by the encoder path only",
                              cli="--method / --steps: an exported ONNX model scores by the encoder path only")
        det = OnnxDetector(run)
        return ScoringSetup(det, det.preprocessor_, det.has_maps, det.batch_size, det.num_workers,
                            det.label_column, "./data", False, "onnx")
    det = AnoGAN.load(run, device=device, verbose=verbose)
    cfg = det.config_
    return ScoringSetup(det, det.preprocessor_, bool(det.scorer_.maps), cfg.score.batch_size, cfg.score.num_workers,
                        cfg.data.label_column, cfg.data.root, cfg.data.download, "torch")


def score_frame(chunk, res: dict):
    """The per-sample score table of one scored chunk: id, components, anomaly_score, threshold, is_anomaly
    (+ label when the input carries one); the one layout of every scoring path's output."""
    frame = pd.DataFrame({"id": chunk.ids, **{c: res[c] for c in score_columns(res)},
                          "threshold": res["threshold"], "is_anomaly": res["is_anomaly"]})
    if chunk.labels is not None:
        frame["label"] = chunk.labels
    return frame


def score_input(run: Path, input_path: str, out: Path, method: Optional[str] = None, steps: Optional[int] = None,
                batch_size: Optional[int] = None, num_workers: Optional[int] = None,
                save_reconstructions: Optional[Path] = None, top_k: int = 16, force: bool = False,
                device: str = "auto", verbose: bool = False, save_maps: Optional[Path] = None,
                overlays: Optional[Path] = None) -> ScoreResult:
    """Stream ``input_path`` through the run's detector (a run directory, or an exported ``.onnx`` file) into one
    CSV or Parquet table (by ``out``'s suffix) written to a temp name and renamed at the end. Runs with anomaly
    maps: ``save_maps`` gets one float32 ``.npy`` per image at its original size, ``overlays`` one PNG of
    image | heat map | overlay, both named by the image's id."""
    from anomgan.io import check_score_table, score_table_writer

    out = check_output(out, force, "output file")
    check_score_table(out)
    setup = scoring_setup(run, device, verbose, method, steps)
    det, pre = setup.detector, setup.preprocessor
    if (save_maps is not None or overlays is not None) and not setup.has_maps:
        raise OutputError("this run makes no anomaly maps (score.map_weights is empty)",
                          cli="--save-maps / --overlays: this run makes no anomaly maps (score.map_weights is empty)")
    bs = batch_size or setup.batch_size
    if bs < 1:
        raise ConfigError(f"batch_size must be >= 1, got {bs}", cli=f"--batch-size must be >= 1, got {bs}")
    if save_reconstructions is not None and (pre.kind != "image" or setup.backend != "torch"):
        raise OutputError("reconstructions are pictures of image runs scored from their run directory",
                          cli="--save-reconstructions applies to image runs scored from their run directory")
    workers = setup.num_workers if num_workers is None else num_workers
    chunks = iter_input(input_path, pre, bs, workers, setup.label_column, setup.data_root, setup.download)
    top = TopK(top_k) if save_reconstructions is not None else None
    n = flagged = 0
    threshold = float("nan")
    pending: list = []

    def raw_batches():
        for chunk in chunks:
            pending.append(chunk)
            yield chunk.x

    start = time.perf_counter()
    if setup.backend == "onnx":
        results = det.iter_scores(raw_batches(), batch_size=bs)
    else:
        results = det.iter_scores(raw_batches(), method, steps, total=count_input(input_path),
                                  keep_reconstructions=top is not None, batch_size=bs)
    with score_table_writer(out) as write:
        for res in results:
            chunk = pending.pop(0)
            frame = score_frame(chunk, res)
            write(frame)
            n += len(frame)
            flagged += int(res["is_anomaly"].sum())
            threshold = float(res["threshold"][0])
            if top is not None:
                top.push(res["anomaly_score"], chunk.ids, res["x"], res["x_hat"])
            if save_maps is not None or overlays is not None:
                _write_map_outputs(res["anomaly_map"], chunk, save_maps, overlays)
    seconds = time.perf_counter() - start
    if setup.backend == "torch":
        _keep_new_calibrations(det, run)
    written = []
    if top is not None and top.heap:
        from anomgan.evaluation.plots import reconstruction_grid

        save_reconstructions.mkdir(parents=True, exist_ok=True)
        items = top.items()
        path = save_reconstructions / "top_anomalies.png"
        reconstruction_grid(torch.stack([t[3] for t in items]), torch.stack([t[4] for t in items]), path,
                            pre.to_unit)
        atomic_write_text(save_reconstructions / "top_anomalies.csv",
                          pd.DataFrame({"rank": range(1, len(items) + 1), "id": [t[2] for t in items],
                                        "anomaly_score": [t[0] for t in items]}).to_csv(index=False))
        written.append(path)
    return ScoreResult(out, n, flagged, threshold, seconds, written)


def _write_map_outputs(maps: np.ndarray, chunk, save_maps: Optional[Path], overlays: Optional[Path]) -> None:
    from anomgan.evaluation.plots import overlay_panels, save_png

    ids = [str(i) for i in chunk.ids]
    if save_maps is not None:
        write_maps(original_size_maps(maps, chunk.sizes), ids, save_maps)
    if overlays is not None:
        for image, m, sample_id in zip(chunk.x, original_size_maps(maps, [im.shape[1:] for im in chunk.x]), ids):
            save_png(overlay_panels(image, m), overlays / Path(sample_id).with_suffix(".png"))


def _keep_new_calibrations(det: AnoGAN, run: Path) -> None:
    """A setting scored for the first time was calibrated on the run's normal-validation samples: store it in the
    run, so the next call (and its threshold) reads it instead of inverting those samples again."""
    saved = set(k.split(".")[1] for k in det.run_.scorer["state"] if k.startswith("calibrations."))
    if set(det.scorer_.calibrations) - saved:
        update_scorer(det.run_, det.scorer_)


# ---------------------------------------------------------------------------- evaluate


@dataclass
class EvaluationResult:
    report: pd.DataFrame  # one row per (anomalous class or 'all', component)
    scores: pd.DataFrame  # one row per test sample
    out: Optional[Path]
    pictures: list
    seconds: float
    threshold: float
    detector: Optional[AnoGAN] = None  # the run's detector, as loaded
    arrays: dict = field(default_factory=dict)  # per test sample: x, x_hat (images), anomaly_map (runs with maps)
    masks: Optional[list] = None  # ground-truth masks of the test samples (inspection layouts)
    dataset: Optional[str] = None


def score_test_split(det: AnoGAN, ds: Dataset, splits: Splits, method: Optional[str] = None,
                     steps: Optional[int] = None) -> tuple[pd.DataFrame, dict, float]:
    """Score the test split -> per-sample frame (target 1 = anomaly), raw arrays, seconds."""
    x = ds.x[splits.test]
    start = time.perf_counter()
    res = det.score_components(x, method, steps, keep_reconstructions=ds.kind == "image")
    seconds = time.perf_counter() - start
    frame = pd.DataFrame({"id": ds.ids[splits.test], "label": ds.y[splits.test] if ds.y is not None else "",
                          "target": splits.test_targets(ds), **{c: res[c] for c in score_columns(res)},
                          "threshold": res["threshold"], "is_anomaly": res["is_anomaly"]})
    if ds.masks is not None:  # inspection layouts: the class is the defect type (good = normal)
        frame.insert(2, "defect_type", frame["label"])
    return frame, res, seconds


def evaluate_run(run: Path, out: Optional[Path] = None, method: Optional[str] = None, steps: Optional[int] = None,
                 data_root: Optional[str] = None, force: bool = False, pictures: bool = True,
                 device: str = "auto", verbose: bool = False, save_maps: Optional[Path] = None) -> EvaluationResult:
    """Rebuild the run's test split (held-out normal + anomalous classes), score it, report metrics (and, for runs
    with anomaly maps on data with masks, pixel ROC-AUC and AUPRO per held-out class; ``save_maps``: one float32
    ``.npy`` per test image at its original size, named by its id)."""
    run = Path(run)
    if out is not None:
        out = check_output(out, force, "report")
    if save_maps is not None and save_maps.exists() and not save_maps.is_dir():
        raise OutputError(f"{save_maps} is a file, not a folder for maps")
    det = AnoGAN.load(run, device=device, verbose=verbose)
    cfg = det.config_
    ds, splits = run_data(det, data_root)
    if len(splits.test) == 0 or ds.y is None:
        raise DataError(f"{ds.name} has no labelled test split: the test set holds a single class, ROC-AUC is "
                        f"undefined (evaluate needs labelled data with anomalous classes)")
    frame, res, seconds = score_test_split(det, ds, splits, method, steps)
    _keep_new_calibrations(det, run)
    threshold = float(res["threshold"][0])
    report = evaluate_scores(frame, threshold)
    report.insert(0, "method", method or cfg.score.method)
    report.insert(0, "dataset", ds.name)
    report["score_seconds"] = seconds
    report["images_per_s"] = len(frame) / max(seconds, 1e-9)
    maps = None
    if "anomaly_map" in res:
        maps = original_size_maps(res["anomaly_map"], ds.sizes[splits.test] if ds.sizes is not None else None)
        if ds.masks is not None:
            report = add_pixel_metrics(report, frame, maps, list(ds.masks[splits.test]))
    if save_maps is not None:
        if maps is None:
            raise OutputError("this run makes no anomaly maps (score.map_weights is empty)",
                              cli="--save-maps: this run makes no anomaly maps (score.map_weights is empty)")
        write_maps(maps, frame["id"].astype(str).tolist(), save_maps)
    written: list = []
    if out is not None:
        atomic_write(out, lambda tmp: report.to_csv(tmp, index=False))
        stem = out.with_suffix("")
        atomic_write(Path(f"{stem}.scores.csv"), lambda tmp: frame.to_csv(tmp, index=False))
        if pictures:
            written = write_pictures(det, frame, res, threshold, stem)
            if "anomaly_map" in res:
                masks = list(ds.masks[splits.test]) if ds.masks is not None else None
                written += write_map_pictures(frame, res, masks, stem)
    arrays = {k: res[k] for k in ("x", "x_hat", "anomaly_map") if k in res}
    masks = list(ds.masks[splits.test]) if ds.masks is not None else None
    return EvaluationResult(report, frame, out, written, seconds, threshold, det, arrays, masks, ds.name)


def write_map_pictures(frame: pd.DataFrame, res: dict, masks: Optional[list], stem: Path) -> list:
    """Heat-map overlays (image | heat map | overlay | mask) of the top anomalies and of the anomalies scored most
    normal, at the model's resolution, one row per image."""
    from anomgan.evaluation.metrics import anomalies_by_score
    from anomgan.evaluation.plots import mask_at, overlay_panels, save_png

    order = anomalies_by_score(frame)
    images = ((res["x"] + 1) / 2).clamp(0, 1).numpy()
    size = images.shape[-2:]
    written = []
    for name, idx in (("top_anomalies_maps", order[:6]), ("most_normal_anomalies_maps", order[::-1][:6])):
        rows = []
        for i in idx:
            mask = mask_at(masks[i], size) if masks is not None and masks[i] is not None else None
            rows.append(overlay_panels(images[i], res["anomaly_map"][i], mask))
        if rows:
            width = max(r.shape[1] for r in rows)
            rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
            path = Path(f"{stem}.{name}.png")
            save_png(np.concatenate(rows), path)
            written.append(path)
    return written


def original_size_maps(maps: np.ndarray, sizes: Optional[np.ndarray]) -> list:
    """(N, S, S) model-resolution maps -> one float32 (H_i, W_i) map per image at its original size (bilinear)."""
    import torch.nn.functional as F

    if sizes is None:
        return list(maps.astype(np.float32))
    out = []
    for m, (h, w) in zip(maps, sizes):
        t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
        out.append(F.interpolate(t, size=(int(h), int(w)), mode="bilinear", align_corners=False)[0, 0].numpy())
    return out


def add_pixel_metrics(report: pd.DataFrame, frame: pd.DataFrame, maps: list, masks: list) -> pd.DataFrame:
    """pixel_roc_auc and aupro on the anomaly_score rows, per held-out class (its images and the normal ones)."""
    from anomgan.evaluation.metrics import held_out_groups
    from anomgan.evaluation.pixel import aupro, pixel_roc_auc

    groups = dict(held_out_groups(frame))
    have = np.array([m is not None for m in masks])
    report = report.assign(pixel_roc_auc=np.nan, aupro=np.nan)
    for i, row in report[report.component == "anomaly_score"].iterrows():
        keep = have & groups[row.anomalous_class]
        sel_maps, sel_masks = [maps[j] for j in np.flatnonzero(keep)], [masks[j] for j in np.flatnonzero(keep)]
        if not any(m.any() for m in sel_masks):
            continue
        report.loc[i, "pixel_roc_auc"] = pixel_roc_auc(sel_maps, sel_masks)
        report.loc[i, "aupro"] = aupro(sel_maps, sel_masks)
    return report


def write_maps(maps: list, ids: list, folder: Path) -> None:
    """``folder/<id with its suffix replaced by .npy>``: float32 (H, W) per image, each written atomically."""
    for m, sample_id in zip(maps, ids):
        path = folder / Path(sample_id).with_suffix(".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp, m=m: np.save(open(tmp, "wb"), m.astype(np.float32)))


def write_pictures(det: AnoGAN, frame: pd.DataFrame, res: dict, threshold: float, stem: Path) -> list:
    """ROC curves, score histogram, and (images) the top anomalies and the most normal-looking anomalies
    as rows of x | G(z*) | residual map."""
    from anomgan.evaluation.plots import plot_histogram, plot_roc, plot_roc_per_class, reconstruction_grid

    paths = [Path(f"{stem}.roc.png"), Path(f"{stem}.hist.png"), Path(f"{stem}.roc_per_class.png")]
    plot_roc(frame, paths[0])
    plot_histogram(frame, threshold, paths[1])
    plot_roc_per_class(frame, paths[2])
    if "x_hat" in res:
        from anomgan.evaluation.metrics import anomalies_by_score

        order = anomalies_by_score(frame)
        for name, idx in (("top_anomalies", order[:12]), ("most_normal_anomalies", order[::-1][:12])):
            path = Path(f"{stem}.{name}.png")
            idx = torch.as_tensor(np.ascontiguousarray(idx))
            reconstruction_grid(res["x"][idx], res["x_hat"][idx], path, det.preprocessor_.to_unit)
            paths.append(path)
    return paths


# ---------------------------------------------------------------------------- generate


def generate_samples(run: Path, n: int, out: Path, seed: int = 0, force: bool = False, device: str = "auto") -> Path:
    """A PNG grid (images) or a CSV in source units (tables) of ``n`` generator samples."""
    if n < 1:
        raise OutputError(f"n must be >= 1, got {n}", cli=f"--n must be >= 1, got {n}")
    out = check_output(out, force, "output file")
    det = AnoGAN.load(run, device=device)
    x = det.generate(n, seed)
    if det.preprocessor_.kind == "image":
        from torchvision.utils import save_image

        nrow = max(1, int(np.ceil(np.sqrt(n))))
        atomic_write(out, lambda tmp: save_image(x, tmp, nrow=nrow, padding=1, format="png"))
    else:
        pre = det.preprocessor_
        values = x.numpy()
        frame = pd.DataFrame(values, columns=pre.feature_names or [f"f{i}" for i in range(values.shape[1])])
        atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    return out
