"""Issue 16, "Honest output", in the HTML report: its first lines say when to distrust it.

``tests/data/fit_format1_ed30f57.nc`` is a real NUTS fit that fails its convergence checks
(1 chain x 20 draws: bulk ESS 3); a report of it must open with that, in words, mark its
hits provisional, show quantities rather than variable names (``z_gene``, ``L_sgrna``), and
say which delta and normalisation its calls used.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from test_report import parse  # noqa: E402

import screenformula as sf  # noqa: E402
from screenformula.report import write_report  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
RAW = re.compile(r"\b(z|L|t|r|sd|cor)_(gene|sgrna)\w*")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    fit = sf.load_fit(DATA / "fit_format1_ed30f57.nc")
    with pytest.warns(UserWarning):
        result = fit.contrast()
    path = write_report(fit, result, tmp_path_factory.mktemp("honest") / "r.html", top=3)
    return fit, result, path.read_text(encoding="utf-8"), parse(path)


def test_the_first_lines_say_the_posterior_cannot_be_trusted(page):
    _, _, text, _ = page
    after_header = text.split("</header>", 1)[1].lstrip()
    assert after_header.startswith('<div class="banner warn" role="alert">')
    banner = after_header.split("</div>", 1)[0]
    assert "cannot be trusted" in banner and "<b>provisional</b>" in banner
    assert "too few independent draws" in banner and "gene baselines and LFCs" in banner
    assert "draws=2000, tune=2000" in banner and "target_accept=0.95" in banner
    assert not RAW.search(banner)


def test_header_and_results_say_which_delta_and_normalisation(page):
    fit, result, text, _ = page
    header = text.split("</header>", 1)[0]
    assert "|log2 LFC| = 0.5 (1.41-fold)" in header
    assert fit.model.data.size_factor_method == "median"
    assert "median-ratio size factors" in header
    results = text.split('id="results"', 1)[1]
    assert "|log2 LFC| = 0.5" in results and "median-ratio size factors" in results
    hits = result.genes[result.genes["hit"]]
    down, up = (int((hits["direction"] == d).sum()) for d in ("down", "up"))
    assert f"{len(hits):,} provisional hits of 6 genes: <b>{down}</b> depleted, <b>{up}</b>" in (
        results
    )
    assert ">provisional hits</div>" in text  # the summary card


def test_hits_are_marked_provisional_in_the_tables(page):
    _, _, _, parsed = page
    cells = [r[-1] for t in parsed.tables if t["caption"].startswith("Top ") for r in t["rows"]]
    assert "provisional hit" in cells and "hit" not in cells


def test_diagnostics_show_quantities_not_variable_names(page):
    _, _, text, parsed = page
    table = parsed.table("Convergence by quantity")
    assert table["header"][0] == "quantity" and table["header"][-1] == "verdict"
    names = [r[0] for r in table["rows"]]
    assert "gene baselines and LFCs (treatment[treated])" in names
    assert "correlation of guide baselines and LFCs (treatment[treated])" in names
    assert "guide dispersion" in names
    assert len(names) == len(set(names))  # z_gene and r_gene: one quantity, one row
    visible = re.sub(
        r'title="[^"]*"', "", text.split('id="diagnostics"', 1)[1].split("</section>")[0]
    )
    assert not RAW.search(visible)
    # the raw names stay reachable: on hover, and in fit.diagnostics()
    assert (
        'title="in fit.idata: r_gene, z_gene"' in text
        or 'title="in fit.idata: z_gene, r_gene"' in text
    )
