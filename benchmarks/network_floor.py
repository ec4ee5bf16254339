"""How fast each network pass of the encoder path runs on this CPU, and whether compilation moves it (issue 20).

    python benchmarks/network_floor.py --run runs/m3 --out reports/benchmarks/network-floor.csv

Times, on 4,096 model-space inputs in batches of 512 under ``torch.inference_mode`` (median of ``--repeats``),
the run's own D (with its pooled layers, as ``layer_maha`` needs), encoder, G and D's features; then a plain copy
of D's trunk (spectral norm folded into the weights) in NCHW and channels-last layout, compiled by
``torch.compile`` and frozen by ``torch.jit.freeze``: what the networks cost when nothing else does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from common import machine_label, timed  # this script's folder is on sys.path

from anomgan import AnoGAN


def plain_trunk(trunk: torch.nn.Module) -> torch.nn.Sequential:
    """D's trunk with its spectral-normalised weights copied into plain convolutions."""
    layers = []
    for m in trunk.body:
        if isinstance(m, torch.nn.Conv2d):
            c = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
            c.weight.data, c.bias.data = m.weight.detach().clone(), m.bias.detach().clone()
            layers.append(c)
        else:
            layers.append(torch.nn.LeakyReLU(0.2))
    return torch.nn.Sequential(*layers).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/network-floor.csv"))
    args = ap.parse_args()
    det = AnoGAN.load(args.run, device="cpu")
    scorer = det.scorer_
    x = scorer.preprocess(torch.rand(args.n, *det.preprocessor_.in_shape))  # the run's input size, in [0, 1]
    batches = list(x.split(512))
    d, e, g = scorer.discriminator, scorer.encoder, scorer.generator
    rows = []
    with torch.inference_mode():
        z = [e(b) for b in batches]
        stages = {"D with pooled layers": lambda: [d.forward_with_maps(b) for b in batches],
                  "encoder": lambda: [e(b) for b in batches],
                  "G": lambda: [g(zb) for zb in z],
                  "D features": lambda: [d.features(b) for b in batches]}
        plain = plain_trunk(d.trunk)
        last = plain_trunk(d.trunk).to(memory_format=torch.channels_last)
        stages["D trunk, plain NCHW"] = lambda: [plain(b.contiguous()) for b in batches]
        stages["D trunk, plain channels-last"] = lambda: [last(b.contiguous(memory_format=torch.channels_last))
                                                          for b in batches]
        try:
            compiled = torch.compile(plain)
            compiled(batches[0])
            stages["D trunk, torch.compile"] = lambda: [compiled(b) for b in batches]
        except Exception as exc:  # no C++ toolchain: say so in the table instead of failing
            print(f"torch.compile unavailable: {str(exc).splitlines()[0]}")
        frozen = torch.jit.freeze(torch.jit.trace(plain, batches[0]))
        stages["D trunk, torch.jit.freeze"] = lambda: [frozen(b) for b in batches]
        for name, fn in stages.items():
            fn()  # warm-up
            seconds = timed(fn, args.repeats)
            rows.append({"stage": name, "seconds": seconds, "images_per_s": args.n / seconds, "n": args.n,
                         "machine": machine_label()})
            print(f"{name:32s} {rows[-1]['images_per_s']:8.0f} img/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
