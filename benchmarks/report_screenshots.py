"""HTML reports of finished runs, and the screenshots of them the README links (Chromium through Playwright).

    python benchmarks/report_screenshots.py --run digits=runs/d0 --run mnist=runs/m3 \
        --run bottle=runs/mvtec/bottle-s0 --reports reports --shots docs/img

Runs: the README quickstart (runs/d0), ``anomgan train --config configs/mnist.yaml --data-root ../shared/data
--normal-classes 3 --out runs/m3`` and ``benchmarks/mvtec.py`` (bottle). For each, ``anomgan report`` writes
``<reports>/<name>.html``; the screenshots show its top (summary, threshold, curves) and, for image runs, the
examples section (top anomalies and misses, with heat maps and masks for real images).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from anomgan.report import find_chromium


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="name=RUN_DIR")
    ap.add_argument("--reports", type=Path, default=Path("reports"))
    ap.add_argument("--shots", type=Path, default=Path("docs/img"))
    ap.add_argument("--data-root", default="../shared/data")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    args.reports.mkdir(parents=True, exist_ok=True)
    args.shots.mkdir(parents=True, exist_ok=True)
    pages = {}
    for item in args.run:
        name, run = item.split("=", 1)
        html = args.reports / f"{name}.html"
        subprocess.run([sys.executable, "-m", "anomgan.cli", "report", "--run", run, "--out", str(html), "--force",
                        "--quiet", "--device", "cpu", "--data-root", args.data_root], check=True)
        pages[name] = html
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1366, "height": 1500})
        for name, html in pages.items():
            page.goto(html.resolve().as_uri())
            page.screenshot(path=str(args.shots / f"report-{name}.png"))
            if page.locator("#examples img").count():
                page.locator("#examples").screenshot(path=str(args.shots / f"report-{name}-examples.png"))
            print(f"{name}: {html} -> {args.shots}/report-{name}*.png", flush=True)
        browser.close()


if __name__ == "__main__":
    main()
