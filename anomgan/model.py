"""The whole detector as one ``torch.nn.Module``: networks, input preprocessing and every fitted normal statistic.

``Scorer(spec)`` is rebuilt from its constructor arguments (``ScorerSpec``, plain data saved in the run) and
``load_state_dict``: the generator (EMA), discriminator and encoder weights, the preprocessing constants, the
memory bank, the Gaussians, the normal-validation samples and one calibration per inversion setting are all
parameters or registered buffers. Nothing here reads or writes files or keeps caches keyed on Python objects.

Direction, fixed here once: higher ``anomaly_score`` (and every component) = more anomalous.
``forward(x)`` scores a raw batch by the one-pass encoder path; ``score(x, inversion)`` by any inversion.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from anomgan.components import (
    ANOMALY_MAP,
    BANK,
    COMPONENTS,
    FEATURE_GAUSSIAN,
    INPUT_BANK,
    INVERSION,
    LAYER_BANKS,
    LAYER_GAUSSIANS,
    LOCATION_GAUSSIANS,
    MAP_NAMES,
    MAPS,
    RECONSTRUCTION_FEATURES,
    Pass,
    needs_of,
    ordered,
)
from anomgan.data.preprocess import Preprocess
from anomgan.models import build_models
from anomgan.scoring.inversion import invert_latent


@dataclass(frozen=True)
class Inversion:
    """How z* is found for the reconstruction components: encoder (f-AnoGAN), iterative (AnoGAN) or hybrid."""

    method: str = "encoder"
    steps: int = 500  # iterative: Adam steps on z
    refine_steps: int = 10  # hybrid: steps after E(x)
    lr: float = 0.05
    lam: float = 0.1  # objective (1 - lam) * residual + lam * feature_residual
    restarts: int = 1  # iterative: starting points per sample

    @property
    def key(self) -> str:
        """Everything that changes component values; the name of this setting's calibration."""
        if self.method == "encoder":
            key = "encoder"
        elif self.method == "hybrid":
            key = f"hybrid-{self.refine_steps}-lr{self.lr:g}-lam{self.lam:g}"
        else:
            key = f"iterative-{self.steps}-r{self.restarts}-lr{self.lr:g}-lam{self.lam:g}"
        return key.replace(".", "_")  # a ModuleDict key


@dataclass
class ScorerSpec:
    """The scorer's constructor arguments: plain data, saved in the run beside its state_dict."""

    model_args: dict  # build_models' arguments: kind, z_dim, width, depth, spectral_norm, channels + image_size
    #                   (images) or n_features (tables)
    preprocess: dict  # Preprocessor.to_dict(): source units -> model space
    components: list  # computed and stored, in registry order
    weights: dict  # component -> weight in anomaly_score
    combination: str = "calibrated"  # calibrated (weighted z-scores on normal-validation) | anogan
    threshold_quantile: float = 0.95
    residual_norm: str = "l1"
    knn_k: int = 5
    lam: float = 0.1  # anogan combination: (1 - lam) * residual + lam * feature_residual
    seed: int = 0  # iterative inversion's starting points
    amp: bool = False  # bf16 autocast on CUDA
    inversion: dict = field(default_factory=dict)  # the run's default Inversion
    dtype: str = "float32"  # tables score in float64: a row's score then does not depend on its batch (1e-12)
    maps: list = field(default_factory=list)  # map components (images), in registry order
    map_weights: dict = field(default_factory=dict)  # map component -> weight in anomaly_map
    map_topk: float = 0.01  # map_max: mean of this share of the map's highest pixels
    map_layers: list = field(default_factory=lambda: [1])  # D layers of layer_maha_map (negative: from the deepest)

    def to_dict(self) -> dict:
        return asdict(self)


class Gaussian(nn.Module):
    """A fitted Gaussian as buffers: mean (F,) and precision (F, F)."""

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("precision", precision)


class LayerBank(nn.Module):
    """One D layer's memory bank as buffers: rows (N, F_i) of pooled activations of normal-training samples and
    scale (), their own mean k-NN distance to those rows (what ``layer_knn`` divides that layer's distance by)."""

    def __init__(self, rows: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("rows", rows)
        self.register_buffer("scale", scale)


def location_scale(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means and standard deviations of ``values`` (N, K) in float64; a column without spread keeps the
    scale 1, so its z-score is a plain difference instead of a division by zero."""
    v = values.double()
    std = v.std(0, unbiased=False)
    return v.mean(0), torch.where(std > 1e-12, std, torch.ones_like(std))


class Calibration(nn.Module):
    """One inversion setting's component values on the normal-validation samples, and what follows from them:
    per-component location/scale (float64) and the threshold on ``anomaly_score``."""

    def __init__(self, values: torch.Tensor, map_loc: Optional[torch.Tensor] = None,
                 map_scale: Optional[torch.Tensor] = None):
        super().__init__()
        loc, scale = location_scale(values)  # values: (N_val, K), components in the scorer's order
        self.register_buffer("values", values.float())
        self.register_buffer("loc", loc)
        self.register_buffer("scale", scale)
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64))
        self.register_buffer("map_loc", map_loc)  # (M,) per map component: pixel mean / std on normal-validation
        self.register_buffer("map_scale", map_scale)


class LocationGaussian(nn.Module):
    """One D layer's normal activations: a Gaussian per location, mean (C, h, w) and precision (h*w, C, C)."""

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("precision", precision)


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, H, W) smoothed by a separable Gaussian (reflected borders), as anomaly-map generators do."""
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = maps[:, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
    return x[:, 0]


class Scorer(nn.Module):
    """G (EMA), D, E, preprocessing and fitted normal statistics; scores batches of raw samples.

    Buffers: ``bank`` (N, F) D features of normal-training samples; ``input_bank`` (N', D) such samples in
    model space, flattened; ``feature_gaussian`` and ``layer_gaussians`` (Gaussian modules); ``layer_banks``
    (LayerBank modules, one per D layer); ``calibration_x`` (N_val, ...) model-space normal-validation samples;
    ``weights`` (K,); ``calibrations[key]`` per inversion setting. Absent statistics are ``None`` / empty.
    """

    def __init__(self, spec: ScorerSpec):
        super().__init__()
        self.spec = spec
        self.components = ordered(spec.components)
        self.maps = ordered(spec.maps, MAP_NAMES)
        self.needs = needs_of(self.components, self.maps)
        self.generator, self.discriminator, self.encoder = build_models(spec.model_args)
        self.preprocess = Preprocess(spec.preprocess)
        self.register_buffer("bank", None)
        self.register_buffer("input_bank", None)
        self.register_buffer("calibration_x", None)
        self.register_buffer("weights", torch.tensor([float(spec.weights.get(c, 0.0)) for c in self.components],
                                                     dtype=torch.float64))
        self.register_buffer("map_weights", torch.tensor([float(spec.map_weights.get(m, 0.0)) for m in self.maps],
                                                         dtype=torch.float64))
        self.feature_gaussian: Optional[Gaussian] = None
        self.layer_gaussians = nn.ModuleList()
        self.layer_banks = nn.ModuleList()
        self.location_gaussians = nn.ModuleList()
        self.calibrations = nn.ModuleDict()
        if spec.dtype == "float64":
            self.double()
        self.eval().requires_grad_(False)

    # ------------------------------------------------------------------ building from a saved state
    @classmethod
    def from_state(cls, spec: ScorerSpec, state: dict) -> "Scorer":
        """Rebuild from ``spec`` and a ``state_dict()``: statistics are shaped as saved, then loaded strictly."""
        scorer = cls(spec)
        state = {**state}
        for name in ("weights", "map_weights"):  # follow from the spec; a run saved before one existed lacks it
            state.setdefault(name, getattr(scorer, name))
        for name in ("bank", "input_bank"):
            if name in state:
                setattr(scorer, name, torch.zeros(state[name].shape, dtype=state[name].dtype))
        if "calibration_x" in state:
            scorer.calibration_x = torch.zeros(state["calibration_x"].shape, dtype=state["calibration_x"].dtype)
        if "feature_gaussian.mean" in state:
            scorer.feature_gaussian = Gaussian(state["feature_gaussian.mean"], state["feature_gaussian.precision"])
        for name, cls, keys in (("layer_gaussians", Gaussian, ("mean", "precision")),
                                ("location_gaussians", LocationGaussian, ("mean", "precision")),
                                ("layer_banks", LayerBank, ("rows", "scale"))):
            i = 0
            while f"{name}.{i}.{keys[0]}" in state:
                getattr(scorer, name).append(cls(*(state[f"{name}.{i}.{k}"] for k in keys)))
                i += 1
        for key in sorted({k.split(".")[1] for k in state if k.startswith("calibrations.")}):
            prefix = f"calibrations.{key}."
            scorer.calibrations[key] = Calibration(state[prefix + "values"], state.get(prefix + "map_loc"),
                                                   state.get(prefix + "map_scale"))
        scorer.load_state_dict(state, strict=True)
        return scorer.eval().requires_grad_(False)

    def saved(self) -> dict:
        """The scorer as plain data: ``{"spec": ScorerSpec as a dict, "state": state_dict on the CPU}``; what runs
        store and pickles carry (spectral-norm modules pickle only through their state_dict)."""
        return {"spec": self.spec.to_dict(), "state": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

    @classmethod
    def from_saved(cls, saved: dict) -> "Scorer":
        """The scorer of ``saved()``."""
        return cls.from_state(ScorerSpec(**saved["spec"]), saved["state"])

    @property
    def device(self) -> torch.device:
        return self.weights.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.discriminator.parameters()).dtype

    def default_inversion(self) -> Inversion:
        return Inversion(**self.spec.inversion)

    def missing_statistics(self) -> list[str]:
        """The fitted statistics the active components need but the scorer lacks (fit_normal_statistics adds them)."""
        have = {BANK: self.bank is not None, INPUT_BANK: self.input_bank is not None,
                FEATURE_GAUSSIAN: self.feature_gaussian is not None,
                LAYER_GAUSSIANS: len(self.layer_gaussians) > 0, LAYER_BANKS: len(self.layer_banks) > 0,
                LOCATION_GAUSSIANS: len(self.location_gaussians) > 0}
        return sorted(n for n in self.needs if n in have and not have[n])

    # ------------------------------------------------------------------ one scoring pass
    def _autocast(self):
        if self.spec.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def scoring_pass(self, x: torch.Tensor, inversion: Optional[Inversion] = None) -> Pass:
        """D pass (with the pooled layers when ``layer_maha`` or ``layer_knn`` is active) and, when a component needs
        it, the inversion: ``x`` (B, ...) is a model-space batch. Only the inversion runs with gradients (on z)."""
        inv = inversion or Inversion("encoder")
        with self._autocast():
            with torch.no_grad():
                if self.needs & {LAYER_GAUSSIANS, LAYER_BANKS, LOCATION_GAUSSIANS}:
                    d_out, f_x, layers, maps = self.discriminator.forward_with_maps(
                        x, keep_maps=LOCATION_GAUSSIANS in self.needs)
                    maps = None if maps is None else self.select_map_layers(maps)
                else:
                    (d_out, f_x), layers, maps = self.discriminator.forward_with_features(x), None, None
            p = Pass(x=x, d_out=d_out.to(self.dtype), f_x=f_x.to(self.dtype),
                     layers=None if layers is None else [h.to(self.dtype) for h in layers],
                     residual_norm=self.spec.residual_norm, knn_k=self.spec.knn_k, layer_maps=maps,
                     map_topk=self.spec.map_topk)
            if INVERSION in self.needs:
                res = invert_latent(x, self.generator, self.discriminator, self.encoder, inv.method, steps=inv.steps,
                                    refine_steps=inv.refine_steps, lr=inv.lr, lam=inv.lam, restarts=inv.restarts,
                                    norm=self.spec.residual_norm, seed=self.spec.seed,
                                    z_dim=self.spec.model_args["z_dim"], f_x=f_x)
                with torch.no_grad():
                    p.x_hat = res.x_hat.to(self.dtype)
                    if RECONSTRUCTION_FEATURES in self.needs:  # D's second pass: only for components that read it
                        p.f_hat = self.discriminator.features(res.x_hat).to(self.dtype)
        return p

    def select_map_layers(self, maps: list) -> list:
        """The D layers (``spec.map_layers``, negative = from the deepest) whose activations feed the maps."""
        return [maps[i] for i in self.spec.map_layers]

    def component_values(self, x: torch.Tensor, inversion: Optional[Inversion] = None,
                         keep_reconstructions: bool = False, calibration: Optional["Calibration"] = None) -> dict:
        """Every active component of a model-space batch -> {name: (B,)} (+ ``x_hat`` when asked). With map
        components and a ``calibration`` that holds their pixel statistics, also ``anomaly_map`` (B, S, S)."""
        p = self.scoring_pass(x, inversion)
        with torch.no_grad():
            maps = self.map_values(p) if self.maps else None
            stats = (None, None) if calibration is None else (calibration.map_loc, calibration.map_scale)
            out = self._values_of(p, maps, *stats)
        if keep_reconstructions:
            out["x_hat"] = p.x_hat if p.x_hat is not None else self.reconstruct(x)
        return out

    def _values_of(self, p: Pass, maps: Optional[dict], map_loc: Optional[torch.Tensor],
                   map_scale: Optional[torch.Tensor]) -> dict:
        """The components of a scoring pass; given the maps and their pixel statistics, also the anomaly map and
        the components that read it."""
        if maps is not None and map_loc is not None:
            p.anomaly_map = self.anomaly_map(maps, map_loc, map_scale)
        out = {c: COMPONENTS[c].compute(p, self) for c in self.components
               if ANOMALY_MAP not in COMPONENTS[c].needs or p.anomaly_map is not None}
        if p.anomaly_map is not None:
            out["anomaly_map"] = p.anomaly_map
        return out

    def map_values(self, p: Pass) -> dict:
        """Every map component of a scoring pass -> {name: (B, S, S)} at the model's resolution."""
        return {m: MAPS[m].compute(p, self).float() for m in self.maps}

    def anomaly_map(self, maps: dict, map_loc: torch.Tensor, map_scale: torch.Tensor) -> torch.Tensor:
        """(B, S, S): the weighted mean of the map components' z-scores on normal-validation pixel statistics
        (``map_loc``, ``map_scale``: (M,)), smoothed by a Gaussian of sigma 4 px per 256 px (as anomalib's
        anomaly-map generator). Higher = more anomalous."""
        w = self.map_weights.float()
        z = sum(w[i] * (maps[m] - map_loc[i].float()) / map_scale[i].float()
                for i, m in enumerate(self.maps)) / w.sum()
        return gaussian_blur(z, sigma=max(0.5, 4.0 * z.shape[-1] / 256))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """G(E(x)) of a model-space batch."""
        return self.generator(self.encoder(x)).to(self.dtype)

    # ------------------------------------------------------------------ combining and calibrating
    def combine(self, values: dict, calibration: Calibration, weights: Optional[dict] = None) -> torch.Tensor:
        """``anomaly_score`` (B,) float64 from component values: the weighted mean of z-scores on the
        normal-validation statistics of ``calibration`` (never of the batch), or AnoGAN's (1-lam)*R + lam*F."""
        if self.spec.combination == "anogan":
            lam = self.spec.lam
            return (1.0 - lam) * values["residual"].double() + lam * values["feature_residual"].double()
        w = self.weights if weights is None else torch.tensor(
            [float(weights.get(c, 0.0)) for c in self.components], dtype=torch.float64, device=self.device)
        stacked = torch.stack([values[c].double() for c in self.components], 1)  # (B, K)
        z = (stacked - calibration.loc) / calibration.scale
        return (z * w).sum(1) / w.sum()

    def _values_table(self, values: dict) -> torch.Tensor:
        return torch.stack([values[c].float() for c in self.components], 1)

    def fit_calibration(self, inversion: Inversion, batch_size: int = 256) -> Calibration:
        """Score the stored normal-validation samples with ``inversion`` and keep the result as its calibration."""
        if self.calibration_x is None:
            raise ValueError("the scorer holds no normal-validation samples to calibrate on")
        passes = []  # one scoring pass per batch (the inversion is the expensive part), with its raw maps
        for i in range(0, len(self.calibration_x), batch_size):
            p = self.scoring_pass(self.calibration_x[i:i + batch_size], inversion)
            with torch.no_grad():
                maps = self.map_values(p) if self.maps else None
            p.layer_maps = None  # what the maps needed of them is in ``maps`` now
            passes.append((p, maps))
        map_loc = map_scale = None
        if self.maps:  # the maps' pixel statistics, which the anomaly map (and map_max) stand on
            pixels = torch.stack([torch.cat([maps[m].flatten() for _, maps in passes]) for m in self.maps], 1)
            map_loc, map_scale = location_scale(pixels)
        with torch.no_grad():
            parts = [self._values_of(p, maps, map_loc, map_scale) for p, maps in passes]
        values = {c: torch.cat([p[c] for p in parts]) for c in self.components}
        cal = Calibration(self._values_table(values), map_loc, map_scale).to(self.device)
        val_scores = self.combine(values, cal)
        cal.threshold = torch.quantile(val_scores, self.spec.threshold_quantile).to(torch.float64)
        self.calibrations[inversion.key] = cal
        return cal

    def calibration(self, inversion: Inversion) -> Optional[Calibration]:
        return self.calibrations[inversion.key] if inversion.key in self.calibrations else None

    # ------------------------------------------------------------------ scoring
    def score(self, x: torch.Tensor, inversion: Optional[Inversion] = None,
              keep_reconstructions: bool = False) -> dict:
        """Score a model-space batch: every active component, ``anomaly_score`` and ``threshold`` (B,) tensors."""
        inv = inversion or self.default_inversion()
        cal = self.calibration(inv)
        if cal is None:
            raise KeyError(inv.key)
        out = self.component_values(x, inv, keep_reconstructions, calibration=cal)
        out["anomaly_score"] = self.combine(out, cal)
        out["threshold"] = cal.threshold.expand(x.shape[0])  # shape, not len(): a symbolic batch in export
        return out

    def forward(self, x: torch.Tensor) -> dict:
        """Raw batch (source units: (B, C, H, W) in [0, 1] at the trained size, or (B, D)) -> every active component
        and ``anomaly_score`` (B,) by the encoder path. Higher = more anomalous."""
        out = self.score(self.preprocess(x.to(self.dtype)), Inversion("encoder"))
        out.pop("threshold")
        return out

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Samples from the EMA generator for latents ``z`` (B, z_dim), in source units."""
        return self.preprocess.inverse(self.generator(z.to(self.device, self.dtype)))
