"""Prototype, not a candidate yet: guide efficacy as a two-state mixture, in plain PyMC.

Each guide either works (its treatment effect the gene's plus its own deviation) or fails
(the screen's overall effect plus its deviation); the share of failing guides
``pi ~ Beta(1, 4)`` is estimated and each guide's state summed out of its likelihood
(JACKS's guide efficacy, as two states). ``mean`` fits the same model with ``pi = 0``.
Trend dispersion per condition, replicate scales and Student-t(3) gene slopes as the
default; no gene intercept-slope correlation. Scored as the panel scores a case
(docs/DEFAULTS.md has the 2026-12-06 run on JACKS HL60: 29 / 0 against 13 / 0).

    SCREENFORMULA_DATA=../shared/data .venv/bin/python \
        benchmarks/proto_guide_efficacy.py jacks_HL60 mix [ref]

Simulated cases (``sim_hits_1`` ...) are scored against their truth, as the panel's.
``ref`` keeps the reference genes and 1,500 others only. Writes the gene table and prints
one JSON line (``/tmp/proto_guide_efficacy/<case>_<mode>``).
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import nutpie
import pymc as pm
import pytensor.tensor as pt

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_panel as bp  # noqa: E402 - benchmarks/ is not a package
import bench_real as br  # noqa: E402
import panel_simulated as ps  # noqa: E402
from proto_guide_states import summarise_draws  # noqa: E402

warnings.filterwarnings("ignore")

name, mode = sys.argv[1], sys.argv[2]
sub = sys.argv[3] if len(sys.argv) > 3 else ""
out = Path(f"/tmp/proto_guide_efficacy/{name}_{mode}{sub}")
out.mkdir(parents=True, exist_ok=True)
case = bp.panel_cases([name], argparse.Namespace(levels=[1], seeds=[1]))[0]
t = case["table"]
ref = case.get("reference") or ({} if case.get("simulated") else br.hap1_reference())
if sub == "ref":  # the reference genes and 1,500 others at random
    keep = set(ref["essential"]) | set(ref["nonessential"])
    genes_all = t.iloc[:, 1].unique()
    rng = np.random.default_rng(0)
    others = [g for g in genes_all if g not in keep]
    keep |= set(rng.choice(others, size=min(len(others), 1500), replace=False))
    t = t[t.iloc[:, 1].isin(keep)]
samples = list(t.columns[2:])
cond = np.array([br.sample_condition(s, case) for s in samples])
Y = t[samples].to_numpy(float)
ok = Y[:, cond == "ctrl"].sum(1) > 0
t, Y = t[ok], Y[ok]
gene_names, gidx = np.unique(t.iloc[:, 1].to_numpy(), return_inverse=True)
# median-of-ratios size factors
lg = np.log(Y + 0.5)
geo = lg.mean(1)
sf = np.exp(np.median(lg - geo[:, None], axis=0))
x = (cond != "ctrl").astype(float)
treated = np.where(x == 1)[0]
n_s, n_j, n_g = Y.shape[0], Y.shape[1], len(gene_names)
ctrl_mean = np.log((Y[:, cond == "ctrl"] / sf[cond == "ctrl"]).mean(1) + 0.5)
abund = ctrl_mean - ctrl_mean.mean()
cls = x.astype(int)  # dispersion class: ctrl 0, treated 1
n_rep = len(treated)

with pm.Model() as m:
    mu_a = pm.StudentT("mu_a", nu=3, mu=float(np.median(ctrl_mean)), sigma=2.5)
    sd_ga = pm.Exponential("sd_gene_int", 1.0)
    sd_a = pm.Exponential("sd_a", 1.0)
    ga = pm.Normal("ga", 0, 1, shape=n_g)
    a = pm.Normal("a", mu_a + sd_ga * ga[gidx], sd_a, shape=n_s)
    b0 = pm.StudentT("b0", nu=5, mu=0, sigma=1)
    sd_b = pm.Exponential("sd_b", 1.0)
    zb = pm.StudentT("zb", nu=3, mu=0, sigma=1, shape=n_g)
    bg = b0 + sd_b * zb
    sd_d = pm.Exponential("sd_d", 1.0)
    ed = pm.Normal("ed", 0, 1, shape=n_s)
    d = sd_d * ed
    if n_rep > 1:
        ls = pm.ZeroSumNormal("ls", sigma=0.5, shape=n_rep)
        scale = pt.ones(n_j)
        scale = pt.set_subtensor(scale[treated], pt.exp(ls))
    else:
        scale = pt.ones(n_j)
    t0 = pm.Normal("t0", 3, 2, shape=2)
    t1 = pm.Normal("t1", 0, 1, shape=2)
    logphi = t0[cls][None, :] + t1[cls][None, :] * abund[:, None]
    phi = pt.exp(logphi)
    base = np.log(sf)[None, :] + a[:, None]

    def ll(eff):  # eff: per-guide treatment effect -> per-guide log-lik over samples
        eta = base + (x * 1.0)[None, :] * scale[None, :] * eff[:, None]
        return pm.logp(pm.NegativeBinomial.dist(mu=pt.exp(eta), alpha=phi), Y).sum(1)

    works = ll(bg[gidx] + d)
    if mode == "mean":
        pm.Potential("lik", works.sum())
    else:
        pi = pm.Beta("pi", 1, 4)
        fails = ll(b0 + d)
        pm.Potential("lik", pm.math.logaddexp(pt.log1p(-pi) + works, pt.log(pi) + fails).sum())
    pm.Deterministic("lfc", bg / np.log(2))

t0_ = time.time()
compiled = nutpie.compile_pymc_model(m, backend="numba")
tr = nutpie.sample(compiled, draws=1000, tune=1000, chains=2, seed=1, progress_bar=False)
secs = time.time() - t0_
post = tr.posterior if hasattr(tr, "posterior") else tr["posterior"]
lfc = post["lfc"].values.reshape(-1, n_g)


g = summarise_draws(gene_names, lfc)  # the panel's gene table, 90 % HDI included
g.to_csv(out / "genes.tsv", sep="\t", index=False)
if case.get("simulated"):  # realised FDR, power and coverage against the known truth
    r = ps.score_simulated(out / "genes.tsv", case, "ours")
else:
    r = br.score_ours(out / "genes.tsv", None, ref)
extra = {}
for v in ["sd_b", "sd_d", "pi", "b0"]:
    if v in post:
        extra[v] = round(float(post[v].mean()), 3)
rh = {}
for v in ["sd_b", "sd_d", "lfc"] + (["pi"] if mode != "mean" else []):
    try:
        rh[v] = float(np.nanmax(np.asarray(az.rhat(np.asarray(post[v].values)))))
    except (ValueError, KeyError):
        rh[v] = -1.0
print(
    json.dumps(
        {
            "case": name,
            "mode": mode + sub,
            "s": round(secs),
            "steps": float(np.asarray(tr.sample_stats["n_steps"].values).mean())
            if "n_steps" in tr.sample_stats
            else None,
            **extra,
            "rhat": {k: round(v, 3) for k, v in rh.items()},
            **{k: v for k, v in r.items() if not isinstance(v, (list, dict))},
        }
    ),
    flush=True,
)
