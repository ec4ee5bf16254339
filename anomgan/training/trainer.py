"""Resumable training: GAN on normal data, then the f-AnoGAN izi_f encoder with G and D frozen.

The trainer writes no files: after every finished epoch it calls ``on_epoch(trainer)``, and the caller saves
``trainer.state_dict()`` (the run layer writes it atomically, so a crash at any moment loses at most the epoch in
progress). Distributed (torchrun): each rank trains on its DistributedSampler shard, gradients are all-reduced by
DistributedDataParallel; the caller saves from rank 0 only.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from anomgan.config import Config
from anomgan.errors import TrainingDiverged
from anomgan.models import build_models
from anomgan.progress import ProgressBar
from anomgan.run_format import scorer_networks
from anomgan.training import losses
from anomgan.training.stabilisers import diff_augment, negative_count, spoil, translate, update_ema

T = TypeVar("T")


@dataclass
class TrainState:
    phase: str = "gan"  # gan -> encoder -> done (a finished run given more epochs goes back to gan / encoder)
    epoch: int = 0  # GAN epochs completed
    encoder_epoch: int = 0  # encoder epochs completed
    step: int = 0  # GAN generator steps (drives the EMA warm-up)
    history: list = field(default_factory=list)  # one dict per finished epoch (both phases)


def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def seeded(seed: int, make: Callable[[], T]) -> T:
    """``make()`` with torch's RNG seeded by ``seed``, without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_seeded_models(model_args: dict, seed: int):
    """Models initialised from ``seed`` without touching the caller's global RNG."""
    return seeded(seed, lambda: build_models(model_args))


def projection_head(n_features: int) -> nn.Module:
    """SimCLR's projection MLP: the contrastive loss reads its output, the score reads D's features before it."""
    return nn.Sequential(nn.Linear(n_features, 256), nn.ReLU(True), nn.Linear(256, 128))


def rotation_head(n_features: int) -> nn.Module:
    """SS-GAN's rotation classifier: which of 0, 90, 180, 270 degrees a real image was turned, from f(x)."""
    return nn.Linear(n_features, 4)


# train.<weight> -> the auxiliary head on D's features that its loss trains with D (images only; nothing scores them)
AUX_HEADS = {"contrastive": ("projection", projection_head), "rotation": ("rotation", rotation_head)}


def rotate_each(x: torch.Tensor, quarter_turns: torch.Tensor) -> torch.Tensor:
    """x (B, C, S, S), image i turned by quarter_turns[i] * 90 degrees: each turn once, on the images drawn for it."""
    out = x.clone()
    for k in range(1, 4):
        chosen = quarter_turns == k
        out[chosen] = torch.rot90(x[chosen], k, dims=(2, 3))
    return out


def _grad_norm(module: nn.Module) -> float:
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


@torch.no_grad()
def diversity(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean pairwise distance of generated samples / that of real samples: ~1 healthy, -> 0 mode collapse."""
    def mean_pdist(t: torch.Tensor) -> float:
        flat = t.flatten(1).float()
        return float(torch.cdist(flat, flat).sum() / max(1, flat.shape[0] * (flat.shape[0] - 1)))

    ref = mean_pdist(reference)
    return mean_pdist(samples) / ref if ref > 0 else float("nan")


class Trainer:
    """Owns models, optimisers and RNG for one run; ``run()`` trains to completion from wherever it stands."""

    def __init__(self, cfg: Config, model_args: dict, x_train: torch.Tensor, device: torch.device,
                 verbose: bool = False, on_epoch: Optional[Callable[["Trainer"], None]] = None,
                 preprocess: Optional[dict] = None):
        self.cfg = cfg
        self.preprocess = preprocess  # how x_train was made from source units (Preprocessor.to_dict()), kept in state
        self.model_args = model_args
        self.device = device
        self.verbose = verbose
        self.on_epoch = on_epoch or (lambda trainer: None)
        self.rank, self.world = dist_info()
        self.x_train = x_train.to(device)
        t = cfg.train
        self.generator, self.discriminator, self.encoder = (
            m.to(device) for m in build_seeded_models(model_args, t.seed))
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        # train.d_ema_decay: an average of D's weights, for the scorer only (training never reads it). Its spectral
        # norm reads the live D's power-iteration vectors (update_ema copies buffers): sigma of the averaged weight
        # along the live D's singular directions, close to its own for an average over recent steps
        self.discriminator_ema: Optional[nn.Module] = None
        if t.d_ema_decay > 0:
            self.discriminator_ema = copy.deepcopy(self.discriminator).eval().requires_grad_(False)
        if self.encoder.reads_critic_features:  # model.encoder_trunk: critic reads the D the scorer holds
            self.encoder.bind(self.scorer_networks()[1])
        betas = tuple(t.betas) if t.betas else losses.DEFAULT_BETAS[t.loss]
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=t.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=t.lr_d, betas=betas)
        self.opt_e = torch.optim.Adam(self.encoder.parameters(), lr=cfg.encoder.lr, betas=(0.5, 0.999))
        # train.contrastive / train.rotation: heads on D's features, trained with D and used by nothing else
        self.aux = nn.ModuleDict({
            name: seeded(t.seed, lambda make=make: make(self.discriminator.feature_dim)).to(device)
            for weight, (name, make) in AUX_HEADS.items() if getattr(t, weight) > 0 and model_args["kind"] == "image"})
        self.opt_aux = torch.optim.Adam(self.aux.parameters(), lr=t.lr_d, betas=betas) if len(self.aux) else None
        self.rng = torch.Generator(device=device).manual_seed(t.seed + 1000 * self.rank)
        self.fixed_z = torch.randn(64, model_args["z_dim"], generator=torch.Generator().manual_seed(t.seed)).to(device)
        self.state = TrainState()
        self.amp_dtype = torch.bfloat16 if t.amp else None  # CUDA, or a CPU (fast where it has AMX tiles)
        self._wrap_distributed()

    # ------------------------------------------------------------------ distributed
    def _wrap_distributed(self) -> None:
        self.g_train: nn.Module = self.generator
        self.d_train: nn.Module = self.discriminator
        self.e_train: nn.Module = self.encoder
        self.aux_train: dict[str, nn.Module] = dict(self.aux.items())
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_train = DDP(self.generator, device_ids=ids)
            self.d_train = DDP(self.discriminator, device_ids=ids)
            self.e_train = DDP(self.encoder, device_ids=ids)
            self.aux_train = {name: DDP(head, device_ids=ids) for name, head in self.aux.items()}

    def _batches(self, epoch: int, batch_size: int) -> list[torch.Tensor]:
        """This rank's shuffled shard for ``epoch`` (DistributedSampler; deterministic in seed and epoch)."""
        n = len(self.x_train)
        sampler = DistributedSampler(range(n), num_replicas=self.world, rank=self.rank, shuffle=True,
                                     seed=self.cfg.train.seed)
        sampler.set_epoch(epoch)
        idx = torch.tensor(list(sampler), dtype=torch.long)
        bs = min(batch_size, len(idx))
        n_full = max(1, len(idx) // bs)  # drop a ragged last batch: BatchNorm dislikes tiny ones
        return [idx[i * bs:(i + 1) * bs] for i in range(n_full)]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything needed to continue training: weights, EMA, optimisers, RNG, counters, history."""
        s = self.state
        head = {}  # the auxiliary heads (train.contrastive, train.rotation) and their optimiser, when there are any
        if self.opt_aux is not None:
            head = {"aux": self.aux.state_dict(), "opt_aux": self.opt_aux.state_dict(), "aux_names": sorted(self.aux)}
        if self.discriminator_ema is not None:
            head["discriminator_ema"] = self.discriminator_ema.state_dict()
        return {
            "model_args": self.model_args,
            "preprocess": self.preprocess,
            "phase": s.phase, "epoch": s.epoch, "encoder_epoch": s.encoder_epoch, "step": s.step,
            "history": s.history,
            "generator": self.generator.state_dict(),
            "generator_ema": self.generator_ema.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "encoder": self.encoder.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "opt_e": self.opt_e.state_dict(),
            "rng": self.rng.get_state(),
            **head,
        }

    def load_state_dict(self, ckpt: dict) -> None:
        self.generator.load_state_dict(ckpt["generator"])
        self.generator_ema.load_state_dict(ckpt["generator_ema"])
        self.discriminator.load_state_dict(ckpt["discriminator"])
        self.encoder.load_state_dict(ckpt["encoder"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.opt_e.load_state_dict(ckpt["opt_e"])
        if self.opt_aux is not None and ckpt.get("aux_names") == sorted(self.aux):  # else (a head newly on or off)
            self.aux.load_state_dict(ckpt["aux"])  # the heads start fresh
            self.opt_aux.load_state_dict(ckpt["opt_aux"])
        if self.discriminator_ema is not None:  # newly on: the average starts from the live D
            self.discriminator_ema.load_state_dict(ckpt.get("discriminator_ema", ckpt["discriminator"]))
        if self.rank == 0:
            self.rng.set_state(ckpt["rng"])
        self.state = TrainState(phase=ckpt["phase"], epoch=ckpt["epoch"], encoder_epoch=ckpt["encoder_epoch"],
                                step=ckpt["step"], history=list(ckpt["history"]))

    def scorer_networks(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(G, D, E) as the finished scorer holds them (``run_format.scorer_networks``): the EMA generator, the D the
        encoder is trained against and the scorer reads (the live one, or its average with train.d_ema_decay), E."""
        return tuple(getattr(self, name) for name in scorer_networks(self.cfg.to_dict()))

    # ------------------------------------------------------------------ GAN
    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(device_type="cpu", enabled=False)
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.rng) if self.cfg.train.augment else x

    def _check_finite(self, epoch: int, step: int, **values: torch.Tensor) -> None:
        if all(torch.isfinite(v).all() for v in values.values()):
            return
        shown = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in values.items())
        last = f"epoch {self.state.epoch}" if self.state.epoch else "none yet"
        head = f"training diverged at epoch {epoch + 1}, step {step + 1} ({shown}); last good checkpoint: {last}. "
        fix = "train.loss=wgan-gp, a lower train.lr_d, or model.spectral_norm=true"
        raise TrainingDiverged(head + "Try " + fix, cli=head + "Try --set " + fix)

    def gan_epoch(self, epoch: int, bar: ProgressBar) -> dict:
        t = self.cfg.train
        G, D = self.g_train, self.d_train
        z_dim = self.model_args["z_dim"]
        sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0, "grad_norm_d": 0.0, "grad_norm_g": 0.0}
        use_negatives = t.negatives > 0 and self.x_train.dim() == 4  # images only
        if use_negatives:
            sums["d_negative"] = 0.0  # D's mean verdict on the kept negatives: below d_real once D tells them apart
        batches = self._batches(epoch, t.batch_size)
        start, seen = time.perf_counter(), 0
        self.generator.train()
        self.discriminator.train()
        for i, idx in enumerate(batches):
            real = self.x_train[idx]
            b = real.shape[0]
            # --- discriminator step(s): fake.detach() keeps G out of D's graph
            for k in range(t.n_critic):
                z = torch.randn(b, z_dim, device=self.device, generator=self.rng)
                with self._autocast():
                    with torch.no_grad():
                        fake = self.generator(z)
                    inputs = [self._augment(real), self._augment(fake.detach())]
                    # extra views of the real images ride along in the same D pass, for the auxiliary heads
                    if "projection" in self.aux:
                        inputs.append(diff_augment(real, self.rng))
                    if "rotation" in self.aux:
                        turns = torch.randint(0, 4, (b,), device=self.device, generator=self.rng)
                        inputs.append(rotate_each(real, turns))
                    kept = None
                    if use_negatives:  # NDA: D's verdict on the last rows of its pass
                        n_neg = negative_count(t.negative_rows, t.negatives, b)
                        negatives, kept = spoil(real[:n_neg], t.negative_kinds, self.rng, tuple(t.negative_area))
                        inputs.append(self._augment(negatives))
                    if len(self.aux) == 0:
                        out_all = D(torch.cat(inputs))
                    else:
                        out_all, feats = D(torch.cat(inputs), with_features=True)
                        extra = iter(feats[2 * b:].split(b))
                    out = out_all[:2 * b]
                    out_real, out_fake = out[:b].float(), out[b:].float()
                    out_neg = out_all[-n_neg:].float() if use_negatives else None
                    d_loss = losses.d_loss(t.loss, out_real, out_fake, out_neg, kept, t.negatives)
                    if "projection" in self.aux:  # SimCLR on D's features: each real image picks out its view
                        views = self.aux_train["projection"](torch.cat([feats[:b], next(extra)]))
                        d_loss = d_loss + t.contrastive * losses.nt_xent(views[:b], views[b:])
                    if "rotation" in self.aux:  # SS-GAN: D's features tell how far each real image was turned
                        logits = self.aux_train["rotation"](next(extra)).float()
                        d_loss = d_loss + t.rotation * F.cross_entropy(logits, turns)
                    if t.consistency > 0 and real.dim() == 4:  # bCR: D's verdict should not move under a small shift
                        shifted = D(translate(torch.cat([real, fake.detach()]), self.rng)).float()
                        d_loss = d_loss + t.consistency * (shifted - out.float()).pow(2).mean()
                d_step = self.state.step * t.n_critic + k  # global D step: resumes where it stopped
                if t.loss == "wgan-gp" and t.gp_weight > 0 and d_step % t.gp_every == 0:
                    # lazy regularisation (Karras et al. 2020): same expected penalty at 1/gp_every of the cost
                    n_gp = max(1, round(t.gp_fraction * b))  # the batch is shuffled: its first rows are a sample
                    fake_side = fake[:n_gp].float()
                    if use_negatives:  # the penalty holds D to slope 1 between real images and the whole fake side
                        n_mixed = round(t.negatives * n_gp)  # <= n_neg: the share of n_gp <= b rows
                        fake_side = torch.cat([negatives[:n_mixed].float(), fake_side[n_mixed:]])
                    gp = losses.gradient_penalty(D, real[:n_gp], fake_side, self.rng)
                    d_loss = d_loss + t.gp_weight * t.gp_every * gp
                self._check_finite(epoch, i, d_loss=d_loss)
                self.opt_d.zero_grad(set_to_none=True)
                if self.opt_aux is not None:
                    self.opt_aux.zero_grad(set_to_none=True)
                d_loss.backward()
                gn_d = _grad_norm(self.discriminator)
                self.opt_d.step()
                if self.opt_aux is not None:
                    self.opt_aux.step()
            # --- generator step: D's own (unwrapped) forward, its grads are discarded at the next D step
            z = torch.randn(b, z_dim, device=self.device, generator=self.rng)
            with self._autocast():
                g_out = self.discriminator(self._augment(G(z))).float()
                g_loss = losses.g_loss(t.loss, g_out)
            self._check_finite(epoch, i, d_loss=d_loss, g_loss=g_loss)
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            gn_g = _grad_norm(self.generator)
            self.opt_g.step()
            self.state.step += 1
            if t.ema_decay > 0:
                update_ema(self.generator_ema, self.generator, t.ema_decay, self.state.step)
            else:
                self.generator_ema.load_state_dict(self.generator.state_dict())
            if self.discriminator_ema is not None:
                update_ema(self.discriminator_ema, self.discriminator, t.d_ema_decay, self.state.step)
            for k, v in (("d_loss", d_loss), ("g_loss", g_loss), ("d_real", out_real.mean()),
                         ("d_fake", out_fake.mean())):
                sums[k] += float(v.detach())
            if use_negatives:
                sums["d_negative"] += float(losses.masked_mean(out_neg.detach(), kept))
            sums["grad_norm_d"] += gn_d
            sums["grad_norm_g"] += gn_g
            seen += b * self.world
            bar.update(1, epoch=f"{epoch + 1}/{t.epochs}", d_loss=d_loss.item(), g_loss=g_loss.item(),
                       img_s=seen / max(1e-9, time.perf_counter() - start))
        seconds = time.perf_counter() - start
        row = {"phase": "gan", "epoch": epoch + 1, **{k: v / len(batches) for k, v in sums.items()}}
        self.generator_ema.eval()
        with torch.no_grad():
            ref = self.x_train[: len(self.fixed_z)]
            row["diversity"] = diversity(self.generator_ema(self.fixed_z[: len(ref)]), ref)
        row.update(seconds=seconds, images_per_s=seen / max(seconds, 1e-9))
        return row

    # ------------------------------------------------------------------ encoder
    def encoder_epoch(self, epoch: int, bar: ProgressBar) -> dict:
        """izi_f: ||x - G(E(x))||^2 + kappa * ||f(x) - f(G(E(x)))||^2 with G (EMA) and D frozen."""
        G, D, _ = (m.eval() for m in self.scorer_networks())
        D.requires_grad_(False)
        kappa = self.cfg.encoder.kappa
        self.encoder.train()
        total, start, seen = 0.0, time.perf_counter(), 0
        batches = self._batches(10_000 + epoch, self.cfg.train.batch_size)
        for i, idx in enumerate(batches):
            x = self.x_train[idx]
            with self._autocast():
                f_x = None
                if kappa > 0 or self.encoder.reads_critic_features:
                    with torch.no_grad():  # D is frozen: f(x) is a target, and a critic encoder's input
                        f_x = D.features(x)
                x_hat = G(self.e_train(x, features=f_x))
                loss = F.mse_loss(x_hat.float(), x)
                if kappa > 0:
                    loss = loss + kappa * F.mse_loss(D.features(x_hat).float(), f_x.float())
            self._check_finite(epoch, i, encoder_loss=loss)
            self.opt_e.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_e.step()
            total += loss.item()
            seen += x.shape[0] * self.world
            bar.update(1, epoch=f"{epoch + 1}/{self.cfg.encoder.epochs}", encoder_loss=loss.item())
        self.discriminator.requires_grad_(True)
        seconds = time.perf_counter() - start
        return {"phase": "encoder", "epoch": epoch + 1, "encoder_loss": total / len(batches), "seconds": seconds,
                "images_per_s": seen / max(seconds, 1e-9)}

    # ------------------------------------------------------------------ loop
    def run(self) -> TrainState:
        """Train until the config's GAN and encoder epochs are done, from wherever the state stands. More GAN epochs
        than a finished state holds go back to the GAN phase (the encoder is then trained anew for the new G)."""
        t, s = self.cfg.train, self.state
        steps_per_epoch = len(self._batches(0, t.batch_size))
        if s.epoch < t.epochs and s.phase != "gan":
            s.phase, s.encoder_epoch = "gan", 0
        elif s.phase == "done" and s.encoder_epoch < self.cfg.encoder.epochs:
            s.phase = "encoder"
        if s.phase == "gan":
            remaining = (t.epochs - s.epoch) * steps_per_epoch
            with ProgressBar("train GAN", remaining, enabled=self.verbose and self.rank == 0) as bar:
                while s.epoch < t.epochs:
                    row = self.gan_epoch(s.epoch, bar)
                    s.history.append(row)
                    s.epoch += 1
                    self.on_epoch(self)
            s.phase = "encoder"
        if s.phase == "encoder":
            n_ep = self.cfg.encoder.epochs
            with ProgressBar("train encoder", (n_ep - s.encoder_epoch) * steps_per_epoch,
                             enabled=self.verbose and self.rank == 0) as bar:
                while s.encoder_epoch < n_ep:
                    row = self.encoder_epoch(s.encoder_epoch, bar)
                    s.history.append(row)
                    s.encoder_epoch += 1
                    self.on_epoch(self)
            s.phase = "done"
        return s
