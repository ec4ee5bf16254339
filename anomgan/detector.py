"""``AnoGAN``: the scikit-learn-style estimator tying data transform, training, inversion and calibration.

Score direction (PyOD's, used everywhere in anomgan): higher ``anomaly_score`` = more anomalous,
``predict`` returns 1 for anomalies and 0 for normal samples.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch

from anomgan.config import BANK_COMPONENTS, COMPONENTS, Config, ScoreConfig, config_from_dict, save_config
from anomgan.data.preprocess import Preprocessor, fit_preprocessor
from anomgan.errors import ConfigError, DataError, NotFittedError, OutputError, RunError
from anomgan.io import atomic_write_text
from anomgan.progress import ProgressBar
from anomgan.scoring.calibration import Calibration, calibration_key
from anomgan.scoring.inversion import invert_latent, per_sample_feature_residual, per_sample_residual
from anomgan.scoring.memory import GaussianFit, bank_fingerprint, bank_indices, fit_gaussian, knn_distance, mahalanobis
from anomgan.training.checkpoint import CHECKPOINT, load_checkpoint
from anomgan.training.trainer import Trainer, build_seeded_models, dist_info, sample_grid

CALIBRATION_FILE = "calibration.json"
MAX_CALIBRATION = 2000  # normal-validation samples kept in the run for calibration


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}' but no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


def model_args_for(cfg: Config, pre: Preprocessor) -> dict:
    args = {"kind": pre.kind, "z_dim": cfg.model.z_dim, "width": cfg.model.width, "depth": cfg.model.depth,
            "spectral_norm": cfg.model.spectral_norm}
    if pre.kind == "image":
        args.update(channels=pre.channels, image_size=pre.image_size)
    else:
        args.update(n_features=pre.in_shape[0])
    return args


def _fits_half(t: torch.Tensor) -> bool:
    return bool(t.abs().max().item() < 6e4) if t.numel() else True


def _as_config(config) -> Config:
    if config is None:
        return Config()
    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return config_from_dict(config)
    raise ConfigError(f"config must be a Config, a dict or None, got {type(config).__name__}")


class AnoGAN:
    """GAN anomaly detector trained on normal data only.

    Parameters are stored unchanged; everything learned ends in ``_``. ``run_dir`` (optional) holds
    checkpoints, metrics, pictures and calibration so that training can resume and runs can be shared.
    """

    def __init__(self, config: Config | dict | None = None, run_dir: str | Path | None = None,
                 verbose: bool = False):
        self.config = config
        self.run_dir = run_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ sklearn plumbing
    def get_params(self, deep: bool = True) -> dict:
        return {"config": self.config, "run_dir": self.run_dir, "verbose": self.verbose}

    def set_params(self, **params) -> "AnoGAN":
        for k, v in params.items():
            if k not in self.get_params():
                raise ConfigError(f"unknown parameter '{k}' for AnoGAN")
            setattr(self, k, v)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "generator_"):
            raise NotFittedError("this AnoGAN is not fitted yet: call fit(X) or AnoGAN.load(run_dir) first")

    # ------------------------------------------------------------------ training
    def fit(self, X: np.ndarray, y=None, X_val: Optional[np.ndarray] = None, resume: bool = False,
            feature_names: Optional[list] = None) -> "AnoGAN":
        """Train on normal samples ``X``: images (N, C, H, W) in [0, 1] or vectors (N, D).

        ``X_val`` (normal only) calibrates the score; if omitted, ``data.val_fraction`` of X is held out.
        ``resume=True`` continues the checkpoint in ``run_dir``.
        """
        cfg = _as_config(self.config)
        X = np.asarray(X, dtype=np.float32)
        kind = "tabular" if X.ndim == 2 else "image"
        if X.ndim not in (2, 4):
            raise DataError(f"X must be (N, D) vectors or (N, C, H, W) images, got shape {X.shape}")
        if X_val is None:
            rng = np.random.default_rng(cfg.train.seed)
            perm = rng.permutation(len(X))
            n_val = max(1, int(round(cfg.data.val_fraction * len(X))))
            X, X_val = X[perm[n_val:]], X[perm[:n_val]]
        if len(X) < 2:
            raise DataError(f"need at least 2 normal training samples, got {len(X)}")
        run_dir = Path(self.run_dir) if self.run_dir is not None else None
        ckpt = None
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            if (run_dir / CHECKPOINT).exists():
                if not resume:
                    raise OutputError(f"{run_dir} already holds a run (use --resume to continue or --force to restart)")
                ckpt = load_checkpoint(run_dir / CHECKPOINT)
            if dist_info()[0] == 0:
                save_config(cfg, run_dir / "config.yaml")
        device = resolve_device(cfg.train.device)
        if ckpt is not None:
            pre = Preprocessor.from_dict(ckpt["preprocessor"])
        else:
            pre = fit_preprocessor(X, kind, cfg.data.image_size, cfg.data.channels, cfg.data.resize,
                                   cfg.data.allow_resize, feature_names)
        x_train = pre.transform(pre.check(X, "training data"))
        x_val = pre.transform(pre.check(np.asarray(X_val, dtype=np.float32), "validation data"))[:MAX_CALIBRATION]
        model_args = model_args_for(cfg, pre)
        if ckpt is not None and ckpt["model_args"] != model_args:
            raise RunError(f"{run_dir}: checkpoint was trained with model {ckpt['model_args']}, the config asks for "
                           f"{model_args}; use the run's own config or --force to restart")
        self.feature_bank_, self.layer_gauss_ = None, None  # a refit must not checkpoint the previous model's bank
        extra = lambda: {"preprocessor": pre.to_dict(), "calibration_x": x_val.cpu(),  # noqa: E731
                         **self._bank_state()}
        trainer = Trainer(cfg, model_args, x_train, device, run_dir, self.verbose,
                          on_epoch=self._sample_callback(pre), extra_state=extra)
        if ckpt is not None:
            trainer.load_state_dict(ckpt)
        start = time.perf_counter()
        trainer.run()
        self._adopt(cfg, pre, model_args, trainer.generator_ema, trainer.discriminator, trainer.encoder,
                    x_val.cpu(), trainer.state.history, device)
        self.train_seconds_ = time.perf_counter() - start
        if trainer.rank == 0:
            self._build_bank(x_train)
            self.calibrate()
            if run_dir is not None:
                if pre.kind == "image":
                    sample_grid(self.generator_, trainer.fixed_z, run_dir / "samples.png", pre.to_unit)
                trainer.state.phase = "done"
                trainer.checkpoint()
        return self

    def _sample_callback(self, pre: Preprocessor):
        def on_epoch(trainer: Trainer) -> None:
            e = trainer.state.epoch
            if trainer.run_dir is None or trainer.rank != 0 or pre.kind != "image":
                return
            if e % trainer.cfg.train.sample_every == 0 or e == trainer.cfg.train.epochs:
                (trainer.run_dir / "samples").mkdir(exist_ok=True)
                sample_grid(trainer.generator_ema, trainer.fixed_z, trainer.run_dir / "samples" / f"epoch_{e:04d}.png",
                            pre.to_unit)

        return on_epoch

    def _adopt(self, cfg, pre, model_args, generator, discriminator, encoder, x_val, history, device) -> None:
        self.config_ = cfg
        self.preprocessor_ = pre
        self.model_args_ = model_args
        self.device_ = device
        self.generator_ = generator.eval().requires_grad_(False)
        self.discriminator_ = discriminator.eval().requires_grad_(False)
        self.encoder_ = encoder.eval().requires_grad_(False)
        self.calibration_x_ = x_val
        self.history_ = history
        self.feature_bank_: Optional[torch.Tensor] = None  # D features of normal-training samples (feature_knn)
        self.layer_gauss_: Optional[list] = None  # one GaussianFit per D layer, fitted to the same samples (layer_maha)
        self._bank_memo: Optional[tuple] = None  # (bank, {name: value}): what _bank_derived computed from that bank
        self.calibrations_: dict = {}  # per inversion setting; a refit must not reuse the old model's

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write a self-contained run directory (checkpoint + config) at ``path``."""
        self._check_fitted()
        from anomgan.training.checkpoint import save_checkpoint

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_checkpoint({
            "model_args": self.model_args_, "config": self.config_.to_dict(), "phase": "done",
            "epoch": self.config_.train.epochs, "encoder_epoch": self.config_.encoder.epochs, "step": 0,
            "history": self.history_, "generator": self.generator_.state_dict(),
            "generator_ema": self.generator_.state_dict(), "discriminator": self.discriminator_.state_dict(),
            "encoder": self.encoder_.state_dict(), "preprocessor": self.preprocessor_.to_dict(),
            "calibration_x": self.calibration_x_, **self._bank_state(),
        }, path / CHECKPOINT)
        save_config(self.config_, path / "config.yaml")
        self._save_calibrations(path)
        return path

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", verbose: bool = False) -> "AnoGAN":
        """Rebuild from a run directory; loading never executes code from it (weights_only)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise RunError(f"run directory not found: {run_dir}")
        ckpt = load_checkpoint(run_dir / CHECKPOINT)
        if ckpt.get("phase") != "done":
            raise RunError(f"{run_dir}: training is not finished (phase '{ckpt.get('phase')}', epoch "
                           f"{ckpt.get('epoch')}); continue it with 'anomgan train --resume --out {run_dir}'")
        try:
            cfg = config_from_dict(ckpt["config"])
            pre = Preprocessor.from_dict(ckpt["preprocessor"])
            generator, discriminator, encoder = build_seeded_models(ckpt["model_args"], 0)
            generator.load_state_dict(ckpt["generator_ema"])
            discriminator.load_state_dict(ckpt["discriminator"])
            encoder.load_state_dict(ckpt["encoder"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise RunError(f"{run_dir}: checkpoint does not match its architecture ({str(exc).splitlines()[0][:160]})") \
                from None
        cfg.train.device = device
        dev = resolve_device(device)
        det = cls(config=cfg, run_dir=run_dir, verbose=verbose)
        det._adopt(cfg, pre, ckpt["model_args"], generator.to(dev), discriminator.to(dev), encoder.to(dev),
                   ckpt["calibration_x"], ckpt["history"], dev)
        bank = ckpt.get("feature_bank")  # absent in runs trained before feature_knn existed
        if isinstance(bank, torch.Tensor) and bank.ndim == 2 and len(bank):
            det.feature_bank_ = bank.to(dev, torch.float32)
            gauss = ckpt.get("feature_gauss")  # absent in runs trained before feature_maha: fitted on first use
            if isinstance(gauss, dict) and gauss.get("mean") is not None and gauss["mean"].shape == bank.shape[1:]:
                det._bank_memo = (det.feature_bank_, {"gaussian": GaussianFit(
                    mean=gauss["mean"].to(dev, torch.float32), precision=gauss["precision"].to(dev, torch.float32))})
            layers = ckpt.get("layer_gauss")  # absent in runs saved before layer_maha: fit_feature_bank adds it
            if isinstance(layers, list) and layers and all(isinstance(g, dict) for g in layers):
                det.layer_gauss_ = [GaussianFit(mean=g["mean"].to(dev, torch.float32),
                                                precision=g["precision"].to(dev, torch.float32)) for g in layers]
        det.calibrations_ = det._load_calibrations(run_dir)
        return det

    # ------------------------------------------------------------------ feature bank (feature_knn, maha, layers)
    def _build_bank(self, x: torch.Tensor) -> None:
        """From up to ``score.bank_size`` preprocessed normal-training samples: their D features (the bank of
        ``feature_knn`` / ``feature_maha``, and its Gaussian) and one Gaussian per D layer of their coarse
        activations (``layer_maha``). Nothing with size 0; no Gaussian from fewer than 2 samples."""
        self.feature_bank_, self.layer_gauss_ = None, None
        s = self.config_.score
        if s.bank_size == 0:
            return
        idx = bank_indices(len(x), s.bank_size, self.config_.train.seed)
        parts, layer_parts = [], []
        with torch.no_grad():
            for i in range(0, len(idx), s.batch_size):
                _, f, layers = self.discriminator_.forward_with_layers(x[idx[i:i + s.batch_size]].to(self.device_))
                parts.append(f.float())
                layer_parts.append([h.float() for h in layers])
        bank = torch.cat(parts)
        # kept at half precision (half the run's size) unless a feature would overflow it; rounded here already,
        # so a detector scores the same before and after save/load
        self.feature_bank_ = bank.half().float() if _fits_half(bank) else bank
        self._gaussian()
        if len(bank) >= 2:
            self.layer_gauss_ = [fit_gaussian(torch.cat(layer)) for layer in zip(*layer_parts)]

    def _bank_state(self) -> dict:
        bank = getattr(self, "feature_bank_", None)
        if bank is None:
            return {}
        state = {"feature_bank": (bank.half() if _fits_half(bank) else bank).cpu()}
        gauss = self._gaussian()
        if gauss is not None:  # float32: rounding a precision matrix can break its positive definiteness
            state["feature_gauss"] = {"mean": gauss.mean.cpu(), "precision": gauss.precision.cpu()}
        if self.layer_gauss_ is not None:
            state["layer_gauss"] = [{"mean": g.mean.cpu(), "precision": g.precision.cpu()} for g in self.layer_gauss_]
        return state

    def _gaussian(self) -> Optional[GaussianFit]:
        """The ``feature_maha`` Gaussian of the current bank (None without a bank of 2+ rows), fitted once per bank."""
        bank = self.feature_bank_
        if bank is None or len(bank) < 2:
            return None
        return self._bank_derived("gaussian", fit_gaussian)

    def _bank_derived(self, name: str, compute):
        """``compute(bank)`` for the current bank, computed once per bank object (a new bank starts afresh)."""
        bank = self.feature_bank_
        if self._bank_memo is None or self._bank_memo[0] is not bank:
            self._bank_memo = (bank, {})
        cache = self._bank_memo[1]
        if name not in cache:
            cache[name] = compute(bank)
        return cache[name]

    def bank_outdated(self) -> bool:
        """True when the run lacks its feature bank or a part fitted from it (saved before that part existed, or
        with ``score.bank_size`` 0): ``fit_feature_bank`` builds them from normal training samples."""
        return self.feature_bank_ is None or self.layer_gauss_ is None

    def fit_feature_bank(self, X: np.ndarray) -> "AnoGAN":
        """(Re)build the memory bank of ``feature_knn`` / ``feature_maha`` (and its Gaussian) from normal training
        samples ``X`` (source units), e.g. for a run trained before the bank existed. Cached calibrations are
        dropped; ``save`` keeps the bank."""
        self._check_fitted()
        x = self.preprocessor_.transform(self.preprocessor_.check(np.asarray(X, dtype=np.float32), "training data"))
        self._build_bank(x)
        self.calibrations_ = {}
        return self

    def _load_calibrations(self, run_dir: Path) -> dict:
        path = run_dir / CALIBRATION_FILE
        if not path.is_file():
            return {}
        try:
            raw = json.loads(path.read_text())
            return {k: Calibration(val_components=v) for k, v in raw.items()}
        except (json.JSONDecodeError, AttributeError, TypeError):
            return {}  # a damaged cache is recomputed from the checkpoint's validation data

    def _save_calibrations(self, run_dir: Path) -> None:
        data = {k: c.val_components for k, c in self.calibrations_.items()}
        atomic_write_text(run_dir / CALIBRATION_FILE, json.dumps(data))

    # ------------------------------------------------------------------ scoring
    def _score_config(self, method: Optional[str] = None, steps: Optional[int] = None) -> ScoreConfig:
        import dataclasses

        s = dataclasses.replace(self.config_.score, weights=dict(self.config_.score.weights))
        if method is not None:
            if method not in ("encoder", "iterative", "hybrid"):
                raise ConfigError(f"unknown method '{method}' (use encoder, iterative or hybrid)")
            s.method = method
        if steps is not None:
            if steps < 0:
                raise ConfigError(f"--steps must be >= 0, got {steps}")
            if s.method == "hybrid":
                s.refine_steps = steps
            else:
                s.steps = max(1, steps)
        return s

    def calibrate(self, method: Optional[str] = None, steps: Optional[int] = None) -> Calibration:
        """Components of the stored normal-validation samples for this inversion setting (cached in the run)."""
        self._check_fitted()
        s = self._score_config(method, steps)
        key = calibration_key(s, self._bank_tag())
        cached = self.calibrations_.get(key)
        if cached is None or set(cached.val_components) != set(self._available_components()):
            comps = self._components(self.calibration_x_, s, s.batch_size)
            self.calibrations_[key] = Calibration(val_components={c: comps[c].tolist() for c in
                                                                  self._available_components()})
            if self.run_dir is not None and Path(self.run_dir).is_dir():
                self._save_calibrations(Path(self.run_dir))
        return self.calibrations_[key]

    def _bank_tag(self) -> str:
        """Fingerprint of the current bank ("" without one), remembered per bank object."""
        if self.feature_bank_ is None:
            return ""
        return self._bank_derived("fingerprint", bank_fingerprint)

    def _available_components(self) -> tuple:
        bank = self.feature_bank_
        if bank is None:
            return tuple(c for c in COMPONENTS if c not in BANK_COMPONENTS)
        return tuple(c for c in COMPONENTS if (c != "feature_maha" or len(bank) >= 2)
                     and (c != "layer_maha" or self.layer_gauss_ is not None))

    def _components_batch(self, x: torch.Tensor, s: ScoreConfig, keep_reconstructions: bool = False) -> dict:
        """Components of one preprocessed batch (B, ...) on the model's device -> dict of (B,) arrays
        (+ ``x_hat`` on the CPU when asked)."""
        x = x.to(self.device_)
        amp = s.amp and self.device_.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext():
            with torch.no_grad():  # one D pass serves d_score, inversion and layer_maha
                if self.layer_gauss_ is not None:
                    d_out, f_x, layers = self.discriminator_.forward_with_layers(x)
                else:
                    (d_out, f_x), layers = self.discriminator_.forward_with_features(x), None
            res = invert_latent(x, self.generator_, self.discriminator_, self.encoder_, s.method, steps=s.steps,
                                refine_steps=s.refine_steps, lr=s.lr, lam=s.lam, restarts=s.restarts,
                                norm=s.residual_norm, seed=self.config_.train.seed, z_dim=self.model_args_["z_dim"],
                                f_x=f_x)
            with torch.no_grad():
                f_hat = self.discriminator_.features(res.x_hat)
        x_hat = res.x_hat.float()
        out = {
            "d_score": (-d_out).float().cpu().numpy(),  # D's verdict that x is NOT real
            "residual": per_sample_residual(x, x_hat, s.residual_norm).cpu().numpy(),
            "feature_residual": per_sample_feature_residual(f_x.float(), f_hat.float()).cpu().numpy(),
        }
        if self.feature_bank_ is not None:
            out["feature_knn"] = knn_distance(f_x.float(), self.feature_bank_, s.knn_k).cpu().numpy()
            gauss = self._gaussian()
            if gauss is not None:
                out["feature_maha"] = mahalanobis(f_x.float(), gauss).cpu().numpy()
        if layers is not None:  # squared distance over dimension: its mean under each layer's Gaussian, so layers add
            out["layer_maha"] = sum(mahalanobis(h.float(), g) ** 2 / h.shape[1]
                                    for h, g in zip(layers, self.layer_gauss_)).cpu().numpy()
        if keep_reconstructions:
            out["x_hat"] = x_hat.cpu()
        return out

    def _components(self, x: torch.Tensor, s: ScoreConfig, batch_size: int, keep_reconstructions: bool = False,
                    bar: Optional[ProgressBar] = None) -> dict:
        """Components of a preprocessed tensor, ``batch_size`` samples at a time -> dict of (N,) arrays."""
        parts = []
        for i in range(0, len(x), batch_size):
            parts.append(self._components_batch(x[i:i + batch_size], s, keep_reconstructions))
            if bar is not None:
                bar.update(len(x[i:i + batch_size]))
        out = {c: np.concatenate([p[c] for p in parts]) for c in self._available_components()}
        if keep_reconstructions:
            out["x_hat"] = torch.cat([p["x_hat"] for p in parts])
        return out

    def iter_scores(self, batches: Iterable[np.ndarray], method: Optional[str] = None, steps: Optional[int] = None,
                    total: Optional[int] = None, keep_reconstructions: bool = False,
                    batch_size: Optional[int] = None) -> Iterator[dict]:
        """Score an iterable of raw batches (source units); yields one dict per input batch with (B,) arrays:
        the components, ``anomaly_score``, ``threshold``, ``is_anomaly`` (+ model-space ``x``/``x_hat`` if asked).

        Inputs larger than ``batch_size`` are processed in sub-batches, so memory stays bounded.
        """
        self._check_fitted()
        s = self._score_config(method, steps)
        bs = batch_size or s.batch_size
        cal = self.calibrate(s.method, steps)
        threshold = cal.threshold(s)
        with ProgressBar(f"score ({s.method})", total, enabled=self.verbose) as bar:
            for raw in batches:
                x = self.preprocessor_.transform(np.asarray(raw, dtype=np.float32))
                out = self._components(x, s, bs, keep_reconstructions, bar)
                out["anomaly_score"] = cal.combine(out, s)
                out["threshold"] = np.full(len(x), threshold)
                out["is_anomaly"] = (out["anomaly_score"] > threshold).astype(np.int64)
                if keep_reconstructions:
                    out["x"] = x
                yield out

    def score_components(self, X: np.ndarray, method: Optional[str] = None, steps: Optional[int] = None,
                         keep_reconstructions: bool = False) -> dict:
        """All components for ``X`` (source units) -> dict of (N,) arrays."""
        if len(X) == 0:
            raise DataError("no samples to score")
        return next(self.iter_scores([X], method, steps, total=len(X), keep_reconstructions=keep_reconstructions))

    def recombine(self, components: dict, weights: dict, method: Optional[str] = None,
                  steps: Optional[int] = None) -> np.ndarray:
        """``anomaly_score`` of components already computed (``score_components``) under other ``weights``,
        calibrated on the same normal-validation values: re-weighting without inverting again."""
        s = self._score_config(method, steps)
        s.weights = dict(weights)
        return self.calibrate(s.method, steps).combine(components, s)

    def score_samples(self, X: np.ndarray, method: Optional[str] = None) -> np.ndarray:
        """``anomaly_score`` (N,): higher = more anomalous."""
        return self.score_components(X, method)["anomaly_score"]

    def threshold(self, method: Optional[str] = None, steps: Optional[int] = None) -> float:
        s = self._score_config(method, steps)
        return self.calibrate(s.method, steps).threshold(s)

    def decision_function(self, X: np.ndarray, method: Optional[str] = None) -> np.ndarray:
        """``anomaly_score - threshold``: > 0 means flagged as anomalous."""
        return self.score_samples(X, method) - self.threshold(method)

    def predict(self, X: np.ndarray, method: Optional[str] = None) -> np.ndarray:
        """1 = anomaly, 0 = normal."""
        return (self.decision_function(X, method) > 0).astype(np.int64)

    def generate(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` samples from the EMA generator, in source units ([0, 1] images or standardised vectors)."""
        self._check_fitted()
        z = torch.randn(n, self.model_args_["z_dim"], generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            x = self.generator_(z.to(self.device_)).cpu()
        return self.preprocessor_.to_unit(x) if self.preprocessor_.kind == "image" else x
