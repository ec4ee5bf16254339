"""From normal samples to a finished ``Scorer``: preprocessing, GAN + encoder training, normal statistics,
calibration. Writes no files: the caller saves what ``on_epoch`` hands it (the run layer) or nothing (the
estimator)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from anomgan.components import active_components
from anomgan.config import Config, weights_for
from anomgan.data.preprocess import Preprocessor, fit_preprocessor
from anomgan.errors import ConfigError, DataError, RunError
from anomgan.model import Inversion, Scorer, ScorerSpec
from anomgan.training.normal_stats import calibrate, fit_normal_statistics
from anomgan.training.trainer import Trainer, dist_info

MAX_CALIBRATION = 2000  # normal-validation samples kept in the scorer for calibration


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}' but no CUDA device is available (use cpu or auto)",
                          cli=f"--device {name}: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


def model_args_for(cfg: Config, pre: Preprocessor) -> dict:
    args = {"kind": pre.kind, "z_dim": cfg.model.z_dim, "width": cfg.model.width, "depth": cfg.model.depth,
            "spectral_norm": cfg.model.spectral_norm}
    if pre.kind == "image":
        args.update(channels=pre.channels, image_size=pre.image_size)
    else:
        args.update(n_features=pre.in_shape[0])
    if cfg.model.encoder_trunk != "own":  # absent = own, as in runs saved before the key existed
        args["encoder_trunk"] = cfg.model.encoder_trunk
    return args


def inversion_for(cfg: Config, method: Optional[str] = None, steps: Optional[int] = None) -> Inversion:
    """The config's inversion, with ``method`` / ``steps`` (iterative steps or hybrid refinement steps) changed."""
    s = cfg.score
    method = method or s.method
    if method not in ("encoder", "iterative", "hybrid"):
        raise ConfigError(f"unknown method '{method}' (use encoder, iterative or hybrid)")
    if steps is not None and steps < 0:
        raise ConfigError(f"steps must be >= 0, got {steps}", cli=f"--steps must be >= 0, got {steps}")
    refine = steps if (steps is not None and method == "hybrid") else s.refine_steps
    iters = max(1, steps) if (steps is not None and method == "iterative") else s.steps
    return Inversion(method=method, steps=iters, refine_steps=refine, lr=s.lr, lam=s.lam, restarts=s.restarts)


def scorer_spec(cfg: Config, pre: Preprocessor, model_args: dict, extra_components=()) -> ScorerSpec:
    s = cfg.score
    inv = inversion_for(cfg)
    weights = weights_for(s, pre.kind)
    if s.combination == "anogan":  # (1 - lam) * residual + lam * feature_residual, whatever the weights
        extra_components = (*extra_components, "residual", "feature_residual")
    return ScorerSpec(model_args=model_args, preprocess=pre.to_dict(),
                      components=list(active_components(weights, extra_components)),
                      weights={k: float(v) for k, v in weights.items() if v},
                      combination=s.combination, threshold_quantile=s.threshold_quantile,
                      residual_norm=s.residual_norm, knn_k=s.knn_k, lam=s.lam, seed=cfg.train.seed, amp=s.amp,
                      inversion=inv.__dict__.copy(), dtype="float64" if pre.kind == "tabular" else "float32",
                      maps=[m for m, w in s.map_weights.items() if w], map_topk=s.map_topk,
                      map_layers=list(s.map_layers),
                      map_weights={m: float(w) for m, w in s.map_weights.items() if w})


@dataclass
class FitResult:
    scorer: Optional[Scorer]  # None on ranks other than 0
    trainer: Trainer
    preprocessor: Preprocessor
    seconds: float


def model_space(pre: Preprocessor, x_train: np.ndarray, x_val: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal training and calibration samples (source units) as training and ``build_scorer`` take them: each
    checked against ``pre``, transformed, the validation samples cut to the first ``MAX_CALIBRATION``."""
    xt = pre.transform(pre.check(x_train, "training data"))
    xv = pre.transform(pre.check(np.asarray(x_val, dtype=np.float32), "validation data"))[:MAX_CALIBRATION]
    return xt, xv


def fit_detector(cfg: Config, x_train: np.ndarray, x_val: np.ndarray, feature_names: Optional[list] = None,
                 resume: Optional[dict] = None, on_epoch: Optional[Callable[[Trainer], None]] = None,
                 verbose: bool = False, extra_components=()) -> FitResult:
    """Train on normal ``x_train`` (source units: (N, C, H, W) in [0, 1] or (N, D)), calibrate on normal ``x_val``.

    ``resume``: a trainer state (``RunFile.training_state()``) to continue from. ``extra_components`` are computed
    and stored beside the weighted ones (studies; they weigh 0 in ``anomaly_score``).
    """
    start = time.perf_counter()
    kind = "tabular" if x_train.ndim == 2 else "image"
    cfg.score.weights = weights_for(cfg.score, kind)  # unset weights: the kind's defaults, recorded in the config
    if len(x_train) < 2:
        raise DataError(f"need at least 2 normal training samples, got {len(x_train)}")
    device = resolve_device(cfg.train.device)
    if resume is not None and resume.get("preprocess"):
        pre = Preprocessor.from_dict(resume["preprocess"])
    else:
        pre = fit_preprocessor(x_train, kind, cfg.data.image_size, cfg.data.channels, cfg.data.resize,
                               cfg.data.allow_resize, feature_names)
    xt, xv = model_space(pre, x_train, x_val)
    model_args = model_args_for(cfg, pre)
    if pre.kind != "image" and any(cfg.score.map_weights.values()):
        raise ConfigError("score.map_weights: anomaly maps need images, this data is a table")
    if pre.kind == "image" and cfg.score.map_weights.get("layer_maha_map"):
        n_layers = int(np.log2(pre.image_size)) - 1  # the critic's LeakyReLU outputs, 4x4 the deepest
        bad = [i for i in cfg.score.map_layers if not -n_layers <= i < n_layers]
        if bad:
            raise ConfigError(f"score.map_layers: {bad} out of range for a {pre.image_size}-px critic of {n_layers} "
                              f"layers (use 0..{n_layers - 1} or -1..-{n_layers})")
    if resume is not None and resume["model_args"] != model_args:
        raise RunError(f"the run was trained with model {resume['model_args']}, the config asks for {model_args}; "
                       f"use the run's own config or start over (force=True)",
                       cli=f"the run was trained with model {resume['model_args']}, the config asks for "
                           f"{model_args}; use the run's own config or --force to start over")
    trainer = Trainer(cfg, model_args, xt, device, verbose, on_epoch=on_epoch, preprocess=pre.to_dict())
    if resume is not None:
        trainer.load_state_dict(resume)
    trainer.run()
    scorer = None
    if dist_info()[0] == 0:
        scorer = build_scorer(cfg, pre, model_args, trainer.scorer_networks(), xt, xv, device, extra_components)
    return FitResult(scorer, trainer, pre, time.perf_counter() - start)


def build_scorer(cfg: Config, pre: Preprocessor, model_args: dict, networks: tuple, x_train: torch.Tensor,
                 x_val: torch.Tensor, device: torch.device, extra_components=()) -> Scorer:
    """A scorer with the weights of ``networks`` (generator, discriminator, encoder) and ``cfg``'s score settings:
    normal statistics fitted from ``x_train``, calibrated on ``x_val`` (both model space) for the config's
    inversion and the encoder path."""
    scorer = Scorer(scorer_spec(cfg, pre, model_args, extra_components))
    for module, weights in zip((scorer.generator, scorer.discriminator, scorer.encoder), networks):
        module.load_state_dict(weights.state_dict())
    scorer = scorer.to(device)
    s = cfg.score
    fit_normal_statistics(scorer, x_train, s.bank_size, cfg.train.seed, s.batch_size, coreset_size=s.coreset_size)
    return calibrate(scorer, x_val, [scorer.default_inversion(), Inversion("encoder")], s.batch_size)


def rescore_with(scorer: Scorer, cfg: Config, x_train: np.ndarray, x_val: np.ndarray, extra_components=()) -> Scorer:
    """A new scorer with ``scorer``'s networks and preprocessing and ``cfg``'s score settings (components,
    weights, bank, threshold): its normal statistics fitted from ``x_train``, calibrated on ``x_val`` (source
    units). The networks are not retrained: how studies compare score settings on the same trained models."""
    pre = Preprocessor.from_dict(scorer.spec.preprocess)
    xt, xv = model_space(pre, x_train, x_val)
    networks = (scorer.generator, scorer.discriminator, scorer.encoder)
    return build_scorer(cfg, pre, scorer.spec.model_args, networks, xt, xv, scorer.device, extra_components)
