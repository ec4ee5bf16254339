"""The HTML report in a real headless browser (Chromium through Playwright): no page or console error, no request
beyond file: and data:, every image decoded, every section there, and the numbers those of the evaluate CSV."""

import os

import numpy as np
import pandas as pd
import pytest
from test_cli import assert_one_line_error, invoke

from anomgan.report import find_chromium

SECTIONS = ("toc", "summary", "threshold", "curves", "histogram", "classes", "components", "training", "examples",
            "config")


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    exe = find_chromium()
    if exe is None:
        if os.environ.get("ANOMGAN_REQUIRE_BROWSER"):  # CI installs Chromium: there a missing browser is a failure
            pytest.fail("no Chromium found (apt install chromium)")
        pytest.skip("no Chromium on this machine (apt install chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, path):
    """Load ``path``; return (page, problems): page errors, console errors and requests not to file: / data:."""
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    problems = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)

    def route(r):
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            problems.append(f"request to {r.request.url}")
            r.abort()

    page.route("**/*", route)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, problems


def check_page(page, problems, sections=SECTIONS):
    assert problems == []
    for section in sections:
        assert page.locator(f"#{section}").count() == 1, section
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
    assert images and all(ok and width > 0 for ok, width, _ in images), images
    return images


def page_numbers(page) -> list:
    return page.eval_on_selector_all(
        "[data-metric][data-component]",
        "els => els.map(e => [e.dataset.metric, e.dataset.class, e.dataset.component, e.textContent.trim()])")


def assert_numbers_equal_csv(page, report: pd.DataFrame) -> int:
    rows = report.set_index(["anomalous_class", "component"])
    checked = 0
    for metric, cls, comp, text in page_numbers(page):
        want = rows.loc[(cls, comp), metric]
        if np.isnan(want):
            assert text == ""
        else:
            assert text == f"{want:.4f}", (metric, cls, comp, text, want)
        checked += 1
    return checked


def test_digits_report_in_a_browser(browser, trained_run, tmp_path):
    res = invoke("evaluate", "--run", trained_run, "--out", tmp_path / "r.csv", "--html", tmp_path / "r.html",
                 "--quiet", "--device", "cpu")
    assert res.exit_code == 0, res.output
    page, problems = open_page(browser, tmp_path / "r.html")
    images = check_page(page, problems, SECTIONS + ("samples",))
    assert len(images) >= 2 * 6 + 1  # top anomalies, misses, samples from G
    report = pd.read_csv(tmp_path / "r.csv")
    assert assert_numbers_equal_csv(page, report) >= 3 * 9 + 2 * 4  # per class and per component, at least
    scores = pd.read_csv(tmp_path / "r.scores.csv")
    counts = {k: int(page.locator(f"[data-count={k}]").inner_text()) for k in ("tp", "fp", "tn", "fn")}
    flagged, target = scores["is_anomaly"] == 1, scores["target"] == 1
    assert counts == {"tp": int((flagged & target).sum()), "fp": int((flagged & ~target).sum()),
                      "tn": int((~flagged & ~target).sum()), "fn": int((~flagged & target).sum())}
    assert page.locator("#curves svg").count() == 1 and page.locator("#histogram svg").count() == 1
    size = page.eval_on_selector("#examples img", "e => [e.naturalWidth, e.naturalHeight]")
    assert min(size) >= 128  # 8-px digits upscaled to be readable
    page.close()


def test_real_image_report_shows_maps_and_masks(browser, tmp_path):
    from test_maps import square_category

    from anomgan.runs import train_run

    from conftest import tiny_config

    root = square_category(tmp_path / "cat")
    cfg = tiny_config(data__source=f"mvtec:{root}", data__normal_classes=None, data__image_size=32,
                      train__epochs=2, encoder__epochs=1, model__width=8, score__bank_size=256, score__method="encoder",
                      score__weights={"layer_maha": 1.0, "map_max": 1.0}, score__map_weights={"layer_maha_map": 1.0})
    train_run(cfg, tmp_path / "run")
    res = invoke("report", "--run", tmp_path / "run", "--out", tmp_path / "r.html", "--quiet", "--device", "cpu")
    assert res.exit_code == 0, res.output
    page, problems = open_page(browser, tmp_path / "r.html")
    check_page(page, problems)
    assert page.locator("[data-metric=pixel_roc_auc][data-class=all]").count() == 1
    widths = page.eval_on_selector_all("#examples img", "els => els.map(e => e.naturalWidth / e.naturalHeight)")
    assert widths and min(widths) > 5  # input | reconstruction | image | heat map | overlay | mask in one row
    res = invoke("report", "--run", tmp_path / "run", "--out", tmp_path / "r.html", "--quiet")
    assert_one_line_error(res, "already exists")
    page.close()


def test_benchmark_summary_page(browser, tmp_path):
    res = invoke("benchmark", "--data", "digits", "--classes", "0,1", "--seeds", "0,1", "--epochs", "1",
                 "--set", "data.image_size=8", "--set", "model.width=8", "--set", "model.z_dim=8",
                 "--set", "encoder.epochs=1", "--set", "train.device=cpu", "--out", tmp_path / "b.csv",
                 "--html", tmp_path / "b.html", "--quiet")
    assert res.exit_code == 0, res.output
    page, problems = open_page(browser, tmp_path / "b.html")
    check_page_sections = ("toc", "summary", "chart", "cases")
    assert problems == [] and all(page.locator(f"#{s}").count() == 1 for s in check_page_sections)
    cases = pd.read_csv(tmp_path / "b.csv")
    shown = float(page.locator("[data-metric=roc_auc_mean_all]").inner_text())
    assert shown == pytest.approx(cases["roc_auc"].mean(), abs=5e-5)
    assert page.locator("#cases tr").count() == len(cases) + 1
    page.close()
