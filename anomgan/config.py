"""One typed config for a run: YAML file < CLI flags < ``--set a.b=c`` overrides.

Every section is a plain dataclass whose defaults are the values we measured to work
(see docs/tuning.md). Unknown keys and invalid values raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from anomgan.components import (
    ANOMALY_MAP,
    BANK,
    COMPONENTS,
    FEATURE_GAUSSIAN,
    INPUT_BANK,
    LAYER_BANKS,
    LAYER_GAUSSIANS,
    MAP_NAMES,
)
from anomgan.errors import ConfigError
from anomgan.training.stabilisers import CUT_PASTE_AREA, NEGATIVE_KINDS, NEGATIVE_ROWS

LOSSES = ("ns", "minimax", "wgan-gp", "hinge")
ENCODER_TRUNKS = ("own", "critic")
IMAGE_SIZES = (8, 16, 32, 64, 128, 256)  # square power-of-two working resolutions of the conv models
METHODS = ("encoder", "iterative", "hybrid")
COMBINATIONS = ("calibrated", "anogan")


@dataclass
class DataConfig:
    source: str = "digits"  # digits | mnist | fashion-mnist | cifar10 | a path (.npy/.npz/.csv/image folder/image)
    root: str = "./data"  # where torchvision data sets live (e.g. ../shared/data)
    download: bool = False  # torchvision sets: allow downloading when the files are absent
    normal_classes: Optional[list] = None  # labels treated as normal; None for unlabelled data (all normal)
    labels: Optional[str] = None  # optional .npy of labels beside a .npy data file
    label_column: str = "label"  # CSV column holding the class label (absent column = unlabelled)
    val_fraction: float = 0.1  # share of normal-train held out as normal-validation (calibration, selection)
    test_fraction: float = 0.3  # share of normal samples held out for test when a source has no official test split
    image_size: Optional[int] = None  # model resolution (power of two, 8..64); None = next power of two >= input
    channels: Optional[int] = None  # 1 or 3; None = as the input
    resize: str = "pad"  # pad (keeps pixels exact, e.g. MNIST 28->32) | resize (bilinear) to reach image_size
    allow_resize: bool = False  # score inputs of another size are resized instead of refused
    max_train: Optional[int] = None  # cap on normal-train samples (None = all), for quick experiments
    # source "folder:ROOT" (anomalib's Folder layout; paths relative to ROOT): normal images, abnormal folders (each
    # a held-out class), masks found by image stem, optional normal test images (else normal_split_ratio held out)
    normal_dir: str = "good"
    abnormal_dirs: list = field(default_factory=list)
    mask_dir: Optional[str] = None
    normal_test_dir: Optional[str] = None
    normal_split_ratio: float = 0.2


@dataclass
class ModelConfig:
    z_dim: int = 32  # latent size; small latents invert faster and generalise (docs/tuning.md)
    width: int = 32  # base channels (conv) or hidden units (MLP)
    depth: int = 2  # hidden layers of the MLP models (tabular data only)
    spectral_norm: bool = True  # spectral norm on D's layers: the most robust single stabiliser
    encoder_trunk: str = "own"  # own: E has a trunk like D's (f-AnoGAN) | critic: E is a head on D's features


@dataclass
class TrainConfig:
    epochs: int = 30  # GAN epochs over normal-train
    batch_size: int = 64  # GAN and encoder batch size
    loss: str = "ns"  # ns (non-saturating) | minimax | wgan-gp | hinge
    lr_g: float = 2e-4  # generator learning rate
    lr_d: float = 2e-4  # discriminator learning rate (TTUR: set higher than lr_g)
    betas: Optional[list] = None  # Adam betas; None = per loss family (0.5, 0.999), WGAN-GP (0.0, 0.9)
    n_critic: int = 1  # D steps per G step (5 is usual for WGAN-GP)
    gp_weight: float = 10.0  # gradient-penalty weight for wgan-gp
    gp_every: int = 1  # lazy regularisation: penalty on every k-th D step, weighted k * gp_weight
    gp_fraction: float = 1.0  # penalty on this share of each batch's interpolates (at least one): cheaper, noisier
    ema_decay: float = 0.999  # EMA of G weights used for sampling and scoring; 0 disables
    d_ema_decay: float = 0.0  # EMA of D weights for the scorer (verdict, feature space, encoder); 0 = the live D
    augment: bool = False  # DiffAugment-style translation+cutout on D inputs (small data sets)
    consistency: float = 0.0  # bCR weight (Zhao et al. 2021): (D(x) - D(shift(x)))^2 on real and fake images; 0 = off
    contrastive: float = 0.0  # SimCLR (NT-Xent) weight on D's features of each real image and a view of it; 0 = off
    rotation: float = 0.0  # SS-GAN weight: D's features predict each real image's quarter turn (images); 0 = off
    negatives: float = 0.0  # NDA: this share of D's fake side is CutPaste-ed real images, not G's (images); 0 = off
    negative_kinds: list = field(default_factory=lambda: ["cutpaste"])  # how train.negatives spoils each image,
    #   one kind drawn per image: cutpaste (a patch moved) | cutout (a patch blanked to the image's median tone)
    negative_area: list = field(default_factory=lambda: list(CUT_PASTE_AREA))  # [lowest, highest] share of the
    #   image each negative's rectangle covers (CutPaste's 2-15 %)
    negative_rows: str = "batch"  # how many negatives a critic pass scores: batch (one per real image, B more rows)
    #   | share (round(negatives * B) of them, at least 1: the same expected loss from fewer rows, a cheaper D step)
    sample_every: int = 5  # save a sample grid every N epochs (and at the end)
    amp: bool = False  # bf16 autocast for G, D and E training (the penalty in float32): CUDA, or a CPU with AMX
    seed: int = 0  # seeds splits, weights, noise: same seed on CPU -> identical run
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class EncoderConfig:
    epochs: int = 30  # encoder epochs (izi_f, G and D frozen)
    lr: float = 1e-3  # encoder learning rate
    kappa: float = 1.0  # weight of the feature term ||f(x) - f(G(E(x)))||^2 (f-AnoGAN)


# score.weights when a config sets none, by the kind of data it trains on. Tables add input_knn at 40: on the
# validation rows of four tables it lifted the mean ROC-AUC 95.31 -> 96.62, where D's features alone lose what
# plain distances keep (reports/benchmarks/tabular-levers.csv, docs/tuning.md); on MNIST it did not help.
DEFAULT_WEIGHTS = {
    "image": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_knn": 5.0, "layer_maha": 10.0},
    "tabular": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_knn": 5.0, "layer_maha": 10.0,
                "input_knn": 40.0},
}


def weights_for(score: "ScoreConfig", kind: str) -> dict:
    """The weights ``score`` gives the components on data of ``kind`` ("image" | "tabular")."""
    return dict(DEFAULT_WEIGHTS[kind] if score.weights is None else score.weights)


@dataclass
class ScoreConfig:
    method: str = "hybrid"  # encoder | iterative | hybrid
    steps: int = 500  # iterative inversion steps (AnoGAN paper: 500)
    refine_steps: int = 10  # hybrid: refinement steps after E(x)
    lr: float = 0.05  # Adam step size on z during inversion
    lam: float = 0.1  # inversion objective (1-lam)*residual + lam*feature_residual (AnoGAN lambda)
    restarts: int = 1  # iterative: starting points per sample; the best z is kept
    residual_norm: str = "l1"  # l1 (AnoGAN) | l2
    combination: str = "calibrated"  # calibrated (standardised on normal-validation) | anogan
    # feature_knn: distance in D's feature space to the k nearest normal-training samples (docs/tuning.md);
    # feature_maha: Mahalanobis distance in that space to a Gaussian fitted to the same bank (Ledoit-Wolf);
    # layer_maha: the same samples seen by every D layer, coarsely pooled, one Gaussian per layer;
    # input_knn: distance to the k nearest of those samples in model space itself (no network);
    # layer_knn: feature_knn's distance on layer_maha's pooled layers, one bank (coreset) per layer
    weights: Optional[dict] = None  # component -> weight; None (unset): DEFAULT_WEIGHTS of the data's kind
    knn_k: int = 5  # neighbours averaged by feature_knn, input_knn and layer_knn
    # anomaly maps (images): map component -> weight in the per-pixel anomaly_map (empty = no maps); the image
    # score reads the map through the map_max component (score.weights.map_max)
    map_weights: dict = field(default_factory=dict)
    map_topk: float = 0.01  # map_max: mean of this share of the map's highest pixels
    # D layers whose per-location Gaussians make layer_maha_map, counted from the input (0, 1, ...) or from the
    # deepest (-1 = the 4x4 layer); the second layer was best on synthetic defects of normal images (docs/tuning.md)
    map_layers: list = field(default_factory=lambda: [1])
    bank_size: int = 4096  # normal-training samples the run keeps (D features; inputs for input_knn); 0 = none
    # feature_knn's (and input_knn's) bank reduced to this many rows by greedy k-center selection (PatchCore's
    # coreset) out of the bank_size samples; the Gaussians still see them all. 0 = keep every row
    coreset_size: int = 0
    threshold_quantile: float = 0.95  # threshold = this quantile of normal-validation anomaly scores
    batch_size: int = 256  # scoring batch size (memory bound)
    num_workers: int = 0  # DataLoader workers when reading image folders
    # CPU scoring: batches scored side by side, each on its share of torch's threads. 0 = one batch per thread for
    # samples of up to 3x64x64 values, else one at a time (anomgan.scoring.parallel.scoring_threads); 1 = one batch
    # at a time on all threads; N = N batches
    parallel_batches: int = 0
    amp: bool = False  # bf16 autocast for scoring on CUDA; ignored on CPU


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- parsing


def parse_class_list(text: str | list | None) -> list | None:
    """'0', '0,3,5', '0-9', 'cat,dog' -> list of labels (ints where numeric)."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        items = [str(t) for t in text]
    else:
        items = [t.strip() for t in str(text).split(",") if t.strip()]
    out: list = []
    for item in items:
        is_range = all(p.strip().lstrip("-").isdigit() for p in item.split("-", 1))
        if "-" in item and is_range and not item.startswith("-"):
            lo, hi = (int(p) for p in item.split("-", 1))
            if hi < lo:
                raise ConfigError(f"invalid class range '{item}': end before start")
            out.extend(range(lo, hi + 1))
        else:
            out.append(int(item) if item.lstrip("-").isdigit() else item)
    if not out:
        raise ConfigError(f"empty class list '{text}'")
    return out


def parse_int_list(text: str) -> list[int]:
    values = parse_class_list(text) or []
    if not all(isinstance(v, int) for v in values):
        raise ConfigError(f"expected integers, got '{text}'")
    return values


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Coerce/validate ``value`` against a dataclass field type hint."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _check_type(key, value, args[0])
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' expects true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key '{key}' expects an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' expects a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"config key '{key}' must be finite, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{key}' expects a string, got {value!r}")
        return str(value)
    if hint is list or origin is list:
        if isinstance(value, (str, int)):
            return parse_class_list(value) if key.endswith("classes") else [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' expects a list, got {value!r}")
        return list(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' expects a mapping, got {value!r}")
        return dict(value)
    return value


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(options)})"


def _merge(obj: Any, values: dict, prefix: str = "") -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or 'root'}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'{_suggest(str(key), names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, prefix=f"{full}.")
        else:
            setattr(obj, key, _check_type(full, value, hints[key]))


def _set_override(tree: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"an override is section.key=value, got '{assignment}'",
                          cli=f"--set expects key=value, got '{assignment}'")
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    _assign(tree, key, value)


def _assign(tree: dict, key: str, value: Any) -> None:
    parts = key.strip().split(".")
    if len(parts) < 2:
        raise ConfigError(f"config key must be section.key (e.g. train.epochs), got '{key}'")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{key}': '{part}' is not a section",
                              cli=f"--set '{key}': '{part}' is not a section")
    node[parts[-1]] = value


def validate(cfg: Config) -> Config:
    """Range checks that types alone cannot express. Returns cfg for chaining."""
    d, m, t, e, s = cfg.data, cfg.model, cfg.train, cfg.encoder, cfg.score

    def need(cond: bool, key: str, msg: str, value: Any) -> None:
        if not cond:
            raise ConfigError(f"invalid value for '{key}': {value!r} ({msg})")

    need(0 < d.val_fraction < 1, "data.val_fraction", "must be in (0, 1)", d.val_fraction)
    need(0 < d.test_fraction < 1, "data.test_fraction", "must be in (0, 1)", d.test_fraction)
    need(d.image_size is None or d.image_size in IMAGE_SIZES, "data.image_size",
         "one of " + ", ".join(map(str, IMAGE_SIZES)), d.image_size)
    need(d.channels in (None, 1, 3), "data.channels", "1 or 3", d.channels)
    need(d.resize in ("pad", "resize"), "data.resize", "pad or resize", d.resize)
    need(d.max_train is None or d.max_train >= 2, "data.max_train", "at least 2", d.max_train)
    need(0 < d.normal_split_ratio < 1, "data.normal_split_ratio", "in (0, 1)", d.normal_split_ratio)
    need(m.z_dim >= 1, "model.z_dim", "at least 1", m.z_dim)
    need(m.width >= 1, "model.width", "at least 1", m.width)
    need(m.depth >= 1, "model.depth", "at least 1", m.depth)
    need(m.encoder_trunk in ENCODER_TRUNKS, "model.encoder_trunk", "one of " + ", ".join(ENCODER_TRUNKS),
         m.encoder_trunk)
    need(t.epochs >= 1, "train.epochs", "at least 1", t.epochs)
    need(t.batch_size >= 2, "train.batch_size", "at least 2", t.batch_size)
    need(t.loss in LOSSES, "train.loss", "one of " + ", ".join(LOSSES), t.loss)
    need(t.lr_g > 0, "train.lr_g", "must be > 0", t.lr_g)
    need(t.lr_d > 0, "train.lr_d", "must be > 0", t.lr_d)
    need(
        t.betas is None or (len(t.betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in t.betas)),
        "train.betas", "two numbers in [0, 1)", t.betas,
    )
    need(t.n_critic >= 1, "train.n_critic", "at least 1", t.n_critic)
    need(t.gp_weight >= 0, "train.gp_weight", "must be >= 0", t.gp_weight)
    need(t.gp_every >= 1, "train.gp_every", "at least 1", t.gp_every)
    need(0 < t.gp_fraction <= 1, "train.gp_fraction", "in (0, 1]", t.gp_fraction)
    need(t.consistency >= 0, "train.consistency", "0 (off) or more", t.consistency)
    need(t.contrastive >= 0, "train.contrastive", "0 (off) or more", t.contrastive)
    need(t.rotation >= 0, "train.rotation", "0 (off) or more", t.rotation)
    need(0 <= t.negatives < 1, "train.negatives", "in [0, 1) (0 = off)", t.negatives)
    need(isinstance(t.negative_kinds, list) and len(t.negative_kinds) > 0
         and all(k in NEGATIVE_KINDS for k in t.negative_kinds) and len(set(t.negative_kinds)) == len(t.negative_kinds),
         "train.negative_kinds", "a non-empty list of distinct kinds among " + ", ".join(NEGATIVE_KINDS),
         t.negative_kinds)
    need(isinstance(t.negative_area, list) and len(t.negative_area) == 2
         and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in t.negative_area)
         and 0 < t.negative_area[0] <= t.negative_area[1] < 1,
         "train.negative_area", "[lowest, highest] shares of the image, 0 < lowest <= highest < 1", t.negative_area)
    need(t.negative_rows in NEGATIVE_ROWS, "train.negative_rows", " or ".join(NEGATIVE_ROWS), t.negative_rows)
    need(0 <= t.ema_decay < 1, "train.ema_decay", "in [0, 1)", t.ema_decay)
    need(0 <= t.d_ema_decay < 1, "train.d_ema_decay", "in [0, 1)", t.d_ema_decay)
    need(t.sample_every >= 1, "train.sample_every", "at least 1", t.sample_every)
    need(t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"), "train.device", "auto, cpu or cuda",
         t.device)
    need(e.epochs >= 0, "encoder.epochs", "must be >= 0", e.epochs)
    need(e.lr > 0, "encoder.lr", "must be > 0", e.lr)
    need(e.kappa >= 0, "encoder.kappa", "must be >= 0", e.kappa)
    need(s.method in METHODS, "score.method", "one of " + ", ".join(METHODS), s.method)
    need(s.steps >= 1, "score.steps", "at least 1", s.steps)
    need(s.refine_steps >= 0, "score.refine_steps", "must be >= 0", s.refine_steps)
    need(s.lr > 0, "score.lr", "must be > 0", s.lr)
    need(0 <= s.lam <= 1, "score.lam", "in [0, 1]", s.lam)
    need(s.restarts >= 1, "score.restarts", "at least 1", s.restarts)
    need(s.residual_norm in ("l1", "l2"), "score.residual_norm", "l1 or l2", s.residual_norm)
    need(s.combination in COMBINATIONS, "score.combination", "calibrated or anogan", s.combination)
    if s.weights is not None:
        unknown = set(s.weights) - set(COMPONENTS)
        need(not unknown, "score.weights", "keys among " + ", ".join(COMPONENTS), s.weights)
        need(
            all(isinstance(w, (int, float)) and w >= 0 for w in s.weights.values()) and sum(s.weights.values()) > 0,
            "score.weights", "non-negative numbers, not all zero", s.weights,
        )
    # unset weights: the defaults of both kinds must be servable, as the data's kind is not known yet
    weight_sets = [s.weights] if s.weights is not None else list(DEFAULT_WEIGHTS.values())
    every_weight = [(name, w) for weights in weight_sets for name, w in weights.items()]
    need(s.knn_k >= 1, "score.knn_k", "at least 1", s.knn_k)
    need(not set(s.map_weights) - set(MAP_NAMES), "score.map_weights", "keys among " + ", ".join(MAP_NAMES),
         s.map_weights)
    need(all(isinstance(w, (int, float)) and w >= 0 for w in s.map_weights.values()), "score.map_weights",
         "non-negative numbers", s.map_weights)
    uses_map = any(w and ANOMALY_MAP in COMPONENTS[c].needs for c, w in every_weight)
    need(not uses_map or any(s.map_weights.values()), "score.map_weights",
         "a map component above 0 while score.weights.map_max is above 0 (no map, no map_max)", s.map_weights)
    need(0 < s.map_topk <= 1, "score.map_topk", "in (0, 1]", s.map_topk)
    need(len(s.map_layers) > 0 and all(isinstance(i, int) and not isinstance(i, bool) for i in s.map_layers),
         "score.map_layers", "a non-empty list of layer indices", s.map_layers)
    need(s.bank_size >= 0, "score.bank_size", "must be >= 0", s.bank_size)
    need(s.coreset_size >= 0, "score.coreset_size", "must be >= 0 (0 = the whole bank)", s.coreset_size)
    for name, w in every_weight:
        needs = COMPONENTS[name].needs
        if w and needs & {BANK, INPUT_BANK, LAYER_BANKS}:
            need(s.bank_size > 0, "score.bank_size",
                 f"above 0 while score.weights.{name} is above 0 (no bank, no {name})", s.bank_size)
        if w and needs & {FEATURE_GAUSSIAN, LAYER_GAUSSIANS}:
            need(s.bank_size >= 2, "score.bank_size",
                 f"at least 2 while score.weights.{name} is above 0 (a Gaussian needs 2 rows)", s.bank_size)
    need(0 < s.threshold_quantile < 1, "score.threshold_quantile", "in (0, 1)", s.threshold_quantile)
    need(s.batch_size >= 1, "score.batch_size", "at least 1", s.batch_size)
    need(s.num_workers >= 0, "score.num_workers", "must be >= 0", s.num_workers)
    need(s.parallel_batches >= 0, "score.parallel_batches", "must be >= 0", s.parallel_batches)
    return cfg


def build_config(
    path: str | Path | None = None,
    flags: dict | None = None,
    overrides: list[str] | None = None,
    base: dict | None = None,
) -> Config:
    """Resolve a config: defaults < ``base`` dict < YAML file < ``flags`` (dotted keys) < ``--set`` overrides."""
    tree: dict = {}
    cfg = Config()
    if base:
        _merge(cfg, base)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if loaded is not None:
            _merge(cfg, loaded)
    for key, value in (flags or {}).items():
        if value is not None:
            _assign(tree, key, value)
    for assignment in overrides or []:
        _set_override(tree, assignment)
    _merge(cfg, tree)
    return validate(cfg)


def with_values(cfg: Config, tree: dict) -> Config:
    """``cfg`` with the nested ``{section: {key: value}}`` values applied, validated (cfg itself is changed)."""
    _merge(cfg, tree)
    return validate(cfg)


def config_from_dict(values: dict) -> Config:
    cfg = Config()
    _merge(cfg, values)
    return validate(cfg)


def save_config(cfg: Config, path: Path) -> None:
    from anomgan.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
