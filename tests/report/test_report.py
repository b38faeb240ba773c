"""The one-page HTML report: structure (html.parser) and a real render in headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import screenformula as sf  # noqa: E402
from screenformula.errors import ScreenFormulaError  # noqa: E402
from screenformula.report import Section, write_report  # noqa: E402
from screenformula.report.html import _png_bytes, top_genes  # noqa: E402
from screenformula.results.fit import ScreenFit  # noqa: E402

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class PageParser(HTMLParser):
    """Collects what the tests look at: headings, tables (caption, header, rows), images."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.headings: dict[str, list[str]] = {"h1": [], "h2": [], "h3": []}
        self.tables: list[dict] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.scripts = 0
        self.title = ""
        self._text_target: list[str] | None = None
        self._buf: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_head = False
        self._stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag not in ("img", "meta", "br", "link"):
            self._stack.append(tag)
        if tag in self.headings or tag in ("title", "caption"):
            self._buf = []
            self._text_target = []
        elif tag == "table":
            self.tables.append({"caption": "", "header": [], "rows": [], "class": a.get("class")})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a)
        elif tag == "link":
            self.links.append(a.get("href", ""))
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()
        text = "".join(self._buf).strip()
        if tag in self.headings:
            self.headings[tag].append(text)
            self._text_target = None
        elif tag == "title":
            self.title = text
            self._text_target = None
        elif tag == "caption":
            self.tables[-1]["caption"] = text
            self._text_target = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            in_head = "thead" in self._stack
            table = self.tables[-1]
            if in_head:
                table["header"] = self._row
            else:
                table["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._text_target is not None:
            self._buf.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def table(self, caption_start: str) -> dict:
        found = [t for t in self.tables if t["caption"].startswith(caption_start)]
        assert found, f"no table captioned {caption_start!r}: {[t['caption'] for t in self.tables]}"
        return found[0]


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


# ------------------------------------------------------------- fast unit tests
def _fake_genes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "gene": ["a", "b", "c", "d", "e"],
            "lfc": [-1.0, -2.0, 0.5, 1.5, -0.1],
            "error_down": [0.0, 0.0, 0.9, 1.0, 0.4],
            "error_up": [1.0, 1.0, 0.1, 0.0, 0.6],
        }
    )


def test_top_genes_orders_like_mageck_ranks():
    genes = _fake_genes()
    # ties of the local error are broken by the more extreme LFC
    assert list(top_genes(genes, "down", 10)["gene"]) == ["b", "a", "e"]
    assert list(top_genes(genes, "up", 10)["gene"]) == ["d", "c"]
    assert list(top_genes(genes, "down", 1)["gene"]) == ["b"]


def test_figures_must_be_png(tmp_path):
    fig = Figure(figsize=(1, 1))
    fig.subplots().plot([0, 1])
    data = _png_bytes(fig)
    assert data.startswith(PNG_MAGIC)
    png = tmp_path / "x.png"
    png.write_bytes(data)
    assert _png_bytes(png) == data and _png_bytes(str(png)) == data
    with pytest.raises(ScreenFormulaError, match="not a PNG"):
        _png_bytes(b"GIF89a...")
    with pytest.raises(ScreenFormulaError, match="matplotlib Figure"):
        _png_bytes(42)


def test_report_of_two_contrasts_with_gene_groups(tmp_path):
    # a hand-built posterior (no sampling): two treatments, gene groups, no guide draws
    from _contrast_fakes import fake_fit, small_screen

    fit, _ = fake_fit(small_screen(), FORMULA, n_draws=200, store_sgrna=False)
    result = fit.contrast()
    labels = [c.label for c in result.contrasts]
    assert labels == ["drugA vs control", "drugB vs control"]
    path = write_report(fit, result, tmp_path / "two.html", top=3, forest_top=4)
    page = parse(path)
    assert page.headings["h3"] == labels
    for label in labels:
        genes = result.genes[result.genes["contrast"] == label]
        for direction, name in (("down", "depleted"), ("up", "enriched")):
            expected = top_genes(genes, direction, 3)
            if expected.empty:
                continue
            tables = [
                t
                for t in page.tables
                if t["caption"] == f"Top {len(expected)} {name} genes"
                and [r[0] for r in t["rows"]] == list(expected["gene"])
            ]
            assert tables, (label, name)
    alts = {img.get("alt") for img in page.images}
    assert {"Volcano plot", "Rank plot", "Forest plot", "Gene-group plot"} <= alts
    assert "banner approx" not in path.read_text(encoding="utf-8")


# --------------------------------------------------------------- one tiny fit
@pytest.fixture(scope="module")
def fitted():
    data, _ = sf.simulate_screen(n_genes=20, random_seed=1)
    fit = sf.ScreenModel(FORMULA, data).fit(
        draws=150, tune=150, chains=2, progress=False, random_seed=1
    )
    return fit, fit.contrast()


def _extra() -> Section:
    fig = Figure(figsize=(3, 2))
    fig.subplots().plot([0, 1], [0, 1])
    table = pd.DataFrame({"metric": ["AUC"], "value": [0.987]})
    table.attrs["caption"] = "Benchmark <table>"
    return Section(
        "Benchmark & extras",
        text="First paragraph with <markup> that must be escaped.\n\nSecond paragraph.",
        figures=[fig],
        tables=[table],
    )


@pytest.fixture(scope="module")
def report(fitted, tmp_path_factory):
    fit, result = fitted
    folder = tmp_path_factory.mktemp("report")
    path = write_report(
        fit, result, folder / "sub" / "report.html", title="Tiny <screen>", extra=_extra()
    )
    return path


@pytest.mark.slow
def test_report_is_written_whole(report):
    assert report.name == "report.html" and report.is_file()
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]  # no temp left
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "Tiny &lt;screen&gt;" in text and "<screen>" not in text
    assert "&lt;markup&gt;" in text


@pytest.mark.slow
def test_report_sections_and_tables(report, fitted):
    fit, result = fitted
    page = parse(report)
    assert page.title == "Tiny <screen>"
    assert page.headings["h1"] == ["Tiny <screen>"]
    assert page.headings["h2"] == [
        "Data",
        "Model and settings",
        "Diagnostics",
        "Top genes",
        "Figures",
        "Benchmark & extras",
    ]
    assert page.headings["h3"] == [c.label for c in result.contrasts]

    sheet = page.table("Sample sheet")
    assert len(sheet["rows"]) == fit.model.data.n_samples
    assert {"sample", "reads", "size factor", "in model"} <= set(sheet["header"])
    priors = page.table("Priors")
    assert len(priors["rows"]) == len(fit.model.prior_summary())
    settings = " ".join(" ".join(r) for t in page.tables if t["class"] == "kv" for r in t["rows"])
    assert FORMULA in settings and "nuts" in settings and "nutpie" in settings
    assert "wall time" in settings and "chains" in settings

    diag = page.table("Convergence by quantity")
    assert diag["header"][0] == "quantity" and diag["header"][-1] == "verdict"
    assert {r[0] for r in diag["rows"]} >= {
        "population-level effects (treatment[treated])",
        "sd of gene baselines and LFCs (treatment[treated])",
        "gene baselines and LFCs (treatment[treated])",
    }
    assert {r[-1] for r in diag["rows"]} <= {"ok", "check"}
    assert "divergent transitions" in settings

    genes = result.genes
    header = ["gene", "log2 LFC", "94% HDI", "lfsr", "error", "q-value", "hit"]
    for direction, name in (("down", "depleted"), ("up", "enriched")):
        expected = top_genes(genes, direction, 15)
        table = page.table(f"Top {len(expected)} {name} genes")
        assert table["header"] == header
        assert [r[0] for r in table["rows"]] == list(expected["gene"])
        lfc = [float(r[1]) for r in table["rows"]]
        assert np.allclose(lfc, expected["lfc"], atol=0.006)
        assert all(r[2].startswith("[") and r[2].endswith("]") for r in table["rows"])
        called = "provisional hit" if result.provisional else "hit"
        assert [r[6] == called for r in table["rows"]] == list(expected["hit"].astype(bool))
        # the hit is called by its own error (the default local rule)
        error = np.minimum(expected["error_down"], expected["error_up"])
        assert list(expected["hit"].astype(bool)) == list(error <= 0.05)
    extra = page.table("Benchmark <table>")
    assert extra["rows"] == [["AUC", "0.987"]]


@pytest.mark.slow
def test_report_images_are_embedded(report):
    page = parse(report)
    text = report.read_text(encoding="utf-8")
    # volcano, rank, forest, and the extra section's figure
    assert len(page.images) >= 4
    alts = [img.get("alt", "") for img in page.images]
    assert {"Volcano plot", "Rank plot", "Forest plot"} <= set(alts)
    for img in page.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    # self-contained: nothing fetched from elsewhere
    assert page.links == [] and page.scripts == 0
    assert "http://" not in text and "https://" not in text and "url(" not in text


@pytest.mark.slow
def test_approximate_fits_get_a_banner(fitted, tmp_path):
    fit, result = fitted
    approx = ScreenFit(fit.model, fit.idata, "advi", {"draws": 150, "wall_seconds": 1.0})
    path = write_report(approx, result, tmp_path / "approx.html")
    text = path.read_text(encoding="utf-8")
    assert 'class="banner approx"' in text and "APPROXIMATE posterior" in text
    page = parse(path)
    # R-hat / ESS do not apply to draws from an approximation: no convergence table
    assert not [t for t in page.tables if t["caption"].startswith("Convergence")]
    # a NUTS fit has no such banner
    nuts = write_report(fit, result, tmp_path / "nuts.html").read_text(encoding="utf-8")
    assert "banner approx" not in nuts


# ----------------------------------------------------------- headless Chromium
# .ci/run installs Chromium when it is missing and sets SCREENFORMULA_REQUIRE_BROWSER=1:
# there these tests fail, not skip, without a browser. Their screenshot and the page they
# rendered are kept in $PYTEST_ARTIFACTS (default tests/_artifacts/, gitignored).
REQUIRE_BROWSER = os.environ.get("SCREENFORMULA_REQUIRE_BROWSER") == "1"

# first in <head>: every error the page meets (a script error, a resource that fails to
# load, console.error) is kept in window.__errors
_ERROR_TRAP = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  if (t && t !== window && t.tagName) {
    window.__errors.push("failed to load <" + t.tagName.toLowerCase() + "> "
      + String(t.currentSrc || t.src || t.href || "").slice(0, 60));
  } else {
    window.__errors.push("script error: " + e.message + " (line " + e.lineno + ")");
  }
}, true);
window.addEventListener("unhandledrejection", function (e) {
  window.__errors.push("unhandled rejection: " + e.reason);
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
})();
</script>
"""

# last in <body>: what a reader sees, written into the DOM once the page has loaded
_RENDER_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify({
    images: imgs.map(function (i) {
      return [i.complete, i.naturalWidth, i.naturalHeight, i.alt];
    }),
    tables: document.querySelectorAll("table").length,
    rows: document.querySelectorAll("tbody tr").length,
    headings: Array.prototype.map.call(document.querySelectorAll("h2"), function (h) {
      return h.textContent;
    }),
    width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
    errors: window.__errors
  });
  document.body.appendChild(out);
});
</script>
"""


def _artifacts() -> Path:
    folder = Path(
        os.environ.get("PYTEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "_artifacts"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Chromium's executable; a skip without one, or a failure when CI requires it."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return Path(found)
    message = (
        "headless Chromium not found (Debian: apt-get install --no-install-recommends "
        "chromium); the HTML report was not rendered in a browser"
    )
    if REQUIRE_BROWSER:
        pytest.fail(f"{message}, and SCREENFORMULA_REQUIRE_BROWSER=1 (.ci/run) requires it")
    pytest.skip(message)


def _chromium(binary: Path, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    command = [
        str(binary),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _render(binary: Path, html: str, tmp_path: Path, name: str = "probe.html") -> dict:
    """Load ``html`` in headless Chromium; what the page saw (`_RENDER_PROBE`)."""
    html = html.replace('<meta charset="utf-8">\n', '<meta charset="utf-8">\n' + _ERROR_TRAP, 1)
    assert _ERROR_TRAP in html, "the page has no <meta charset> to put the error trap after"
    page = tmp_path / name
    page.write_text(html.replace("</body>", _RENDER_PROBE + "</body>"), encoding="utf-8")
    done = _chromium(
        binary,
        [
            "--virtual-time-budget=10000",
            "--window-size=1200,900",  # a laptop's width, as the screenshot
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    tag = '<pre id="render-check">'
    assert tag in dom, f"the page never finished loading; Chromium said: {done.stderr[-2000:]}"
    start = dom.index(tag) + len(tag)
    return json.loads(unescape(dom[start : dom.index("</pre>", start)]))


def test_the_render_check_sees_broken_pages(chromium, tmp_path):
    # the checks below would pass a page whose errors they cannot see: they can
    broken = (
        '<!DOCTYPE html>\n<html><head>\n<meta charset="utf-8">\n</head><body>'
        '<img alt="gone" src="missing.png"><table><tbody><tr><td>1</td></tr></tbody></table>'
        "<script>undefinedFunction();</script></body></html>"
    )
    check = _render(chromium, broken, tmp_path)
    assert check["images"] == [[True, 0, 0, "gone"]]  # a broken image has no pixels
    assert check["tables"] == 1 and check["rows"] == 1
    errors = " | ".join(check["errors"])
    assert "failed to load <img>" in errors and "undefinedFunction" in errors


@pytest.mark.slow
def test_chromium_shows_every_figure_and_table_without_errors(chromium, report, tmp_path):
    check = _render(chromium, report.read_text(encoding="utf-8"), tmp_path)
    page = parse(report)
    assert check["errors"] == []  # no script error, no resource that failed, no console.error
    assert check["headings"] == page.headings["h2"]
    assert len(check["images"]) == len(page.images) >= 4
    for complete, width, height, alt in check["images"]:
        assert complete and width > 100 and height > 100, alt  # decoded, not a broken icon
    assert {alt for *_, alt in check["images"]} >= {"Volcano plot", "Rank plot", "Forest plot"}
    assert check["tables"] == len(page.tables) >= 5
    assert check["rows"] > 30
    assert check["width"] <= 1200  # no horizontal overflow at a laptop width


@pytest.mark.slow
def test_chromium_screenshot_is_a_page_and_is_kept(chromium, report, tmp_path):
    from PIL import Image

    # the whole page, figures included, at a laptop's width
    height = min(_render(chromium, report.read_text(encoding="utf-8"), tmp_path)["height"], 16000)
    assert height > 3000
    shot = _artifacts() / "report.png"
    shot.unlink(missing_ok=True)
    done = _chromium(
        chromium,
        ["--screenshot=" + str(shot), f"--window-size=1200,{height}", report.resolve().as_uri()],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.is_file(), done.stderr[-2000:]
    shutil.copyfile(report, _artifacts() / "report.html")
    with Image.open(shot) as image:
        assert image.size == (1200, height)
        gray = np.asarray(image.convert("L"), dtype=float)
    # text, tables and plots make a page that is neither blank nor one colour
    dark = (gray < 128).mean()
    assert 0.01 < dark < 0.5
    assert gray[:600].std() > 20  # the header, banner and summary cards were drawn
