"""A one-page, self-contained HTML report of a fitted screen and its contrasts.

Everything is inside the one file: the figures are base64 PNG ``<img>`` elements and the
style sheet is inline, so the page can be mailed, archived or opened offline. The page
holds the data summary, the model settings and priors, the convergence diagnostics (with
an APPROXIMATE banner for fits that are not NUTS), the top depleted and enriched genes of
every contrast, the volcano, rank and forest plots, and any extra sections the caller
adds (`Section`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from screenformula.errors import ScreenFormulaError
from screenformula.io.atomic import write_text_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from screenformula.results.contrasts import ContrastResult
    from screenformula.results.diagnostics import Convergence, Wording
    from screenformula.results.fit import ScreenFit

__all__ = ["Section", "write_report"]

#: PNG resolution of the embedded figures.
DPI = 110
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

FigureLike = Any  # a matplotlib Figure, PNG bytes, or the path of a PNG file


@dataclass
class Section:
    """An extra section of the report (e.g. a benchmark against reference genes).

    Parameters
    ----------
    title : str
        The section heading.
    text : str
        Plain text (escaped); blank lines separate paragraphs.
    figures : sequence
        matplotlib Figures, PNG bytes, or paths of PNG files, embedded in order.
    tables : sequence of DataFrame
        Tables shown after the figures (``table.attrs["caption"]`` is used as caption).
    """

    title: str
    text: str = ""
    figures: Sequence[FigureLike] = field(default_factory=tuple)
    tables: Sequence[pd.DataFrame] = field(default_factory=tuple)


# --------------------------------------------------------------------- helpers
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png_bytes(figure: FigureLike) -> bytes:
    """PNG bytes of a Figure, PNG bytes or a PNG file."""
    if isinstance(figure, bytes | bytearray):
        data = bytes(figure)
    elif isinstance(figure, str | os.PathLike):
        data = Path(figure).read_bytes()
    elif hasattr(figure, "savefig"):
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
        data = buf.getvalue()
    else:
        raise ScreenFormulaError(
            f"a report figure must be a matplotlib Figure, PNG bytes or a PNG file, "
            f"not {type(figure).__name__}"
        )
    if not data.startswith(_PNG_MAGIC):
        raise ScreenFormulaError("a report figure is not a PNG image")
    return data


def _img(figure: FigureLike, alt: str, caption: str = "") -> str:
    data = base64.b64encode(_png_bytes(figure)).decode("ascii")
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}" '
        f'class="plot">{cap}</figure>'
    )


def _fmt_number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if v == 0:
            return "0"
        if abs(v) >= 1e7 or abs(v) < 10**-digits:
            return f"{v:.{digits - 1}e}"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(value)


def _prob(value: float, floor: float | None) -> str:
    """A posterior share; 0 is shown as below the resolution of the draws."""
    if value is None or not np.isfinite(value):
        return "–"
    if value == 0 and floor:
        return f"&lt;{floor:.0e}".replace("e-0", "e-")
    if value < 1e-3:
        return f"{value:.1e}"
    return f"{value:.3f}"


def _table(
    frame: pd.DataFrame,
    *,
    caption: str = "",
    classes: str = "",
    raw: Sequence[str] = (),
    index: bool = False,
) -> str:
    """An HTML table; cells are escaped except the columns named in ``raw``."""
    if index:
        frame = frame.reset_index()
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            text = str(value) if column in raw else _e(_fmt_number(value))
            numeric = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
                value, bool | np.bool_
            )
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    cls = f' class="{_e(classes)}"' if classes else ""
    return f"<table{cls}>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _kv(pairs: Sequence[tuple[str, Any]], raw: bool = False) -> str:
    """A two-column key/value table."""
    rows = "".join(
        f"<tr><th scope='row'>{_e(k)}</th><td>{v if raw else _e(_fmt_number(v))}</td></tr>"
        for k, v in pairs
    )
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _paragraphs(text: str) -> str:
    parts = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{_e(p)}</p>" for p in parts)


def _safe_figure(make: Any, alt: str, caption: str) -> str:
    """A figure, or a note saying why it could not be drawn (the page is still written)."""
    try:
        fig = make()
    except (ValueError, KeyError) as err:
        return f'<p class="note">{_e(alt)} not drawn: {_e(err)}</p>'
    return _img(fig, alt, caption)


# -------------------------------------------------------------------- sections
def _data_section(fit: ScreenFit) -> str:
    data = fit.model.data
    spec = fit.model.spec
    screen = set(map(str, spec.samples))
    pool = set(map(str, spec.pool.samples or ())) if spec.pool.mode else set()
    sheet = data.samples.copy()
    sheet = sheet.astype({c: str for c in sheet.columns if sheet[c].dtype.name == "category"})
    table = pd.DataFrame({"sample": sheet.index.astype(str)})
    for column in sheet.columns:
        table[column] = sheet[column].to_numpy()
    table["reads"] = data.depth.reindex(sheet.index).to_numpy().astype(np.int64)
    table["size factor"] = data.size_factors.reindex(sheet.index).to_numpy().round(3)
    table["in model"] = [
        "screen" if s in screen else ("pool" if s in pool else "not used") for s in table["sample"]
    ]
    per_gene = np.bincount(data.gene_codes)
    used = [s for s in data.samples.index if str(s) in screen | pool]
    depth = data.depth.reindex(used)
    pairs = [
        ("source", data.source or "–"),
        ("guides (sgRNAs)", int(data.n_sgrnas)),
        ("genes", int(data.n_genes)),
        (
            "guides per gene",
            f"median {np.median(per_gene):.0f} (range {per_gene.min()}–{per_gene.max()})",
        ),
        ("control guides", int(data.controls.sum())),
        ("samples", f"{len(screen)} screen" + (f" + {len(pool)} pool" if pool else "")),
        (
            "reads per sample",
            f"median {np.median(depth):,.0f} (range {depth.min():,}–{depth.max():,})"
            if len(depth)
            else "–",
        ),
        ("size factors", data.size_factor_method),
    ]
    if len(data.dropped):
        reasons = data.dropped["reason"].value_counts()
        pairs.append(
            ("guides dropped before the fit", "; ".join(f"{n:,} {r}" for r, n in reasons.items()))
        )
    if data.gene_groups is not None:
        pairs.append(("gene groups", len(data.group_names)))
    return (
        '<section id="data"><h2>Data</h2>'
        + _kv(pairs)
        + _table(table, caption="Sample sheet", classes="compact")
        + "</section>"
    )


def _settings_section(fit: ScreenFit) -> str:
    model = fit.model
    s = model.settings
    spec = model.spec
    pool = spec.pool.mode or "none"
    if spec.pool.mode:
        pool += f" ({', '.join(map(str, spec.pool.samples))})"
    pairs: list[tuple[str, Any]] = [
        ("formula", f"<code>{_e(s['formula'])}</code>"),
        ("family", _e(f"{spec.family.name} (log link)")),
        ("dispersion", _e(s["dispersion"])),
        ("pool", _e(pool)),
        ("LKJ eta", _e(s["lkj_eta"])),
        ("parameterisation", _e(s["parameterization"])),
    ]
    if s.get("reference"):
        pairs.append(("reference levels", _e(s["reference"])))
    opts = fit.options
    method = fit.method + (" (approximate)" if fit.approximate else "")
    pairs.append(("method", _e(method)))
    for key, label in (
        ("engine", "engine"),
        ("chains", "chains"),
        ("tune", "warm-up draws per chain"),
        ("draws", "draws per chain"),
        ("target_accept", "target acceptance"),
        ("iterations", "optimisation iterations"),
        ("converged", "optimisation converged"),
        ("random_seed", "seed"),
    ):
        if key in opts and opts[key] is not None:
            pairs.append((label, _e(_fmt_number(opts[key]))))
    vi = opts.get("advi") if isinstance(opts.get("advi"), dict) else {}
    for key, label in (
        ("iterations", "optimisation iterations"),
        ("converged", "optimisation converged"),
        ("learning_rate", "learning rate"),
    ):
        if key in vi and key not in opts and vi[key] is not None:
            pairs.append((label, _e(_fmt_number(vi[key]))))
    wall = opts.get("wall_seconds")
    if wall is not None:
        pairs.append(("wall time", _e(_duration(float(wall)))))
    priors = model.prior_summary()
    keep = [c for c in ("class", "coef", "group", "prior", "source") if c in priors.columns]
    return (
        '<section id="settings"><h2>Model and settings</h2>'
        + _kv(pairs, raw=True)
        + _table(priors[keep], caption="Priors", classes="compact")
        + "</section>"
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def _diagnostics(
    fit: ScreenFit, given: pd.DataFrame | None
) -> tuple[pd.DataFrame | None, str | None]:
    """The convergence table (None for approximate fits, where it does not apply)."""
    if given is not None:
        return given, None
    if fit.approximate:
        return None, None
    try:
        return fit.diagnostics(warn=False), None
    except Exception as err:  # noqa: BLE001 - the report is still written, with the reason
        return None, f"{type(err).__name__}: {err}"


def _diagnostics_section(
    fit: ScreenFit,
    table: pd.DataFrame | None,
    error: str | None,
    verdict: Convergence | None,
    wording: Wording,
) -> str:
    parts = ['<section id="diagnostics"><h2>Diagnostics</h2>']
    if error is not None:
        parts.append(f'<p class="note">Diagnostics could not be computed: {_e(error)}</p>')
        return "".join(parts) + "</section>"
    if fit.approximate:
        parts.append(
            f"<p>This posterior comes from <b>{_e(fit.method)}</b>, an approximation. Its "
            "draws are independent draws from the fitted approximation, so R-hat and ESS "
            "say nothing about how close it is to the true posterior, and there are no "
            "divergences to count: they are not shown. Confirm the hits that matter with "
            '<code>method="nuts"</code>.</p>'
        )
        trace = _vi_summary(fit)
        if trace:
            parts.append(_kv(trace))
        loss = _vi_loss_figure(fit)
        if loss is not None:
            parts.append(_img(loss, "Optimisation trace", "Loss (negative ELBO) by iteration."))
    if table is None:
        return "".join(parts) + "</section>"
    divergences = int(table.attrs.get("divergences", 0))
    if not fit.approximate:
        if verdict is None or verdict.trusted:
            parts.append(
                '<p class="ok">Every quantity passes the R-hat and ESS checks, and there are '
                "no divergent transitions.</p>"
            )
        else:
            parts.append(
                '<p class="warn"><b>Check before trusting the results.</b> R-hat says '
                "whether the chains agree; ESS (effective sample size) how many independent "
                "draws they are worth.</p><ul>"
                + "".join(f"<li>{_e(p)}</li>" for p in verdict.problems)
                + f"</ul><p>To fix: {_e(verdict.advice(wording))}.</p>"
            )
        parts.append(
            _kv(
                [
                    ("divergent transitions", divergences),
                    ("chains x draws", _chains_draws(fit)),
                ]
            )
        )
    if not table.empty:
        parts.append(
            _table(
                _quantity_rows(table, fit.approximate),
                caption="Convergence by quantity: the worst entry of each (checks by "
                f"default: R-hat ≤ {fit.rhat_target():.3g}, bulk and tail ESS ≥ "
                f"{fit.ess_target():.0f}). The "
                "variables' names in fit.idata are in fit.diagnostics().",
                classes="compact",
                raw=["quantity", "verdict"],
            )
        )
    return "".join(parts) + "</section>"


def _quantity_rows(table: pd.DataFrame, approximate: bool) -> pd.DataFrame:
    """The convergence table by quantity a user knows (raw names only on hover)."""
    frame = table.reset_index()
    if "quantity" not in frame.columns:
        frame["quantity"] = frame["variable"]
    frame["ok"] = frame["ok"].astype(bool) if "ok" in frame.columns else True
    rows = []
    for quantity, block in frame.groupby("quantity", sort=False):
        variables = ", ".join(map(str, block["variable"]))
        ok = bool(block["ok"].all())
        verdict = "n/a (approximate)" if approximate else ("ok" if ok else "check")
        css = "muted" if approximate else ("ok" if ok else "warn")
        rhat = block["rhat_max"].max()
        bulk, tail = block["ess_bulk_min"].min(), block["ess_tail_min"].min()
        rows.append(
            {
                "quantity": f'<span title="in fit.idata: {_e(variables)}">{_e(quantity)}</span>',
                "entries": int(block["size"].max()) if "size" in block else len(block),
                "R-hat (max)": "–" if pd.isna(rhat) else f"{rhat:.3f}",
                "bulk ESS (min)": "–" if pd.isna(bulk) else f"{bulk:,.0f}",
                "tail ESS (min)": "–" if pd.isna(tail) else f"{tail:,.0f}",
                "verdict": f'<span class="{css}">{_e(verdict)}</span>',
            }
        )
    return pd.DataFrame(rows)


def _chains_draws(fit: ScreenFit) -> str:
    post = fit.posterior
    return f"{post.sizes.get('chain', 1)} x {post.sizes.get('draw', 0):,}"


def _vi_loss_figure(fit: ScreenFit) -> Figure | None:
    """The ADVI loss by iteration (None when the fit kept no trace)."""
    from matplotlib.figure import Figure

    from screenformula.inference.approx import VI_GROUP

    if VI_GROUP not in getattr(fit.idata, "children", {}):
        return None
    trace = fit.idata[VI_GROUP].to_dataset()
    if "loss" not in trace:
        return None
    loss = np.asarray(trace["loss"].values, dtype=float)
    if loss.size < 2:
        return None
    fig = Figure(figsize=(5.0, 2.6))
    ax = fig.subplots()
    x = np.arange(1, loss.size + 1)
    ax.plot(x, loss, color="0.6", lw=0.5)
    window = max(1, loss.size // 50)
    if window > 1:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(x[window - 1 :], smooth, color="#2471a3", lw=1.2)
    finite = loss[np.isfinite(loss)]
    if finite.size:
        low, high = np.percentile(finite, [0.5, 99])
        ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (-ELBO)")
    fig.tight_layout()
    return fig


def _vi_summary(fit: ScreenFit) -> list[tuple[str, Any]]:
    from screenformula.inference.approx import VI_GROUP

    if VI_GROUP not in getattr(fit.idata, "children", {}):
        return []
    attrs = dict(fit.idata[VI_GROUP].attrs)
    out: list[tuple[str, Any]] = []
    for key, label in (
        ("iterations", "iterations"),
        ("converged", "converged (parameter change below tolerance)"),
        ("final_loss", "final loss (negative ELBO)"),
        ("fit_seconds", "optimisation time (s)"),
    ):
        if key in attrs:
            value = attrs[key]
            out.append((label, bool(value) if key == "converged" else value))
    return out


def _gene_rows(genes: pd.DataFrame, floor: float | None, hdi: float | None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "gene": genes["gene"].astype(str).to_numpy(),
            "log2 LFC": genes["lfc"].map(lambda v: f"{v:+.2f}").to_numpy(),
            f"{hdi:.0%} HDI" if hdi else "HDI": [
                f"[{lo:+.2f}, {hi:+.2f}]"
                for lo, hi in zip(genes["hdi_low"], genes["hdi_high"], strict=True)
            ],
            "lfsr": [_prob(v, floor) for v in genes["lfsr"]],
            # the local error a hit is called by (call_rule "local"): in its more
            # probable direction, as the hit
            "error": [_prob(v, floor) for v in np.minimum(genes["error_down"], genes["error_up"])],
            "q-value": [_prob(v, floor) for v in genes["qvalue"]],
            "hit": [
                (
                    '<span class="hit provisional">provisional hit</span>'
                    if p
                    else '<span class="hit">hit</span>'
                )
                if h
                else ""
                for h, p in zip(
                    genes["hit"].astype(bool),
                    genes.get("provisional", pd.Series(False, index=genes.index)).astype(bool),
                    strict=True,
                )
            ],
        }
    )


def top_genes(genes: pd.DataFrame, direction: str, n: int) -> pd.DataFrame:
    """The ``n`` strongest depleted (``"down"``) or enriched (``"up"``) genes of a table.

    Ordered as MAGeCK's ``neg|rank`` / ``pos|rank``: by the local error of the call in
    that direction (``error_down`` / ``error_up``), ties by the more extreme LFC.
    """
    if direction == "down":
        g = genes[genes["lfc"] < 0]
        key = ["error_down", "lfc"] if "error_down" in g.columns else ["lfc"]
        return g.sort_values(key, kind="stable").head(n)
    g = genes[genes["lfc"] > 0].assign(_neg=lambda f: -f["lfc"])
    key = ["error_up", "_neg"] if "error_up" in g.columns else ["_neg"]
    return g.sort_values(key, kind="stable").head(n).drop(columns="_neg")


def calls_text(result: ContrastResult, normalization: str) -> str:
    """What a hit is in this report: the FDR target, delta and normalisation (plain text)."""
    s = result.settings
    delta = float(s["delta"])
    what = (
        f"an effect beyond |log2 LFC| = {delta:g} ({2**delta:.2f}-fold)"
        if delta
        else "a known sign of the LFC (delta = 0: any effect, however small)"
    )
    bound = f"{s['fdr_target']:g}"
    if s["call_rule"] == "local":
        wrong = (
            f"not having {what} in its direction"
            if delta
            else "having the other sign (delta = 0: any effect, however small)"
        )
        rule = (
            f"A hit is a gene whose posterior chance of {wrong} (its local error) is at "
            f"most {bound}; the list's false discovery rate is then at most {bound} too"
        )
    else:
        rule = f"A hit has q-value ≤ {bound} for {what}"
    return f"{rule}; {normalization_text(normalization)}."


def normalization_text(method: str) -> str:
    """How the counts were normalised, in words (``ScreenData.size_factor_method``)."""
    known = {
        "median": "counts normalised by median-ratio size factors",
        "total": "counts normalised by total-count size factors",
        "control": "counts normalised by size factors from the control guides",
        "none": "counts not normalised (every size factor 1)",
        "given": "counts normalised by the size factors given",
    }
    return known.get(method, f"counts normalised by {method} size factors")


def _results_section(result: ContrastResult, top: int, normalization: str) -> str:
    settings = result.settings
    floor = 1.0 / (settings["n_draws"] + 1) if settings.get("n_draws") else None
    hdi = settings.get("hdi_prob")
    provisional = result.provisional
    parts = ['<section id="results"><h2>Top genes</h2>']
    parts.append(
        "<p>Log2 fold-changes are posterior means with their highest-density interval. "
        "<b>lfsr</b> (local false sign rate) is the posterior probability that the sign "
        "of the effect is wrong; <b>error</b> is the posterior probability that the "
        "gene is not changed beyond the minimum effect in its direction; the <b>q-value</b> "
        "is the Bayesian FDR of calling every gene at least this strong. "
        f"<b>{_e(calls_text(result, normalization))}</b> Depleted and enriched hits are "
        "counted by the sign of their LFC. A probability shown as &lt;x is zero among the "
        "draws: below their resolution.</p>"
    )
    if provisional:
        parts.append(
            '<p class="warn"><b>Provisional hits:</b> the fit behind them did not pass its '
            "convergence checks (see the top of the page).</p>"
        )
    for c in result.contrasts:
        g = result.genes[result.genes["contrast"] == c.label]
        hits = g[g["hit"].astype(bool)]
        down = int((hits["direction"] == "down").sum())
        up = int((hits["direction"] == "up").sum())
        kind = "provisional hits" if provisional else "hits"
        parts.append(
            f"<h3>{_e(c.label)}</h3><p>{len(hits):,} {kind} of {len(g):,} genes: "
            f"<b>{down:,}</b> depleted, <b>{up:,}</b> enriched.</p>"
        )
        parts.append('<div class="pair">')
        for direction, name in (("down", "depleted"), ("up", "enriched")):
            rows = top_genes(g, direction, top)
            if rows.empty:
                sign = "negative" if direction == "down" else "positive"
                parts.append(
                    f'<div><p class="note">No {name} genes: no gene has a {sign} posterior '
                    "mean LFC.</p></div>"
                )
                continue
            parts.append(
                "<div>"
                + _table(
                    _gene_rows(rows, floor, hdi),
                    caption=f"Top {len(rows)} {name} genes",
                    classes=f"genes {name}",
                    raw=["lfsr", "error", "q-value", "hit"],
                )
                + "</div>"
            )
        parts.append("</div>")
    return "".join(parts) + "</section>"


def _figures_section(result: ContrastResult, forest_top: int) -> str:
    from screenformula import plotting

    genes = result.genes
    highlight = []
    for c in result.contrasts:
        g = genes[genes["contrast"] == c.label]
        highlight += list(top_genes(g, "down", 3)["gene"]) + list(top_genes(g, "up", 2)["gene"])
    # one contrast: volcano and rank plot side by side; several: each full width
    layout = "figs" if len(result.contrasts) == 1 else "stack"
    parts = [f'<section id="figures"><h2>Figures</h2><div class="{layout}">']
    parts.append(
        _safe_figure(
            lambda: plotting.volcano_plot(genes),
            "Volcano plot",
            "Volcano plot: posterior mean log2 LFC against -log10 lfsr; hits coloured "
            "(blue depleted, red enriched).",
        )
    )
    parts.append(
        _safe_figure(
            lambda: plotting.rank_plot(genes, highlight=highlight),
            "Rank plot",
            "Genes ordered by log2 LFC with their HDIs; the strongest genes named.",
        )
    )
    parts.append("</div>")
    parts.append(
        _safe_figure(
            lambda: plotting.forest_plot(genes, top=forest_top),
            "Forest plot",
            f"The top {min(forest_top, genes['gene'].nunique())} genes by rank: posterior "
            "mean and HDI (circled: hits).",
        )
    )
    if not result.groups.empty:
        parts.append(
            _safe_figure(
                lambda: plotting.group_plot(result.groups),
                "Gene-group plot",
                "Gene-group effects and the probability that each group is the most "
                "enriched / depleted.",
            )
        )
    return "".join(parts) + "</section>"


def _extra_section(section: Section, number: int) -> str:
    parts = [f'<section id="extra-{number}" class="extra"><h2>{_e(section.title)}</h2>']
    parts.append(_paragraphs(section.text))
    for k, figure in enumerate(section.figures):
        parts.append(_img(figure, f"{section.title}, figure {k + 1}"))
    for table in section.tables:
        parts.append(_table(table, caption=str(table.attrs.get("caption", "")), classes="compact"))
    return "".join(parts) + "</section>"


def _versions() -> str:
    from screenformula.results.fit import package_versions

    return ", ".join(f"{k} {v}" for k, v in package_versions().items())


STYLE = """
:root { --ink: #1d2329; --muted: #5f6b76; --line: #d9dee3; --band: #f4f6f8;
        --down: #2471a3; --up: #c0392b; --ok: #1e7b45; --warn: #a35200; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 10px; padding-bottom: 4px;
     border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 6px; }
p { margin: 6px 0 10px; }
code { font: 13px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, monospace;
       background: var(--band); padding: 1px 4px; border-radius: 3px; }
.meta, .muted, figcaption, caption { color: var(--muted); }
nav { margin: 12px 0 4px; font-size: 14px; }
nav a { margin-right: 14px; color: var(--down); text-decoration: none; }
.banner { margin: 16px 0; padding: 12px 16px; border-radius: 6px; font-weight: 600; }
.banner.approx { background: #fff3cd; border: 2px solid #e0a800; color: #6b4e00; }
.banner.warn { background: #fdecea; border: 2px solid var(--up); color: #7b1d14; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { flex: 1 1 150px; background: var(--band); border-radius: 6px; padding: 10px 14px; }
.card .v { font-size: 22px; font-weight: 700; }
.card .k { font-size: 13px; color: var(--muted); }
table { border-collapse: collapse; margin: 10px 0 16px; font-size: 13.5px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; caption-side: top; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; }
thead th { background: var(--band); border-bottom: 2px solid var(--line); }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { font-weight: 600; background: none; width: 14em; }
table.genes td:nth-child(n+2) { font-variant-numeric: tabular-nums; white-space: nowrap; }
table.depleted caption { color: var(--down); }
table.enriched caption { color: var(--up); }
.pair { display: flex; flex-wrap: wrap; gap: 28px; }
.pair > div { flex: 1 1 460px; overflow-x: auto; }
.hit { color: #fff; background: var(--ink); border-radius: 3px; padding: 0 5px; font-size: 12px; }
.hit.provisional { background: var(--warn); }
.banner ul { margin: 6px 0; font-weight: 400; }
.ok { color: var(--ok); } .warn { color: var(--warn); }
p.ok { font-weight: 600; } p.warn { background: #fdf2e6; padding: 8px 12px; border-radius: 4px; }
.note { color: var(--muted); font-style: italic; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.figs figure { flex: 1 1 420px; min-width: 0; }
figure { margin: 8px 0 18px; }
img.plot { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { font-size: 13px; max-width: 560px; }
footer { margin-top: 40px; font-size: 12.5px; color: var(--muted);
         border-top: 1px solid var(--line); padding-top: 10px; }
"""


# ----------------------------------------------------------------------- entry
def write_report(
    fit: ScreenFit,
    result: ContrastResult,
    path: str | os.PathLike,
    *,
    title: str = "screenformula report",
    extra: Section | Sequence[Section] | None = None,
    top: int = 15,
    forest_top: int = 20,
    diagnostics: pd.DataFrame | None = None,
    wording: Wording | None = None,
) -> Path:
    """Write a self-contained one-page HTML report of a fit and its contrasts.

    Parameters
    ----------
    fit : ScreenFit
        The fitted model (data, settings, priors and diagnostics come from it).
    result : ContrastResult
        Contrasts of ``fit`` (``fit.contrast(...)``): the gene tables and figures.
    path : str or PathLike
        The HTML file to write (folders are created). It is written under a temporary
        name in the same folder and renamed, so readers never see half a page.
    title : str
        The page title.
    extra : Section or sequence of Section, optional
        More sections shown after the figures (text, figures, tables).
    top : int
        Rows of each top depleted / enriched gene table.
    forest_top : int
        Genes in the forest plot.
    diagnostics : DataFrame, optional
        ``fit.diagnostics()`` when already computed (it takes seconds on large fits);
        computed here otherwise. Approximate fits get no R-hat/ESS table (it does not
        apply to draws from an approximation) but their optimisation trace.
    wording : mapping, optional
        How the advice for a fit that failed its checks names the settings to change
        (default: ``ScreenModel.fit``'s keywords; see
        `screenformula.results.diagnostics.PYTHON_WORDING`).

    Notes
    -----
    The page's first lines say whether the posterior can be trusted: for a fit that
    failed its convergence checks, a banner names the quantities that failed (gene LFCs,
    guide dispersion, ...) and what to change, and every hit is called provisional. The
    results say which delta, FDR target and normalisation the calls used.

    Returns
    -------
    Path
        The report file.
    """
    from screenformula.results.diagnostics import PYTHON_WORDING

    wording = wording or PYTHON_WORDING
    path = Path(path)
    sections = [extra] if isinstance(extra, Section) else list(extra or [])
    diag, diag_error = _diagnostics(fit, diagnostics)
    verdict = None
    if diag_error is None and not fit.approximate:
        verdict = fit.convergence()
    data = fit.model.data
    banners = []
    if fit.approximate:
        banners.append(
            '<div class="banner approx" role="alert">APPROXIMATE posterior: this fit used '
            f"{_e(fit.method)}, not NUTS. Gene rankings are usually close to NUTS, but "
            "intervals, lfsr and q-values may be too optimistic; confirm hits with "
            "method=&quot;nuts&quot;.</div>"
        )
    elif verdict is not None and not verdict.trusted:
        banners.append(
            '<div class="banner warn" role="alert">This posterior cannot be trusted yet: '
            "it failed its convergence checks, so every hit below is <b>provisional</b>."
            "<ul>"
            + "".join(f"<li>{_e(p)}</li>" for p in verdict.problems)
            + f"</ul>To fix: {_e(verdict.advice(wording))}. (See Diagnostics.)</div>"
        )
    n_hits = int(result.genes["hit"].astype(bool).sum())
    cards = [
        ("guides", f"{data.n_sgrnas:,}"),
        ("genes", f"{data.n_genes:,}"),
        ("samples", f"{len(fit.model.spec.samples)}"),
        ("contrasts", f"{len(result.contrasts)}"),
        ("provisional hits" if result.provisional else "hits", f"{n_hits:,}"),
        ("delta (|log2 LFC|)", f"{float(result.settings['delta']):g}"),
        ("method", fit.method.upper() if not fit.approximate else f"{fit.method} (approx.)"),
    ]
    card_html = "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
        for k, v in cards
    )
    nav = [
        ("data", "Data"),
        ("settings", "Model"),
        ("diagnostics", "Diagnostics"),
        ("results", "Top genes"),
        ("figures", "Figures"),
    ] + [(f"extra-{i + 1}", s.title) for i, s in enumerate(sections)]
    nav_html = "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav) + "</nav>"
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    contrasts = ", ".join(c.label for c in result.contrasts)
    body = [
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="meta">Contrast{"s" if len(result.contrasts) > 1 else ""}: '
        f"<b>{_e(contrasts)}</b> (factor <code>{_e(result.factor)}</code>) · "
        f"{_e(calls_text(result, data.size_factor_method))} · generated {_e(now)}</p>",
        nav_html,
        "</header>",
        *banners,
        f'<div class="cards">{card_html}</div>',
        _data_section(fit),
        _settings_section(fit),
        _diagnostics_section(fit, diag, diag_error, verdict, wording),
        _results_section(result, top, data.size_factor_method),
        _figures_section(result, forest_top),
        *(_extra_section(s, i + 1) for i, s in enumerate(sections)),
        f"<footer>Made by screenformula. Versions: {_e(_versions())}.</footer>",
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, page)
