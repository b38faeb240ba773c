"""The panel's simulated screens: known truth, so realised FDR and interval coverage.

Issue 15's panel has the calibration simulations as rows beside the real screens. Each
case is one of `bench_calibration`'s screens (``simulate_screen``: 200 genes x 4 guides,
10 gene groups, control and treatment in triplicate; ``hits``: 10 % of genes with an
effect, the rest exactly 0; ``normal``: effects drawn from the model's hierarchical
prior), without its pool sample, so that every tool and candidate sees what it sees on
the real cases: a count table of control and treated samples. MAGeCK runs on the same
table.

Scores, per tool and call rule, against the truth on the scale the counts identify (the
true LFC plus the offset that median-ratio size factors put on every LFC, as in
`bench_calibration.normalisation_offset`; both tools normalise that way):

- ``fdp``: the share of calls whose true |LFC| is at most delta (0.5 log2) or of the
  other sign (issue 15's "realised FDR at q = 0.05, delta 0.5");
- ``null_fdp``: the share of calls on genes without an effect (true LFC exactly 0) or of
  the other sign, the measure fair to MAGeCK, which tests no delta;
- ``power``: true calls among the genes whose true |LFC| exceeds delta;
- ``cover90`` (ours): the share of genes whose 90 % HDI holds the true LFC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FDR = 0.05
DELTA = 0.5  # log2, the command line's default
LOG2 = np.log(2.0)
#: kind -> seeds, as `bench_calibration`'s defaults
SEEDS = {"hits": (1, 2, 3, 4), "normal": (11, 12)}
#: the 90 % interval is what coverage is checked on (the gene table's HDI)
HDI_PROB = 0.9


def simulated_case(kind: str, seed: int, name: str = "", **simulate: Any) -> dict[str, Any]:
    """One simulated screen as a panel case (its table, roles and truth).

    ``simulate`` adds keyword arguments of `simulate_screen` (guides that fail, in
    `proto_guide_states`), and ``name`` then names the case.
    """
    from bench_calibration import normalisation_offset  # benchmarks/ is on sys.path

    import screenformula as sf

    data, truth = sf.simulate_screen(
        n_genes=200,
        n_groups=10,
        frac_group_hits=0.2,
        gene_effects=kind,
        size_factors="median",
        random_seed=seed,
        **simulate,
    )
    screen = [str(s) for s in data.samples.index if not data.samples.loc[s, "pool"]]
    data = data.subset(samples=screen)  # median-ratio size factors over these samples
    frame = data.counts_frame().rename(columns={"Gene": "gene"})
    treatment = data.samples["treatment"].astype(str)
    true_ln = truth.lfc_table()["treated"].reindex(data.gene_names)
    return {
        "name": name or f"sim_{kind}_{seed}",
        "table": frame,
        "control": [s for s in screen if treatment[s] == "control"],
        "treated": [s for s in screen if treatment[s] == "treated"],
        "simulated": True,
        "truth_ln": true_ln,
        "offset": normalisation_offset(data, truth),
    }


def simulated_cases(names: list[str]) -> list[dict[str, Any]]:
    """The cases that ``names`` ask for: ``sim`` (all), ``sim_hits`` or ``sim_hits_1``."""
    every = [(kind, seed) for kind, seeds in SEEDS.items() for seed in seeds]
    out = []
    for name in names:
        chosen = [
            (kind, seed)
            for kind, seed in every
            if name in ("sim", f"sim_{kind}", f"sim_{kind}_{seed}")
        ]
        out.extend(simulated_case(kind, seed) for kind, seed in chosen)
    return out


def is_simulated(name: str) -> bool:
    return name == "sim" or name.startswith("sim_")


def _rule_scores(
    called: np.ndarray, sign: np.ndarray, raw: np.ndarray, norm: np.ndarray
) -> dict[str, Any]:
    """Calls, false calls (by delta and by null) and power of one call rule."""
    wrong_sign = np.sign(norm) != sign
    false = called & ((np.abs(norm) <= DELTA * LOG2) | wrong_sign)
    null_false = called & ((raw == 0) | wrong_sign)
    real = np.abs(norm) > DELTA * LOG2
    n = int(called.sum())
    return {
        "calls": n,
        "false": int(false.sum()),
        "null_false": int(null_false.sum()),
        "real": int(real.sum()),
        "true_calls": int((called & ~false).sum()),
        "fdp": round(float(false.sum() / max(n, 1)), 4),
        "null_fdp": round(float(null_false.sum() / max(n, 1)), 4),
        "power": round(float((called & ~false).sum() / max(real.sum(), 1)), 4),
    }


def score_simulated(path: Path, case: dict[str, Any], tool: str) -> dict[str, Any]:
    """Realised FDR, power and (ours) 90 % coverage of one tool's gene table on one case."""
    table = pd.read_csv(path, sep="\t")
    genes = table["id" if tool == "mageck" else "gene"].astype(str)
    raw = case["truth_ln"].reindex(genes).to_numpy(dtype=float)
    norm = raw + case["offset"]
    if tool == "mageck":
        down = table["neg|fdr"].to_numpy(dtype=float) < FDR
        up = (table["pos|fdr"].to_numpy(dtype=float) < FDR) & ~down
        return {"genes": len(table), **_rule_scores(down | up, np.where(down, -1, 1), raw, norm)}
    sign = np.where(table["error_down"] <= table["error_up"], -1, 1)
    low, high = table["hdi_low"].to_numpy(dtype=float), table["hdi_high"].to_numpy(dtype=float)
    inside = (low <= norm / LOG2) & (norm / LOG2 <= high)
    out: dict[str, Any] = {"genes": len(table), "cover90": round(float(inside.mean()), 4)}
    error = np.minimum(table["error_down"], table["error_up"]).to_numpy(dtype=float)
    local = _rule_scores(error <= FDR, sign, raw, norm)
    out.update({f"local_{k}": v for k, v in local.items()})
    out.update(_rule_scores(table["qvalue"].to_numpy(dtype=float) <= FDR, sign, raw, norm))
    return out


# ------------------------------------------------------------------------ report
def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _rule(entry: dict[str, Any], prefix: str) -> str:
    calls = entry[f"{prefix}calls"]
    fdp = _pct(entry[f"{prefix}false"], calls)
    null = _pct(entry[f"{prefix}null_false"], calls)
    power = _pct(entry[f"{prefix}true_calls"], entry[f"{prefix}real"])
    return f"{calls} calls, FDR {fdp} / {null}, power {power}"


def simulated_cell(entry: dict[str, Any] | None, seconds: bool = True) -> str:
    """One tool on one simulated case (or the pooled sums)."""
    if not entry:
        return "not run"
    if "error" in entry:
        return f"failed: {entry['error'][:80]}"
    if "local_calls" not in entry:  # MAGeCK: one rule
        text = _rule(entry, "")
    else:
        cover = f"{entry['cover90']:.1%}" if "cover90" in entry else "n/a"
        text = f"{_rule(entry, 'local_')} (q: {_rule(entry, '')}) · 90 % cover {cover}"
    if seconds and "wall_s" in entry:
        text += f" · {entry['wall_s']:.0f} s"
    return text


def pooled(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The sums over screens (FDR = false calls / calls over all screens), mean coverage."""
    entries = [e for e in entries if e and "error" not in e]
    if not entries:
        return None
    keys = ("calls", "false", "null_false", "real", "true_calls")
    prefixes = ["", "local_"] if "local_calls" in entries[0] else [""]
    out: dict[str, Any] = {
        f"{p}{k}": sum(e[f"{p}{k}"] for e in entries) for p in prefixes for k in keys
    }
    if "cover90" in entries[0]:
        out["cover90"] = float(np.mean([e["cover90"] for e in entries]))
    out["screens"] = len(entries)
    return out


def simulated_table(cases: dict[str, Any], names: list[str]) -> list[str]:
    """The simulated rows: a row per screen and a pooled row, a column per tool."""
    sims = {name: rec for name, rec in cases.items() if rec.get("simulated")}
    if not sims:
        return []
    names = [c for c in names if any(c in rec for rec in sims.values())]
    tools = ["mageck", *names]
    rows = []
    for name, rec in sims.items():
        rows.append(f"| {name} | " + " | ".join(simulated_cell(rec.get(t)) for t in tools) + " |")
    pools = [pooled([rec.get(t) for rec in sims.values()]) for t in tools]
    screens = max((p or {}).get("screens", 0) for p in pools)
    rows.append(
        f"| **all {screens} screens** | "
        + " | ".join(simulated_cell(p, seconds=False) for p in pools)
        + " |"
    )
    return [
        "",
        "Simulated screens (`benchmarks/panel_simulated.py`: `bench_calibration`'s screens, "
        "200 genes x 4 guides, control and treatment in triplicate, the pool sample left "
        "out; `hits`: 10 % of genes with an effect, the rest exactly 0; `normal`: effects "
        "from the model's own prior). Each cell: calls at 5 % FDR in either direction, "
        "realised FDR counting as false a call whose true |LFC| is at most 0.5 log2 or of "
        "the other sign (issue 15's measure) / counting only genes with no effect or the "
        "other sign (the measure fair to MAGeCK, which tests no delta), power (true calls "
        "among genes with |LFC| > 0.5), for ours the local rule then the q-value rule in "
        "brackets and the share of genes whose 90 % HDI holds the true LFC; truth on the "
        "scale the counts identify (median-ratio size factors shift every LFC). The last "
        "row pools the screens (false calls over all calls).",
        "",
        "| case | MAGeCK | " + " | ".join(f"`{c}`" for c in names) + " |",
        "|---|---|" + "---|" * len(names),
        *rows,
    ]
