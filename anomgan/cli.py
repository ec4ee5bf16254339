"""anomgan command line: each command maps its options to one library call and prints a summary.

Errors are one line on stderr (``Error: ...``) with a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="GAN-based anomaly detection: learn normal from normal samples only.")

Method = Annotated[Optional[str], typer.Option(help="Inversion: encoder | iterative | hybrid (default from the run).")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda")]
RunDir = Annotated[Path, typer.Option(help="Run directory from 'anomgan train'.")]


def _echo_err(msg: str) -> None:
    typer.echo(msg, err=True)


def handle_errors(fn):
    """Turn library errors into one line + exit code; keep tracebacks for --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from anomgan.errors import AnomganError

        debug = _options["debug"]
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except AnomganError as exc:
            if debug:
                raise
            _echo_err(f"Error: {exc.cli_message}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _echo_err("Interrupted: finished epochs are kept in the last checkpoint; continue with --resume")
            raise typer.Exit(130) from None
        except Exception as exc:  # unexpected: still one line unless --debug
            if debug:
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            _echo_err(f"Error: unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)")
            raise typer.Exit(1) from None

    return wrapper


_options = {"debug": False}  # set by the app callback on every invocation


@app.callback()
def main_options(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False):
    _options["debug"] = debug


def _print_report(report) -> None:
    cols = ["component", "roc_auc", "average_precision", "tpr", "fpr", "precision", "f1"]
    cols += [c for c in ("pixel_roc_auc", "aupro") if c in report]
    overall = report[report["anomalous_class"] == "all"][cols]
    typer.echo(overall.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    per_class = report[(report["component"] == "anomaly_score") & (report["anomalous_class"] != "all")]
    if len(per_class) > 1:
        typer.echo("\nper held-out class (anomaly_score):")
        cols = ["anomalous_class", "n_anomalous", "roc_auc", "average_precision"]
        cols += [c for c in ("pixel_roc_auc", "aupro") if c in report]
        typer.echo(per_class[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _resolve_config(config: Optional[Path], flags: dict, overrides: list[str], base_run: Optional[Path] = None):
    from anomgan.config import build_config

    if config is None and base_run is not None and (base_run / "config.yaml").is_file():
        config = base_run / "config.yaml"  # a resumed run continues with its own config
    return build_config(config, flags=flags, overrides=overrides)


def _default_report(name: str) -> Path:
    """Default destinations live in reports/, created on demand (a user-given --out folder must exist)."""
    Path("reports").mkdir(exist_ok=True)
    return Path("reports") / name


def _class_flag(text: Optional[str]):
    from anomgan.config import parse_class_list

    return parse_class_list(text) if text else None


@app.command(epilog="Example: anomgan train --config configs/digits.yaml --normal-classes 0 --out runs/d0 --evaluate")
@handle_errors
def train(
    config: Annotated[Optional[Path], typer.Option(help="YAML run config (see configs/).")] = None,
    data: Annotated[Optional[str], typer.Option(
        help="Source: digits | mnist | fashion-mnist | cifar10 | a path.")] = None,
    data_root: Annotated[Optional[str], typer.Option(help="Folder holding torchvision data sets.")] = None,
    normal_classes: Annotated[Optional[str], typer.Option(help="Normal classes: '0', '0,3', '0-4'.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<data>-<classes>).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="GAN epochs.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for splits, weights and noise.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the checkpoint in --out.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over, replacing the run in --out.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: section.key=value.")] \
        = None,
    evaluate: Annotated[bool, typer.Option("--evaluate", help="Evaluate on the test split after training.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
):
    """Train a GAN, its encoder and the calibrated score on normal data only."""
    from anomgan.distributed import distributed
    from anomgan.runs import evaluate_run, train_run
    from anomgan.training.trainer import dist_info

    flags = {"data.source": data, "data.root": data_root, "data.normal_classes": _class_flag(normal_classes),
             "train.epochs": epochs, "train.seed": seed, "train.device": device}
    cfg = _resolve_config(config, flags, set_ or [], out if resume else None)
    if out is None:
        classes = "-".join(map(str, cfg.data.normal_classes or ["all"]))
        out = Path("runs") / f"{Path(cfg.data.source).stem}-{classes}"
    with distributed(cfg.train.device) as dev:
        cfg.train.device = dev
        result = train_run(cfg, out, resume=resume, force=force, verbose=not quiet)
        if dist_info()[0] != 0:
            return
    h = [r for r in result.detector.history_ if r["phase"] == "gan"]
    typer.echo(f"trained {result.run_dir} on {result.n_train} normal samples ({result.n_val} for calibration) "
               f"in {result.seconds:.1f}s" + (f"; last epoch d_loss={h[-1]['d_loss']:.3f} g_loss={h[-1]['g_loss']:.3f}"
                                               if h else ""))
    if evaluate:
        report_path = _default_report(f"{result.run_dir.resolve().name}.csv")
        ev = evaluate_run(result.run_dir, out=report_path, force=force, device=cfg.train.device, verbose=not quiet)
        _print_report(ev.report)
        typer.echo(f"report: {report_path}")


@app.command(epilog="Example: anomgan score --run runs/d0 --input new_batch.npy --out reports/scores.csv")
@handle_errors
def score(
    run: Annotated[Path, typer.Option(help="Run directory from 'anomgan train', or an .onnx from 'anomgan export'.")],
    input: Annotated[str, typer.Option(
        help="Samples: .npy/.npz/.csv/.parquet/image/image folder or a named source.")],
    method: Method = None,
    steps: Annotated[Optional[int], typer.Option(
        help="Inversion steps (iterative) or refinement steps (hybrid).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Per-sample scores, .csv or .parquet (default reports/scores.csv).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Samples per batch (bounds memory).")] = None,
    num_workers: Annotated[Optional[int], typer.Option(help="DataLoader workers for image folders.")] = None,
    save_reconstructions: Annotated[Optional[Path], typer.Option(
        help="Folder for a PNG of x | G(z*) | residual of the top-k scores.")] = None,
    top_k: Annotated[int, typer.Option(help="How many top scores --save-reconstructions shows.")] = 16,
    save_maps: Annotated[Optional[Path], typer.Option(
        help="Folder for one float32 .npy anomaly map per image, at its original size (runs with maps).")] = None,
    overlays: Annotated[Optional[Path], typer.Option(
        help="Folder for one PNG per image: image | heat map | overlay (runs with maps).")] = None,
    engine: Annotated[str, typer.Option(help="local | ray (Ray Data and a pool of actors; encoder path).")] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="--engine ray: HOST:PORT of a running Ray cluster (default: start a local one).")] = None,
    workers: Annotated[int, typer.Option(help="--engine ray: scoring actors.")] = 1,
    device: Device = "auto",
    force: Force = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
):
    """Score new samples: one CSV or Parquet row per sample (higher anomaly_score = more anomalous)."""
    from anomgan.runs import score_input

    out = out or _default_report("scores.csv")
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"--engine must be local or ray, got {engine!r}")
    if engine == "ray":
        from anomgan.errors import ConfigError
        from anomgan.ray_engine import score_with_ray

        extra = [flag for flag, v in (("--save-maps", save_maps), ("--overlays", overlays),
                                      ("--save-reconstructions", save_reconstructions), ("--steps", steps)) if v]
        if extra or (method or "encoder") != "encoder":
            raise ConfigError(f"--engine ray scores by the encoder path into one table; "
                              f"{', '.join(extra) or '--method ' + str(method)} needs --engine local")
        res = score_with_ray(run, input, out, address, workers, batch_size, force, verbose=not quiet)
    elif address is not None:
        raise typer.BadParameter("--address applies to --engine ray")
    else:
        res = score_input(run, input, out, method, steps, batch_size, num_workers, save_reconstructions, top_k,
                          force, device, verbose=not quiet, save_maps=save_maps, overlays=overlays)
    typer.echo(f"scored {res.n} samples in {res.seconds:.1f}s: {res.n_flagged} above the threshold "
               f"{res.threshold:.3f} -> {res.out}")
    for path in res.reconstructions:
        typer.echo(f"reconstructions: {path}")


@app.command(epilog="Example: anomgan evaluate --run runs/d0 --method hybrid --out reports/d0.csv")
@handle_errors
def evaluate(
    run: RunDir,
    method: Method = None,
    steps: Annotated[Optional[int], typer.Option(help="Inversion/refinement steps.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Report CSV (default reports/<run>-<method>.csv).")] = None,
    data_root: Annotated[Optional[str], typer.Option(help="Override the run's data root.")] = None,
    save_maps: Annotated[Optional[Path], typer.Option(
        help="Folder for one float32 .npy anomaly map per test image, at its original size (runs with maps).")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Also write the evaluation as one HTML page.")] = None,
    device: Device = "auto",
    force: Force = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
):
    """ROC-AUC / average precision on the held-out test split, per component and per anomalous class (and pixel
    ROC-AUC / AUPRO for runs with anomaly maps on data with masks)."""
    from anomgan.io import check_output
    from anomgan.runs import evaluate_run

    out = out or _default_report(f"{run.resolve().name}-{method or 'default'}.csv")
    if html is not None:
        check_output(html, force, "HTML report")
    ev = evaluate_run(run, out, method, steps, data_root, force, device=device, verbose=not quiet,
                      save_maps=save_maps)
    _print_report(ev.report)
    typer.echo(f"report: {ev.out} (+ scores, ROC, histogram and reconstruction PNGs beside it)")
    if html is not None:
        from anomgan.report import render_evaluation

        typer.echo(f"html: {render_evaluation(ev, run, html, method)}")


@app.command(epilog="Example: anomgan report --run runs/d0 --out reports/d0.html")
@handle_errors
def report(
    run: RunDir,
    out: Annotated[Path, typer.Option(help="HTML file: one self-contained page, every picture embedded.")],
    method: Method = None,
    data_root: Annotated[Optional[str], typer.Option(help="Override the run's data root.")] = None,
    device: Device = "auto",
    force: Force = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
):
    """Evaluate the run on its held-out test split and write one HTML page a person opens in a browser: summary,
    threshold, ROC / PR curves per class, histogram, tables, training curves, top anomalies and misses (with heat
    maps and masks for real-image runs), samples from G, config and metadata."""
    from anomgan.io import check_output
    from anomgan.report import render_evaluation
    from anomgan.runs import evaluate_run

    check_output(out, force, "HTML report")
    ev = evaluate_run(run, None, method, None, data_root, force, device=device, verbose=not quiet)
    headline = ev.report[(ev.report.anomalous_class == "all") & (ev.report.component == "anomaly_score")].iloc[0]
    typer.echo(f"ROC-AUC {headline.roc_auc:.4f}, AP {headline.average_precision:.4f} on {len(ev.scores)} test samples")
    typer.echo(f"html: {render_evaluation(ev, run, out, method)}")


@app.command(epilog="Example: anomgan benchmark --data digits --protocol one-class --classes 0-9 "
                    "--out reports/digits-one-class.csv")
@handle_errors
def benchmark(
    config: Annotated[Optional[Path], typer.Option(help="YAML run config.")] = None,
    data: Annotated[Optional[str], typer.Option(help="Source (labelled).")] = None,
    data_root: Annotated[Optional[str], typer.Option(help="Folder holding torchvision data sets.")] = None,
    protocol: Annotated[str, typer.Option(help="one-class | leave-one-out")] = "one-class",
    classes: Annotated[Optional[str], typer.Option(help="Classes to run, e.g. 0-9 (default: all).")] = None,
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0,1,2.")] = "0",
    method: Method = None,
    epochs: Annotated[Optional[int], typer.Option(help="GAN epochs per case.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Cases CSV (default reports/benchmark.csv); <stem>.summary.csv is written beside it.")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option(help="Where case runs live (default <out stem>.runs/).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: section.key=value.")] \
        = None,
    html: Annotated[Optional[Path], typer.Option(help="Also write one HTML summary page across classes and seeds.")] \
        = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
):
    """Train and evaluate one case per (class, seed); resumable: finished cases are skipped."""
    from anomgan.benchmark import run_benchmark
    from anomgan.config import parse_int_list

    flags = {"data.source": data, "data.root": data_root, "train.epochs": epochs, "train.device": device}
    cfg = _resolve_config(config, flags, set_ or [])

    def on_case(row: dict) -> None:
        typer.echo(f"{row['protocol']} normal={row['normal_classes']} seed={row['seed']}: "
                   f"ROC-AUC {row['roc_auc']:.4f} (train {row['train_seconds']:.0f}s)")

    out = out or _default_report("benchmark.csv")
    res = run_benchmark(cfg, protocol, _class_flag(classes), parse_int_list(seeds), out, runs_dir, method,
                        verbose=not quiet, on_case=on_case)
    if res.skipped:
        typer.echo(f"skipped {res.skipped} finished case(s) already in {out}")
    cols = [c for c in ("normal_classes", "roc_auc_mean", "roc_auc_std", "train_seconds_mean") if c in res.summary]
    typer.echo(res.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(f"cases: {res.out}\nsummary: {res.summary_out}")
    if html is not None:
        import pandas as pd

        from anomgan.report import render_benchmark

        title = f"anomgan benchmark: {cfg.data.source}, {protocol}"
        typer.echo(f"html: {render_benchmark(pd.read_csv(res.out), res.summary, html, title)}")


@app.command(epilog="Example: anomgan export --run runs/d0 --out d0.onnx")
@handle_errors
def export(
    run: RunDir,
    out: Annotated[Path, typer.Option(help="ONNX file to write (one file, weights inside).")],
    force: Force = False,
):
    """Export the encoder-path scorer, preprocessing included, as one ONNX file; checked against torch with
    onnxruntime on the run's normal-validation samples before it is kept. Score it with 'anomgan score --run M.onnx'."""
    from anomgan.export import OPSET, SCORE_TOLERANCE, export_run

    res = export_run(run, out, force)
    typer.echo(f"exported {run} -> {res['path']} (opset {OPSET}; outputs: {', '.join(res['outputs'])})")
    check = f"max |anomaly_score difference| {res['max_score_diff']:.2e} <= {res['score_bound']:.2e}"
    if "max_map_diff" in res:
        check += f", anomaly_map {res['max_map_diff']:.2e} <= {res['map_bound']:.2e}"
    typer.echo(f"checked with onnxruntime on {res['n_checked']} normal-validation samples: {check} "
               f"({SCORE_TOLERANCE:g} x the scores' spread)")


@app.command(epilog="Example: anomgan generate --run runs/d0 --n 64 --out samples.png")
@handle_errors
def generate(
    run: Annotated[Path, typer.Option(help="Run directory.")],
    n: Annotated[int, typer.Option(help="Number of samples.")] = 64,
    out: Annotated[Path, typer.Option(help="PNG grid (images) or CSV (tables).")] = Path("samples.png"),
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    device: Device = "auto",
    force: Force = False,
):
    """Draw samples from the trained (EMA) generator."""
    from anomgan.runs import generate_samples

    path = generate_samples(run, n, out, seed, force, device)
    typer.echo(f"wrote {n} samples to {path}")


@app.command(epilog="Example: anomgan datasets --data-root ../shared/data")
@handle_errors
def datasets(
    data_root: Annotated[str, typer.Option(help="Folder holding torchvision data sets.")] = "./data",
):
    """List data sources and whether each is available offline."""
    from anomgan.data import NAMED_SOURCES, source_available

    for name in NAMED_SOURCES:
        ok, where = source_available(name, data_root)
        typer.echo(f"{name:14s} {'available' if ok else 'missing  '}  {where}")
    typer.echo("paths          .npy/.npz arrays, .csv tables, image files and image folders")


@app.command(epilog="Example: anomgan components --config configs/mnist.yaml")
@handle_errors
def components(
    config: Annotated[Optional[Path], typer.Option(help="Show this config's weights beside each component.")] = None,
):
    """List the score components (higher = more anomalous), what each needs, and its weight."""
    from anomgan.components import COMPONENTS
    from anomgan.config import DEFAULT_WEIGHTS, build_config

    weights = build_config(config).score.weights
    if weights is None:
        typer.echo("weights unset: the defaults for images / tables")
    for c in COMPONENTS.values():
        per_kind = [weights.get(c.name, 0.0)] if weights is not None else [
            DEFAULT_WEIGHTS[kind].get(c.name, 0.0) for kind in ("image", "tabular")]
        w = " / ".join(f"{v:g}" for v in per_kind)
        needs = ", ".join(sorted(c.needs)) or "-"
        typer.echo(f"{c.name:17s} weight {w:<7s} {'computed' if any(per_kind) else 'not computed'}  needs: {needs}")
        typer.echo(f"{'':17s} {c.meaning}")
    typer.echo("set a weight with --set score.weights='{residual: 1, layer_maha: 10}' (a missing key weighs 0)")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
