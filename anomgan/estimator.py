"""``AnoGAN``: a scikit-learn outlier detector around the ``Scorer`` module.

scikit-learn's directions in its methods: ``score_samples`` higher = more normal, ``decision_function`` < 0 =
outlier (``score_samples - offset_``), ``predict`` -1 = outlier / +1 = inlier. The project's direction lives in
one method, ``anomaly_score`` (higher = more anomalous), which the CLI and the CSVs use; the three scikit-learn
methods are derived from it here and nowhere else.

The constructor stores its arguments unchanged; ``fit`` resolves them into a ``Config`` (``config`` first, then
every flat parameter that is not None), trains, and writes no files: ``save(dir)`` / ``AnoGAN.load(dir)``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from anomgan.config import Config, build_config, config_from_dict, with_values
from anomgan.data.preprocess import Preprocessor
from anomgan.errors import ConfigError, DataError
from anomgan.model import Scorer
from anomgan.progress import ProgressBar
from anomgan.scoring.parallel import scoring_threads, shared_threads, split_and_score


def _as_config(config) -> Config:
    if config is None:
        return Config()
    if isinstance(config, Config):
        return copy.deepcopy(config)
    if isinstance(config, dict):
        return config_from_dict(copy.deepcopy(config))
    if isinstance(config, (str, Path)):
        return build_config(config)
    raise ConfigError(f"config must be a Config, a dict, a YAML path or None, got {type(config).__name__}")


class AnoGAN(OutlierMixin, BaseEstimator):
    """GAN anomaly detector trained on normal samples only (AnoGAN / f-AnoGAN scores, calibrated).

    Parameters (None = the value in ``config``, or the config default):
        loss: GAN loss, ``ns`` | ``minimax`` | ``wgan-gp`` | ``hinge`` (default ``ns``).
        epochs: GAN epochs (default 30).
        encoder_epochs: f-AnoGAN encoder epochs (default 30).
        z_dim: latent size (default 32).
        width: base channels (images) or hidden units (tables) (default 32).
        method: inversion for the score, ``encoder`` | ``hybrid`` | ``iterative`` (default ``hybrid``).
        weights: dict component -> weight in ``anomaly_score`` (see ``anomgan.components``); unset in the config
            too: the defaults of the data's kind (``anomgan.config.DEFAULT_WEIGHTS``; tables add ``input_knn``).
        threshold_quantile: threshold = this quantile of normal-validation anomaly scores (default 0.95).
        batch_size: training batch size (default 64).
        random_state: int, RandomState or None (None: the config's seed, 0): seeds splits, weights and noise.
        device: ``auto`` | ``cpu`` | ``cuda`` (default ``auto``).
        config: a ``Config``, a dict of sections, a YAML path, or None: every other setting.
        verbose: progress bars on stderr.

    Attributes: ``scorer_`` (the fitted ``Scorer`` module), ``config_`` (resolved), ``threshold_`` (on
    ``anomaly_score``), ``offset_`` (= -threshold_, so ``decision_function = score_samples - offset_``),
    ``n_features_in_`` (features, or image channels), ``history_`` (per-epoch training metrics).
    X: (N, D) tables, or images (N, C, H, W) / (N, H, W) with values in [0, 1].
    """

    def __init__(self, *, loss=None, epochs=None, encoder_epochs=None, z_dim=None, width=None, method=None,
                 weights=None, threshold_quantile=None, batch_size=None, random_state=None, device=None,
                 config=None, verbose=False):
        self.loss = loss
        self.epochs = epochs
        self.encoder_epochs = encoder_epochs
        self.z_dim = z_dim
        self.width = width
        self.method = method
        self.weights = weights
        self.threshold_quantile = threshold_quantile
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device
        self.config = config
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.three_d_array = True  # images (N, C, H, W) and (N, H, W)
        tags.input_tags.sparse = False
        return tags

    # ------------------------------------------------------------------ configuration
    def resolved_config(self) -> Config:
        """``config`` with every flat parameter that is not None applied, validated."""
        cfg = _as_config(self.config)
        seed = self.random_state
        if seed is not None and not isinstance(seed, (int, np.integer)):
            seed = int(check_random_state(seed).randint(2**31 - 1))
        flat = {"train.loss": self.loss, "train.epochs": self.epochs, "encoder.epochs": self.encoder_epochs,
                "model.z_dim": self.z_dim, "model.width": self.width, "score.method": self.method,
                "score.weights": None if self.weights is None else dict(self.weights),
                "score.threshold_quantile": self.threshold_quantile, "train.batch_size": self.batch_size,
                "train.seed": None if seed is None else int(seed), "train.device": self.device}
        tree: dict = {}
        for key, value in flat.items():
            if value is not None:
                section, name = key.split(".")
                tree.setdefault(section, {})[name] = value
        return with_values(cfg, tree)

    # ------------------------------------------------------------------ input checks
    def _validate(self, X, reset: bool) -> np.ndarray:
        """scikit-learn's checks (finite, numeric, at least 3 samples, the fitted feature count), float32 out."""
        ndim = getattr(X, "ndim", None)
        if ndim is None and not hasattr(X, "iloc") and not hasattr(X, "tocsr"):
            try:
                ndim = np.asarray(X).ndim
            except (ValueError, TypeError):
                ndim = None
        if ndim == 3:
            X = np.asarray(X)[:, None]  # (N, H, W) -> (N, 1, H, W)
            ndim = 4
        if ndim == 4 and not reset and hasattr(self, "scorer_"):  # say "channels" and "size", not "features"
            self.preprocessor_.check(np.asarray(X, dtype=np.float32), "X")
        X = validate_data(self, X, reset=reset, allow_nd=ndim == 4, dtype=[np.float64, np.float32],
                          ensure_min_samples=3 if reset else 1)
        return np.ascontiguousarray(X, dtype=np.float32)

    # ------------------------------------------------------------------ training
    def fit(self, X, y=None, X_val=None):
        """Train on normal samples ``X``; ``y`` is ignored. ``X_val`` (normal only) calibrates the score; without
        it, ``data.val_fraction`` of X is held out (seeded)."""
        from anomgan.training.fit import fit_detector

        X = self._validate(X, reset=True)
        cfg = self.resolved_config()
        if X_val is None:
            perm = np.random.default_rng(cfg.train.seed).permutation(len(X))
            n_val = max(1, int(round(cfg.data.val_fraction * len(X))))
            X, X_val = X[perm[n_val:]], X[perm[:n_val]]
        else:
            X_val = self._validate(X_val, reset=False)
        names = [str(n) for n in self.feature_names_in_] if hasattr(self, "feature_names_in_") else None
        result = fit_detector(cfg, X, X_val, feature_names=names, verbose=self.verbose)
        self._adopt(result.scorer, cfg, result.trainer.state_dict())
        return self

    def _adopt(self, scorer: Scorer, cfg: Config, training: dict) -> None:
        self.scorer_ = scorer
        self.config_ = cfg
        self.training_state_ = training
        self.history_ = list(training.get("history", []))
        self.threshold_ = float(scorer.calibration(scorer.default_inversion()).threshold)
        self.offset_ = -self.threshold_

    @property
    def preprocessor_(self) -> Preprocessor:
        return Preprocessor.from_dict(self.scorer_.spec.preprocess)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, meta: Optional[dict] = None) -> Path:
        """Write a run directory (the run format of ``anomgan.run_format``) that ``AnoGAN.load`` and the CLI read."""
        from anomgan.run_format import save_run

        check_is_fitted(self)
        return save_run(path, self.config_, "done", self.training_state_, self.scorer_, meta)

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", verbose: bool = False) -> "AnoGAN":
        """A fitted detector from a run directory; loading never executes code from it."""
        from anomgan.run_format import load_run
        from anomgan.training.fit import resolve_device

        run = load_run(run_dir)
        cfg = run.resolved_config()
        cfg.train.device = device
        scorer = run.build_scorer(resolve_device(device))
        det = cls(config=cfg, verbose=verbose)
        det._adopt(scorer, cfg, run.training_state())
        pre = det.preprocessor_
        det.n_features_in_ = int(pre.in_shape[0])
        det.run_ = run
        return det

    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ hands back __dict__ itself
        scorer = state.pop("scorer_", None)
        if scorer is not None:  # modules with spectral norm pickle only through their state_dict
            state["_scorer_state"] = {**scorer.saved(), "device": str(scorer.device)}
        return state

    def __setstate__(self, state):
        saved = state.pop("_scorer_state", None)
        super().__setstate__(state)
        if saved is not None:
            self.scorer_ = Scorer.from_saved(saved).to(saved["device"])

    # ------------------------------------------------------------------ scoring (the project's direction)
    def iter_scores(self, batches: Iterable[np.ndarray], method: Optional[str] = None, steps: Optional[int] = None,
                    total: Optional[int] = None, keep_reconstructions: bool = False,
                    batch_size: Optional[int] = None) -> Iterator[dict]:
        """Score raw batches (source units); yields per input batch a dict of (B,) numpy arrays: the components,
        ``anomaly_score``, ``threshold``, ``is_anomaly`` (+ model-space ``x`` / ``x_hat`` tensors when asked).
        Inputs larger than ``batch_size`` are scored in sub-batches, so memory stays bounded."""
        from anomgan.training.fit import inversion_for

        check_is_fitted(self)
        scorer, pre = self.scorer_, self.preprocessor_
        inv = inversion_for(self.config_, method, steps)
        bs = batch_size or self.config_.score.batch_size
        if scorer.calibration(inv) is None:  # a setting the run was not calibrated for: calibrate once, keep it
            scorer.fit_calibration(inv, self.config_.score.batch_size)
        def prepare(raw) -> torch.Tensor:
            x = pre.check(np.asarray(raw, dtype=np.float32))
            return torch.from_numpy(x if x.flags.writeable and x.flags.c_contiguous else np.array(x, order="C"))

        def score(x: torch.Tensor) -> dict:
            xm = scorer.preprocess(x.to(scorer.device, scorer.dtype))
            out = scorer.score(xm, inv, keep_reconstructions)
            if keep_reconstructions:
                out["x"] = xm
            return out

        workers = scoring_threads(scorer.device, self.config_.score.parallel_batches, int(np.prod(pre.in_shape)))
        with ProgressBar(f"score ({inv.method})", total, enabled=self.verbose) as bar, shared_threads(workers) as init:
            for parts in split_and_score(batches, prepare, score, bs, workers, init):
                out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
                res = {k: v.detach().cpu().numpy() for k, v in out.items() if k not in ("x", "x_hat")}
                res["is_anomaly"] = (res["anomaly_score"] > res["threshold"]).astype(np.int64)
                if keep_reconstructions:
                    res["x"], res["x_hat"] = out["x"].float().cpu(), out["x_hat"].float().cpu()
                bar.update(len(res["anomaly_score"]))
                yield res

    def score_components(self, X, method: Optional[str] = None, steps: Optional[int] = None,
                         keep_reconstructions: bool = False) -> dict:
        """Every active component, ``anomaly_score``, ``threshold`` and ``is_anomaly`` for ``X`` -> (N,) arrays."""
        X = np.asarray(X, dtype=np.float32)
        if len(X) == 0:
            raise DataError("no samples to score")
        return next(self.iter_scores([X], method, steps, total=len(X), keep_reconstructions=keep_reconstructions))

    def anomaly_score(self, X, method: Optional[str] = None, steps: Optional[int] = None) -> np.ndarray:
        """(N,) float64, higher = more anomalous; compare with ``threshold_`` (flagged when above)."""
        check_is_fitted(self)
        return self.score_components(self._validate(X, reset=False), method, steps)["anomaly_score"]

    # ------------------------------------------------------------------ scikit-learn's direction
    def score_samples(self, X) -> np.ndarray:
        """Opposite of ``anomaly_score``: higher = more normal (scikit-learn's convention)."""
        return -self.anomaly_score(X)

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_`` = ``threshold_ - anomaly_score(X)``: negative = outlier."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """-1 for outliers (``anomaly_score`` above ``threshold_``), +1 for inliers."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    # ------------------------------------------------------------------ generator
    def generate(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` samples from the EMA generator in source units ([0, 1] images, or table rows)."""
        check_is_fitted(self)
        z = torch.randn(n, self.scorer_.spec.model_args["z_dim"], generator=torch.Generator().manual_seed(seed))
        return self.scorer_.generate(z).float().cpu()
