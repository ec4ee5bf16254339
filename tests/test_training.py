import math

import numpy as np
import pandas as pd
import pytest
import torch

from anomgan import AnoGAN
from anomgan.errors import OutputError, TrainingDiverged
from anomgan.models import networks
from anomgan.run_format import load_run
from anomgan.runs import train_run
from anomgan.training import losses
from anomgan.training.stabilisers import (
    CUT_PASTE_AREA,
    cut_out,
    cut_paste,
    diff_augment,
    negative_count,
    spoil,
    translate,
)
from anomgan.training.trainer import rotate_each, rotation_head

from conftest import tiny_config


def _weights(run_dir):
    state = load_run(run_dir).training_state()
    return {k: v for part in ("generator", "generator_ema", "discriminator", "discriminator_ema", "encoder", "aux")
            if part in state for k, v in ((f"{part}.{n}", t) for n, t in state[part].items())}


@pytest.mark.parametrize("loss", ["ns", "minimax", "wgan-gp", "hinge"])
def test_each_loss_trains_without_nan(digits, loss):
    cfg = tiny_config(train__loss=loss, train__n_critic=2 if loss == "wgan-gp" else 1, train__epochs=2)
    det = AnoGAN(config=cfg).fit(digits.x[digits.y == "0"])
    rows = [r for r in det.history_ if r["phase"] == "gan"]
    assert len(rows) == 2
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("d_loss", "g_loss", "d_real", "d_fake", "diversity"))


@pytest.mark.parametrize("trunk", ["own", "critic"])
def test_tabular_training(rng, trunk):
    x = rng.normal(size=(80, 6)).astype(np.float32)
    det = AnoGAN(config=tiny_config(model__encoder_trunk=trunk)).fit(x)
    assert det.preprocessor_.kind == "tabular"
    scores = det.anomaly_score(np.concatenate([x[:5], x[:5] + 25.0]))
    assert scores[5:].min() > scores[:5].max()
    assert det.scorer_.dtype == torch.float64  # tables score in float64: batch-independent to rounding


def test_run_directory_contents(tmp_path, tiny_cfg):
    res = train_run(tiny_cfg, tmp_path / "run")
    for name in ("checkpoint.pt", "metrics.csv", "config.yaml", "samples.png", "run.json"):
        assert (res.run_dir / name).is_file(), name
    assert sorted(p.name for p in (res.run_dir / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    metrics = pd.read_csv(res.run_dir / "metrics.csv")
    assert metrics[metrics.phase == "gan"].epoch.tolist() == [1, 2]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d", "grad_norm_g", "diversity", "seconds",
            "images_per_s"} <= set(metrics.columns)
    with pytest.raises(OutputError, match="already holds a run"):
        train_run(tiny_cfg, res.run_dir)


def test_seed_determinism(tmp_path):
    a = train_run(tiny_config(), tmp_path / "a")
    b = train_run(tiny_config(), tmp_path / "b")
    c = train_run(tiny_config(train__seed=1), tmp_path / "c")
    wa, wb, wc = _weights(a.run_dir), _weights(b.run_dir), _weights(c.run_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    ma, mb = pd.read_csv(a.run_dir / "metrics.csv"), pd.read_csv(b.run_dir / "metrics.csv")
    cols = ["d_loss", "g_loss", "d_real", "d_fake", "diversity"]
    pd.testing.assert_frame_equal(ma[cols], mb[cols])


def test_resume_equivalence(tmp_path):
    full = train_run(tiny_config(train__epochs=2, encoder__epochs=1), tmp_path / "full")
    interrupted = tmp_path / "interrupted"
    _train_and_stop_after(tiny_config(train__epochs=2, encoder__epochs=1), interrupted, gan_epochs=1)
    assert load_run(interrupted).training["epoch"] == 1
    train_run(tiny_config(train__epochs=2, encoder__epochs=1), interrupted, resume=True)
    wf, wr = _weights(full.run_dir), _weights(interrupted)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    metrics = pd.read_csv(interrupted / "metrics.csv")
    assert metrics[metrics.phase == "gan"].epoch.tolist() == [1, 2]  # no missing or duplicated epochs


class _Stop(Exception):
    pass


def _train_and_stop_after(cfg, out, gan_epochs):
    """Train and raise right after the checkpoint of GAN epoch ``gan_epochs`` (like a kill between epochs)."""
    from anomgan import runs

    original = runs.save_run

    def save_then_stop(run_dir, config, phase, training, *args, **kwargs):
        original(run_dir, config, phase, training, *args, **kwargs)
        if phase == "gan" and training["epoch"] == gan_epochs:
            raise _Stop

    runs.save_run = save_then_stop
    try:
        with pytest.raises(_Stop):
            train_run(cfg, out)
    finally:
        runs.save_run = original


def test_nan_loss_is_caught_and_last_checkpoint_kept(tmp_path, monkeypatch):
    out = tmp_path / "nan"
    _train_and_stop_after(tiny_config(train__epochs=3), out, gan_epochs=1)
    monkeypatch.setattr(losses, "g_loss", lambda loss, fake: fake.mean() * float("nan"))
    with pytest.raises(TrainingDiverged, match=r"epoch 2.*last good checkpoint: epoch 1.*wgan-gp"):
        train_run(tiny_config(train__epochs=3), out, resume=True)
    assert load_run(out).training["epoch"] == 1


def test_finished_run_resumes_to_more_epochs(tmp_path):
    """A run saved after training carries its optimisers and RNG: --resume with more epochs trains on from it, the
    encoder anew for the new generator, and lands where an uninterrupted run of that length lands."""
    out = tmp_path / "run"
    first = train_run(tiny_config(train__epochs=1, encoder__epochs=1), out)
    assert load_run(out).phase == "done" and first.detector.threshold_ > -np.inf
    train_run(tiny_config(train__epochs=2, encoder__epochs=1), out, resume=True)
    run = load_run(out)
    assert run.done and run.training["epoch"] == 2 and run.training["encoder_epoch"] == 1
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics[metrics.phase == "gan"].epoch.tolist() == [1, 2]
    straight = train_run(tiny_config(train__epochs=2, encoder__epochs=1), tmp_path / "straight")
    ws, wr = _weights(straight.run_dir), _weights(out)
    assert all(torch.equal(ws[k], wr[k]) for k in ws if not k.startswith("encoder"))


def test_gradient_penalty_is_one_for_unit_slope():
    lin = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, 0.0, 0.0, 0.0]]))
    d = lambda x: lin(x).squeeze(1)  # noqa: E731  gradient norm 2 everywhere -> penalty (2-1)^2 = 1
    gp = losses.gradient_penalty(d, torch.randn(8, 4), torch.randn(8, 4))
    assert gp.item() == pytest.approx(1.0)


def test_diff_augment_keeps_shape_and_changes_content():
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    y = diff_augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)


def test_translate_moves_each_image_by_at_most_an_eighth_and_leaves_tables_alone():
    x = -torch.ones(64, 1, 16, 16)
    x[:, 0, 8, 8] = 1.0  # one white pixel in the middle of a black image
    y = translate(x, torch.Generator().manual_seed(0))
    rows, cols = (y[:, 0] == 1.0).nonzero()[:, 1:].T
    assert len(rows) == 64  # every image keeps its pixel: the shift never pushes it out
    assert (rows - 8).abs().max() <= 2 and (cols - 8).abs().max() <= 2  # 16 / 8 = 2 pixels at most
    assert ((rows != 8) | (cols != 8)).sum() > 32  # most images did move
    table = torch.randn(5, 4)
    assert translate(table) is table


def test_consistency_regularisation_makes_d_agree_with_itself_under_a_shift(digits):
    x = digits.x[digits.y == "0"]

    def shift_disagreement(consistency):
        cfg = tiny_config(train__loss="wgan-gp", train__n_critic=2, train__epochs=4, encoder__epochs=0,
                          train__consistency=consistency)
        det = AnoGAN(config=cfg).fit(x)
        D = det.scorer_.discriminator.eval()
        real = det.preprocessor_.transform(x)
        with torch.no_grad():
            out = D(real).flatten()
            moved = D(translate(real, torch.Generator().manual_seed(1))).flatten()
        return float((out - moved).abs().mean() / out.std())

    assert shift_disagreement(50.0) < 0.5 * shift_disagreement(0.0)


def test_cut_paste_copies_one_rectangle_of_each_image_onto_another_place_in_it():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 24, 40) * 2 - 1  # RGB, not square: every pixel differs from every other
    neg, kept = cut_paste(x, g)
    assert neg.shape == x.shape and kept.all()  # random texture moved anywhere changes a lot
    for img, out in zip(x, neg):
        changed = (out != img).any(0).nonzero()  # (N, 2) rows and columns that differ
        (r0, c0), (r1, c1) = changed.min(0).values.tolist(), changed.max(0).values.tolist()
        h, w = r1 - r0 + 1, c1 - c0 + 1
        assert len(changed) == h * w  # one filled rectangle ...
        assert CUT_PASTE_AREA[0] * 24 * 40 * 0.5 <= h * w <= CUT_PASTE_AREA[1] * 24 * 40 * 1.5  # ... of 2-15 % area
        patch = out[:, r0:r1 + 1, c0:c1 + 1]
        windows = img.unfold(1, h, 1).unfold(2, w, 1)  # (C, H-h+1, W-w+1, h, w): every same-size rectangle
        assert (windows == patch[:, None, None]).all(-1).all(-1).all(0).any()  # copied from the same image
    plain = torch.full((4, 1, 16, 16), -1.0)  # background moved onto background is no negative
    assert not cut_paste(plain, g)[1].any()


def test_cut_out_blanks_one_rectangle_of_each_image_to_its_median_tone():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 3, 24, 40) * 2 - 1
    neg, kept = cut_out(x, g)
    assert neg.shape == x.shape and kept.all()  # random texture blanked changes a lot
    tone = x.flatten(2).median(dim=2).values  # (B, C)
    for img, out, t in zip(x, neg, tone):
        changed = (out != img).any(0).nonzero()
        (r0, c0), (r1, c1) = changed.min(0).values.tolist(), changed.max(0).values.tolist()
        h, w = r1 - r0 + 1, c1 - c0 + 1
        assert len(changed) == h * w  # one filled rectangle of 2-15 % of the area ...
        assert CUT_PASTE_AREA[0] * 24 * 40 * 0.5 <= h * w <= CUT_PASTE_AREA[1] * 24 * 40 * 1.5
        assert (out[:, r0:r1 + 1, c0:c1 + 1] == t.view(3, 1, 1)).all()  # ... of the image's own median, per channel
    digit = torch.full((8, 1, 16, 16), -1.0)
    digit[:, :, 7:9, :] = 1.0  # a thin bar on background: a rectangle off the bar blanks nothing
    neg, kept = cut_out(digit, torch.Generator().manual_seed(0))
    touched = (neg != digit).flatten(1).any(1)
    assert torch.equal(kept, touched) and not kept.all()


@pytest.mark.parametrize("kind", ["cutpaste", "cutout"])
def test_negative_area_sets_the_share_of_the_image_each_rectangle_covers(kind):
    x = torch.rand(64, 1, 32, 32) * 2 - 1
    for area in [(0.01, 0.03), (0.3, 0.4)]:
        neg, _ = spoil(x, [kind], torch.Generator().manual_seed(5), area)
        share = (neg != x).any(1).flatten(1).float().mean(1)  # changed pixels (the rectangle), per image
        assert area[0] * 0.5 <= share.min() and share.max() <= area[1] * 1.5  # rounding to whole pixels aside
    small, large = (spoil(x, [kind], torch.Generator().manual_seed(5), a)[0] for a in [(0.01, 0.03), (0.3, 0.4)])
    assert (small != x).sum() * 5 < (large != x).sum()


def test_spoil_draws_one_kind_per_image_and_one_kind_alone_is_that_kind():
    x = torch.rand(64, 1, 16, 16) * 2 - 1
    alone, mixed = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(spoil(x, ["cutpaste"], alone), cut_paste(x, mixed)))
    assert torch.equal(alone.get_state(), mixed.get_state())  # no extra draw: round fifteen's runs stay bit for bit
    neg, kept = spoil(x, ["cutpaste", "cutout"], torch.Generator().manual_seed(4))
    tone = x.flatten(2).median(dim=2).values.view(-1)
    blanked = torch.stack([((n != i) <= (n == t)).all() for n, i, t in zip(neg, x, tone)])  # changed -> the tone
    assert kept.all() and 10 < int(blanked.sum()) < 54  # both kinds, about half each


def test_negative_loss_averages_the_fake_term_over_kept_negatives_only():
    out = torch.tensor([1.0, -2.0, 3.0])
    for loss in ("ns", "hinge", "wgan-gp"):
        kept = torch.tensor([True, False, True])
        expected = losses.fake_term(loss, out[kept]).mean()
        assert losses.negative_loss(loss, out, kept) == pytest.approx(float(expected))
        assert losses.negative_loss(loss, out, torch.zeros(3, dtype=torch.bool)) == 0.0
        real = torch.tensor([0.5, -0.5])
        assert losses.d_loss(loss, real, out) == pytest.approx(float(losses.real_term(loss, real).mean()
                                                                     + losses.fake_term(loss, out).mean()))
        neg, kept = torch.tensor([0.2, 4.0]), torch.tensor([True, False])  # the mixture: a quarter negatives
        assert losses.d_loss(loss, real, out, neg, kept, 0.25) == pytest.approx(float(
            losses.real_term(loss, real).mean() + 0.75 * losses.fake_term(loss, out).mean()
            + 0.25 * losses.fake_term(loss, neg[:1]).mean()))


@pytest.mark.parametrize("rows, per_pass", [("batch", 32), ("share", 8)])
def test_negatives_are_the_share_of_d_s_fake_side_and_of_the_penalty(digits, monkeypatch, rows, per_pass):
    """With train.negatives, every critic step scores CutPaste negatives of the real images (one per real image, or
    with train.negative_rows=share only the share's rows), and that share of the penalty's interpolates runs from real
    images to their own negatives instead of to G's images."""
    seen = {"neg": [], "gp": []}  # negative_loss's (rows, kept rows); the penalty's (real, fake side)
    real_negative_loss, real_gp = losses.negative_loss, losses.gradient_penalty

    def negative_loss(loss, out, kept):
        seen["neg"].append((out.shape[0], int(kept.sum())))
        return real_negative_loss(loss, out, kept)

    def gradient_penalty(discriminator, real, fake, generator=None):
        seen["gp"].append((real, fake))
        return real_gp(discriminator, real, fake, generator)

    monkeypatch.setattr(losses, "negative_loss", negative_loss)
    monkeypatch.setattr(losses, "gradient_penalty", gradient_penalty)
    x = digits.x[digits.y == "0"]
    det = AnoGAN(config=tiny_config(train__loss="wgan-gp", train__epochs=1, train__batch_size=32, encoder__epochs=0,
                                    train__negatives=0.25, train__negative_rows=rows)).fit(x)
    assert seen["neg"] and all(n == per_pass and 0 < k <= n for n, k in seen["neg"])  # D's verdicts on negatives
    assert seen["gp"]
    for real, fake in seen["gp"]:
        moved = (fake - real).flatten(1).ne(0).float().mean(1)  # share of pixels unlike the real image, per row
        assert moved[:8].max() <= 0.2 and moved[8:].min() > 0.5  # a quarter: its own negative (one patch), then G's
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["d_negative"])  # metrics.csv: D on the negatives
               for r in det.history_ if r["phase"] == "gan")
    seen["neg"].clear()
    plain = AnoGAN(config=tiny_config(train__epochs=1, encoder__epochs=0)).fit(x)
    assert not seen["neg"] and "d_negative" not in plain.history_[0]  # off by default


def test_negative_count_is_the_whole_batch_or_the_share_s_rows_at_least_one():
    assert [negative_count("batch", 0.15, b) for b in (1, 64)] == [1, 64]
    assert [negative_count("share", 0.15, b) for b in (1, 3, 64, 100)] == [1, 1, 10, 15]
    assert negative_count("share", 0.99, 2) == 2  # never more than the batch


def test_negative_kinds_reach_the_trainer_s_negatives(digits, monkeypatch):
    from anomgan.training import trainer as trainer_module
    kinds, real_spoil = [], trainer_module.spoil

    def spoil(x, names, generator=None, area=CUT_PASTE_AREA):
        kinds.append(list(names))
        return real_spoil(x, names, generator, area)

    monkeypatch.setattr(trainer_module, "spoil", spoil)
    x = digits.x[digits.y == "0"]
    AnoGAN(config=tiny_config(train__epochs=1, train__batch_size=32, encoder__epochs=0, train__negatives=0.25,
                              train__negative_kinds=["cutout"])).fit(x)
    assert kinds and all(k == ["cutout"] for k in kinds)


def test_lazy_gradient_penalty_runs_on_every_kth_critic_step(digits, monkeypatch):
    calls = []
    real_gp = losses.gradient_penalty

    def counting_gp(*args, **kwargs):
        calls.append(1)
        return real_gp(*args, **kwargs)

    monkeypatch.setattr(losses, "gradient_penalty", counting_gp)
    x = digits.x[digits.y == "0"]
    # 1 epoch, batch 32 over ~160 training images -> a known number of critic steps
    cfg = tiny_config(train__loss="wgan-gp", train__n_critic=2, train__epochs=1, encoder__epochs=0)
    AnoGAN(config=cfg).fit(x)
    every_step = len(calls)
    calls.clear()
    cfg = tiny_config(train__loss="wgan-gp", train__n_critic=2, train__epochs=1, encoder__epochs=0,
                      train__gp_every=3)
    det = AnoGAN(config=cfg).fit(x)
    assert every_step >= 6
    assert len(calls) == math.ceil(every_step / 3)  # critic steps 0, 3, 6, ...
    assert all(math.isfinite(r["d_loss"]) for r in det.history_ if r["phase"] == "gan")


def test_gradient_penalty_fraction_uses_a_share_of_each_batch(digits, monkeypatch):
    sizes = []
    real_gp = losses.gradient_penalty

    def sizing_gp(discriminator, real, fake, generator=None):
        sizes.append((real.shape[0], fake.shape[0]))
        return real_gp(discriminator, real, fake, generator)

    monkeypatch.setattr(losses, "gradient_penalty", sizing_gp)
    x = digits.x[digits.y == "0"]
    common = dict(train__loss="wgan-gp", train__epochs=1, train__batch_size=32, encoder__epochs=0)
    AnoGAN(config=tiny_config(**common)).fit(x)
    assert sizes and set(sizes) == {(32, 32)}
    sizes.clear()
    det = AnoGAN(config=tiny_config(**common, train__gp_fraction=0.25)).fit(x)
    assert sizes and set(sizes) == {(8, 8)}
    assert all(math.isfinite(r["d_loss"]) for r in det.history_ if r["phase"] == "gan")


def test_channels_last_models_match_contiguous_inputs():
    from anomgan.models import build_models

    torch.manual_seed(0)
    g, d, e = build_models({"kind": "image", "z_dim": 4, "width": 4, "depth": 2, "spectral_norm": True,
                            "channels": 1, "image_size": 8})
    d.eval()
    x = torch.rand(3, 1, 8, 8)
    out_a, f_a = d.forward_with_features(x)
    out_b, f_b = d.forward_with_features(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out_a, out_b) and torch.allclose(f_a, f_b)
    # features keep the logical (C, H, W) order whatever the layout: the first map's first row comes first
    trunk_maps = d.trunk.body(x)
    assert torch.allclose(f_a[:, :trunk_maps.shape[-1]], trunk_maps[:, 0, 0])
    assert g(torch.randn(2, 4)).shape == (2, 1, 8, 8)


def test_nt_xent_is_low_when_each_row_finds_its_own_view():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 8, generator=g)
    same = losses.nt_xent(a, a + 0.01 * torch.randn(16, 8, generator=g))
    shuffled = losses.nt_xent(a, a[torch.randperm(16, generator=g)])
    assert same < 0.5 * shuffled
    assert same > 0  # the other 30 rows still take some of the softmax


def _view_gap(det, x):
    """Mean cosine similarity of D's features of each real image to those of its own translated + cut view, minus
    that to the other images' views: how far D's features tell an image's view from the rest."""
    D = det.scorer_.discriminator.eval()
    real = det.preprocessor_.transform(x)
    with torch.no_grad():
        f = torch.nn.functional.normalize(D.features(real), dim=1)
        v = torch.nn.functional.normalize(D.features(diff_augment(real, torch.Generator().manual_seed(3))), dim=1)
    sim, n = f @ v.T, len(x)
    return float(sim.diag().mean() - (sim.sum() - sim.diag().sum()) / (n * n - n))


def test_contrastive_training_makes_d_features_find_each_image_s_view(digits):
    x = digits.x[digits.y == "0"]
    gaps = {w: _view_gap(AnoGAN(config=tiny_config(train__epochs=30, encoder__epochs=0, train__contrastive=w)).fit(x),
                         x) for w in (0.0, 5.0)}
    assert gaps[5.0] > 2 * gaps[0.0] > 0


@pytest.mark.parametrize("weight, head", [("contrastive", "projection"), ("rotation", "rotation")])
def test_aux_head_is_checkpointed_resumes_identically_and_reaches_d(tmp_path, weight, head):
    cfg = tiny_config(train__epochs=2, encoder__epochs=1, **{f"train__{weight}": 1.0})
    full = train_run(cfg, tmp_path / "full")
    assert load_run(full.run_dir).training["aux_names"] == [head]
    interrupted = tmp_path / "interrupted"
    _train_and_stop_after(cfg, interrupted, gan_epochs=1)
    train_run(cfg, interrupted, resume=True)
    wf, wr = _weights(full.run_dir), _weights(interrupted)
    assert any(k.startswith(f"aux.{head}.") for k in wf)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)  # the head and its optimiser resume bit for bit
    plain = _weights(train_run(tiny_config(train__epochs=2, encoder__epochs=1), tmp_path / "plain").run_dir)
    assert not all(torch.equal(wf[k], plain[k]) for k in plain)  # the term does reach G and D


def test_rotate_each_turns_every_image_by_its_own_quarter_turns():
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    x = torch.cat([x, x + 100])  # 4 images
    turns = torch.tensor([0, 1, 2, 3])
    out = rotate_each(x, turns)
    for i, k in enumerate(turns.tolist()):
        assert torch.equal(out[i], torch.rot90(x[i], k, dims=(1, 2)))


def _rotation_accuracy(run_dir, x):
    """How often the run's trained rotation head names the quarter turn of each (turned) image from D's features."""
    det = AnoGAN.load(run_dir, device="cpu")
    head = rotation_head(det.scorer_.discriminator.feature_dim)
    head.load_state_dict({k.removeprefix("rotation."): v for k, v in load_run(run_dir).training_state()["aux"].items()})
    real = det.preprocessor_.transform(x)
    turns = torch.arange(len(real)) % 4
    with torch.no_grad():
        pred = head(det.scorer_.discriminator.eval().features(rotate_each(real, turns))).argmax(1)
    return float((pred == turns).float().mean())


def test_rotation_head_learns_the_turns(digits, tmp_path):
    x = digits.x[digits.y == "0"]
    learned = train_run(tiny_config(train__epochs=25, encoder__epochs=0, train__rotation=1.0), tmp_path / "long")
    assert _rotation_accuracy(learned.run_dir, x) > 0.5  # chance is 0.25


def test_d_average_is_what_the_scorer_gets_and_training_never_reads_it(tmp_path):
    cfg = tiny_config(train__epochs=2, encoder__epochs=1, train__d_ema_decay=0.9)
    avg = _weights(train_run(cfg, tmp_path / "avg").run_dir)
    plain = _weights(train_run(tiny_config(train__epochs=2, encoder__epochs=1), tmp_path / "plain").run_dir)
    assert "discriminator_ema.head.bias" in avg and "discriminator_ema.head.bias" not in plain
    live = [k for k in plain if k.startswith(("generator", "discriminator"))]
    assert all(torch.equal(avg[k], plain[k]) for k in live)  # G and D train exactly as without the average
    assert not torch.equal(avg["encoder.head.weight"], plain["encoder.head.weight"])  # E learns the average's space
    scorer_d = AnoGAN.load(tmp_path / "avg").scorer_.discriminator.state_dict()
    assert all(torch.equal(t, avg[f"discriminator_ema.{n}"]) for n, t in scorer_d.items())
    assert not torch.equal(scorer_d["head.bias"], avg["discriminator.head.bias"])


def test_d_average_is_checkpointed_and_resumes_identically(tmp_path):
    cfg = tiny_config(train__epochs=2, encoder__epochs=1, train__d_ema_decay=0.9)
    full = train_run(cfg, tmp_path / "full")
    interrupted = tmp_path / "interrupted"
    _train_and_stop_after(cfg, interrupted, gan_epochs=1)
    train_run(cfg, interrupted, resume=True)
    wf, wr = _weights(full.run_dir), _weights(interrupted)
    assert any(k.startswith("discriminator_ema.") for k in wf)
    assert wf.keys() == wr.keys() and all(torch.equal(wf[k], wr[k]) for k in wf)


def test_critic_encoder_trains_a_head_on_the_scorer_s_d_and_scores_without_a_second_d_pass(tmp_path, digits):
    weights = {"d_score": 0.5, "residual": 1.0, "feature_knn": 5.0, "layer_maha": 10.0}  # no pass on G(E(x))
    cfg = tiny_config(train__epochs=2, encoder__epochs=2, model__encoder_trunk="critic", score__weights=weights)
    critic = _weights(train_run(cfg, tmp_path / "critic").run_dir)
    plain = _weights(train_run(tiny_config(train__epochs=2, encoder__epochs=2), tmp_path / "plain").run_dir)
    live = [k for k in plain if k.startswith(("generator", "discriminator"))]
    assert all(torch.equal(critic[k], plain[k]) for k in live)  # G and D train exactly as with E's own trunk
    assert {k.split(".")[1] for k in critic if k.startswith("encoder.")} == {"head"}  # no trunk of its own
    from anomgan.models import build_models

    det = AnoGAN.load(tmp_path / "critic")
    sc = det.scorer_
    untrained = build_models(sc.spec.model_args)[2]
    assert not torch.equal(sc.encoder.head[0].weight, untrained.head[0].weight)  # the encoder phase trained it
    x = det.preprocessor_.transform(digits.x[:40])
    with torch.no_grad():
        expected = (x - sc.generator(sc.encoder.head(sc.discriminator.features(x)))).abs().flatten(1).mean(1)
    calls = []
    features = sc.discriminator.features
    sc.discriminator.features = lambda t: calls.append(len(t)) or features(t)
    got = sc.component_values(x)["residual"]
    assert calls == []  # the encoder reads the features of D's own scoring pass
    assert torch.allclose(got, expected, atol=1e-6)


def test_critic_encoder_learns_the_d_average_and_resumes_identically(tmp_path):
    cfg = tiny_config(train__epochs=2, encoder__epochs=1, model__encoder_trunk="critic", train__d_ema_decay=0.9)
    full = train_run(cfg, tmp_path / "full")
    interrupted = tmp_path / "interrupted"
    _train_and_stop_after(cfg, interrupted, gan_epochs=1)
    train_run(cfg, interrupted, resume=True)
    wf, wr = _weights(full.run_dir), _weights(interrupted)
    assert wf.keys() == wr.keys() and all(torch.equal(wf[k], wr[k]) for k in wf)
    live_d = _weights(train_run(tiny_config(train__epochs=2, encoder__epochs=1, model__encoder_trunk="critic"),
                                tmp_path / "live").run_dir)
    assert not torch.equal(wf["encoder.head.0.weight"], live_d["encoder.head.0.weight"])  # trained on the average
    sc = AnoGAN.load(full.run_dir).scorer_
    assert sc.encoder._critic[0] is sc.discriminator  # the scorer's E reads the scorer's D (the average)


def test_amp_trains_d_and_g_in_bfloat16_on_the_cpu_and_the_penalty_in_float32(digits, monkeypatch):
    """train.amp on a CPU: D's and G's steps run under bf16 autocast (AMX tiles make them ~2x faster), the
    WGAN-GP penalty's double backward stays float32, and the finished detector scores as usual."""
    seen = {"autocast": [], "gp": []}
    real_gp = losses.gradient_penalty

    def gradient_penalty(discriminator, real, fake, generator=None):
        seen["gp"].append(torch.is_autocast_enabled("cpu"))
        return real_gp(discriminator, real, fake, generator)

    monkeypatch.setattr(losses, "gradient_penalty", gradient_penalty)
    x = digits.x[digits.y == "0"]
    real_forward = networks._Discriminator.forward

    def forward(self, *args, **kwargs):
        seen["autocast"].append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(networks._Discriminator, "forward", forward)
    det = AnoGAN(config=tiny_config(train__loss="wgan-gp", train__epochs=1, train__batch_size=32, encoder__epochs=1,
                                    train__amp=True)).fit(x)
    assert (True, torch.bfloat16) in seen["autocast"]  # D's training passes ran in bf16
    assert seen["gp"] and not any(seen["gp"])  # the penalty did not
    assert np.isfinite(det.anomaly_score(digits.x[:20])).all()
