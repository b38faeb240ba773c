"""Stage 1 without NUTS? Laplace-marginalised gene blocks (INLA / TMB style) on HAP1.

Issue 14's wall time is mostly stage 1: NUTS on 300 genes needs 7,000-9,000 draws per
chain before the guide-level LFC sd mixes (ESS 400). Given the 11 global parameters,
every gene's block is independent, and the two-stage engine already finds each block's
mode and Hessian (`laplace.newton`). So the globals' posterior could be had without
sampling the 300 genes' blocks at all, from the marginal likelihood of each block:

- ``laplace``: the Laplace approximation, ``log p(y_g, x_g | theta)`` at the block's mode
  plus ``(d / 2) log 2 pi - log det P / 2``; maximised over the globals with
  finite-difference gradients (L-BFGS);
- ``importance``: that approximation corrected by importance sampling from the engine's
  own Student-t proposal (``M`` draws per gene, common random numbers, so the estimate
  is smooth in the globals); gradients by Fisher's identity
  (``E[grad_theta log p(y, x | theta)]`` under the weighted draws).

At each method's mode the Hessian (finite differences) gives a Gaussian for the globals,
from which ``S`` Student-t draws are importance-weighted by the method's marginal
(Pareto k-hat). Every global is compared with NUTS on the same 300 genes (the engine's
`stage1.run_stage1`, 2 chains x 8,000 draws, cached with ``--nuts-cache``), in units of
NUTS's posterior sd, on the engine's unconstrained scale.

    nice -n 5 .venv/bin/python benchmarks/bench_stage1_laplace.py --nuts-cache /tmp/lap1

Writes ``benchmarks/results/stage1_laplace.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from _machine import cpu_name, git_revision  # noqa: E402
from bench_stage1 import hap1_model  # noqa: E402

OUT = HERE / "results" / "stage1_laplace.json"


class BlockMarginal:
    """Log marginal likelihood of a subset model's gene blocks, as a function of the globals."""

    def __init__(self, sub, draws_per_gene: int) -> None:  # noqa: ANN001 - a ScreenModel
        import pytensor
        import pytensor.tensor as pt

        from screenformula.inference.two_stage.density import BlockDensity

        self.density = BlockDensity(sub)
        lay = self.density.layout
        pm = self.density.pymc_model
        gin = self.density.global_inputs
        weights = pt.vector("weights")
        fisher = pytensor.grad((weights * self.density.lp_graph).sum(), gin)
        self._fisher = pytensor.function(
            [*gin, self.density.G, self.density.U, *self.density.data_inputs, weights],
            fisher,
            mode="NUMBA",
            on_unused_input="ignore",
        )
        rvs = [rv for rv in pm.free_RVs if pm.rvs_to_values[rv].name in lay.global_names]
        prior = pm.logp(vars=rvs, sum=True, jacobian=True)
        self._prior = pytensor.function(
            gin, [prior, *pytensor.grad(prior, gin)], on_unused_input="ignore"
        )
        sizes = [int(np.prod(lay.global_shapes[n], dtype=int)) for n in lay.global_names]
        self.offsets = np.cumsum([0, *sizes])
        point = pm.initial_point()
        self.start = np.concatenate([np.ravel(point[n]) for n in lay.global_names]).astype(float)
        self.G, self.U = lay.join(point)
        self.M = draws_per_gene
        self.evaluations = 0

    def labels(self) -> list[str]:
        """``name[i]`` of every coordinate of the flat global vector."""
        out = []
        for i, name in enumerate(self.density.layout.global_names):
            out += [f"{name}[{j}]" for j in range(self.offsets[i + 1] - self.offsets[i])]
        return out

    def split(self, theta: np.ndarray) -> list[np.ndarray]:
        """The globals (input order) from the flat vector."""
        lay = self.density.layout
        return [
            np.asarray(theta[self.offsets[i] : self.offsets[i + 1]]).reshape(lay.global_shapes[n])
            for i, n in enumerate(lay.global_names)
        ]

    def __call__(
        self, theta: np.ndarray, method: str, gradient: bool = False, keep: bool = True
    ) -> tuple[float, np.ndarray | None]:
        """Log prior plus the blocks' log marginal (``laplace`` or ``importance``)."""
        from scipy.special import logsumexp

        from screenformula.inference.two_stage.laplace import newton, sample_proposal

        self.evaluations += 1
        glob = self.split(theta)
        fit = newton(self.density, glob, self.G, self.U, tol=1e-12)
        if not fit.ok.all():
            return -np.inf, None
        if keep:
            self.G, self.U = fit.G, fit.U
        prior = self._prior(*glob)
        if method == "laplace":
            dim = self.density.layout.dim
            logdet = fit.factor.logdet
            value = (fit.lp + 0.5 * dim * np.log(2 * np.pi) - 0.5 * logdet).sum()
            return float(value + prior[0]), None
        G, U, logq = sample_proposal(fit, self.M, np.random.default_rng(12345), df=7.0, scale=1.1)
        lp = np.stack([self.density.logp(glob, G[m], U[m]) for m in range(self.M)])
        ratio = lp - logq
        value = float((logsumexp(ratio, axis=0) - np.log(self.M)).sum() + prior[0])
        if not gradient:
            return value, None
        weights = np.exp(ratio - logsumexp(ratio, axis=0))
        grad = np.concatenate([np.ravel(g) for g in prior[1:]])
        for m in range(self.M):
            g = self._fisher(*glob, G[m], U[m], *self.density.data_values, weights[m])
            grad = grad + np.concatenate([np.ravel(x) for x in g])
        return value, grad


def fit_globals(marginal: BlockMarginal, method: str, n_draws: int) -> dict:
    """Mode, Hessian and importance-weighted draws of the globals under one marginal."""
    from scipy.optimize import minimize
    from scipy.special import gammaln

    from screenformula.inference.two_stage.importance import psis

    marginal.evaluations = 0
    start = time.perf_counter()
    if method == "laplace":
        res = minimize(
            lambda t: -marginal(t, method)[0],
            marginal.start,
            method="L-BFGS-B",
            options={"eps": 1e-5, "maxiter": 300},
        )
    else:

        def negative(t: np.ndarray) -> tuple[float, np.ndarray]:
            v, g = marginal(t, method, gradient=True)
            return -v, -g

        res = minimize(negative, marginal.start, jac=True, method="L-BFGS-B")
    theta = res.x
    t_mode = time.perf_counter() - start
    G, U = marginal.G.copy(), marginal.U.copy()
    n, h = len(theta), 1e-3
    H = np.empty((n, n))
    f0 = marginal(theta, method)[0]
    for i in range(n):
        e = np.zeros(n)
        e[i] = h
        if method == "laplace":
            H[i, i] = (
                marginal(theta + e, method)[0] - 2 * f0 + marginal(theta - e, method)[0]
            ) / h**2
            for j in range(i):
                d = np.zeros(n)
                d[j] = h
                H[i, j] = H[j, i] = (
                    marginal(theta + e + d, method)[0]
                    - marginal(theta + e - d, method)[0]
                    - marginal(theta - e + d, method)[0]
                    + marginal(theta - e - d, method)[0]
                ) / (4 * h * h)
        else:
            marginal.G, marginal.U = G, U
            up = marginal(theta + e, method, gradient=True, keep=False)[1]
            down = marginal(theta - e, method, gradient=True, keep=False)[1]
            H[:, i] = (up - down) / (2 * h)
    H = 0.5 * (H + H.T)
    cov = np.linalg.inv(-H)
    t_hessian = time.perf_counter() - start - t_mode
    rng = np.random.default_rng(0)
    df, scale = 5.0, 1.2
    chol = np.linalg.cholesky(cov) * scale
    z = rng.standard_normal((n_draws, n))
    w = rng.gamma(df / 2, 2 / df, size=n_draws)
    draws = theta + (z @ chol.T) / np.sqrt(w)[:, None]
    logq = (
        gammaln((df + n) / 2)
        - gammaln(df / 2)
        - n / 2 * np.log(df * np.pi)
        - np.log(np.diag(chol)).sum()
        - (df + n) / 2 * np.log1p((z**2).sum(1) / w / df)
    )
    target = []
    for d in draws:
        marginal.G, marginal.U = G, U
        target.append(marginal(d, method, keep=False)[0])
    logw, khat = psis((np.asarray(target) - logq)[None, :])
    weights = np.exp(logw[0])
    weights /= weights.sum()
    mean = weights @ draws
    return {
        "mode": theta.tolist(),
        "mode_sd": np.sqrt(np.diag(cov)).tolist(),
        "is_mean": mean.tolist(),
        "is_sd": np.sqrt(weights @ (draws - mean) ** 2).tolist(),
        "khat": float(khat[0]),
        "is_ess": float(1 / (weights**2).sum()),
        "proposals": n_draws,
        "evaluations": marginal.evaluations,
        "seconds_mode": round(t_mode, 1),
        "seconds_hessian": round(t_hessian, 1),
        "seconds_total": round(time.perf_counter() - start, 1),
        "optimizer": str(res.message),
    }


def nuts_reference(model, genes: np.ndarray, draws: int, cache: Path | None):  # noqa: ANN001, ANN201
    """Stage-1 NUTS draws of the globals on ``genes`` (the engine's own), cached as netCDF."""
    import xarray as xr

    from screenformula.inference.nuts import variable_shapes
    from screenformula.inference.two_stage.blocks import global_free_rvs
    from screenformula.inference.two_stage.stage1 import run_stage1

    path = cache / f"nuts_{len(genes)}_{draws}.nc" if cache else None
    if path is not None and path.exists():
        return xr.open_dataset(path), None
    data = model.data
    full = model.pymc_model
    probe = [
        rv for rv, _ in global_free_rvs(full, data.n_genes, data.n_sgrnas, variable_shapes(full))
    ]
    idata, _, seconds = run_stage1(
        model, genes, probe, [], draws=draws, tune=1000, chains=2, random_seed=5,
        progress=False, target_accept=0.8,
    )  # fmt: skip
    post = idata["posterior"].to_dataset()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        post.to_netcdf(path)
    return post, seconds


def report(record: dict) -> str:
    """The markdown page of one run."""
    lines = [
        "# Stage 1 by Laplace-marginalised gene blocks, against NUTS (HAP1, 300 genes)",
        "",
        "Generated by `benchmarks/bench_stage1_laplace.py` (do not edit by hand); issue 14.",
        "",
        f"- Run: {record['when']}, {record['cpu']}, load {record['load_start']} at start; "
        f"git {record['git']}.",
        f"- Subsample: {record['genes']} HAP1 genes (the engine's `choose_genes`, seed 1); "
        f"NUTS: the engine's stage 1, 2 chains x {record['nuts_draws']:,} draws (seed 5).",
        "- z: (method's mean - NUTS's mean) / NUTS's sd, per global on the engine's "
        "unconstrained scale. Mode: the marginal's maximum (its Hessian's sd in brackets); "
        f"IS: {record['laplace']['proposals']} Student-t(5) draws around the mode "
        "weighted by the marginal (Pareto k-hat below).",
        "",
        "| global | NUTS mean (sd) | Laplace mode (sd) | z | IS-corrected mode (sd) | z "
        "| IS-corrected, weighted draws: mean | z |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lap, imp, nuts = record["laplace"], record["importance"], record["nuts"]
    for i, name in enumerate(record["labels"]):
        m, s = nuts["mean"][i], nuts["sd"][i]
        lines.append(
            f"| {name} | {m:.3f} ({s:.3f}) | {lap['mode'][i]:.3f} ({lap['mode_sd'][i]:.3f}) "
            f"| {(lap['mode'][i] - m) / s:+.1f} | {imp['mode'][i]:.3f} ({imp['mode_sd'][i]:.3f}) "
            f"| {(imp['mode'][i] - m) / s:+.1f} | {imp['is_mean'][i]:.3f} "
            f"| {(imp['is_mean'][i] - m) / s:+.1f} |"
        )
    lines += ["", "| method | evaluations | seconds: mode / Hessian / all | k-hat | IS ESS |"]
    lines += ["|---|---|---|---|---|"]
    for name, r in (("Laplace", lap), (f"IS-corrected (M = {record['draws_per_gene']})", imp)):
        lines.append(
            f"| {name} | {r['evaluations']} | {r['seconds_mode']} / {r['seconds_hessian']} / "
            f"{r['seconds_total']} | {r['khat']:.2f} | {r['is_ess']:.1f} |"
        )
    lines += ["", record["conclusion"], ""]
    return "\n".join(lines)


def conclusion(record: dict) -> str:
    """What the run says about a sampler-free stage 1 (figures from ``record``)."""
    labels, nuts = record["labels"], record["nuts"]

    def z(method: str, key: str, name: str) -> float:
        i = labels.index(name)
        return (record[method][key][i] - nuts["mean"][i]) / nuts["sd"][i]

    imp = record["importance"]
    per_eval = imp["seconds_total"] / imp["evaluations"]
    return (
        "Reading: the plain Laplace marginal misplaces the guide dispersion sd by "
        f"{z('laplace', 'mode', 'sd_phi_log__[0]'):+.1f} NUTS sds and the dispersion "
        f"trend's intercept by {z('laplace', 'mode', 'phi_trend_Intercept[0]'):+.1f}: each "
        "guide's log phi, seen in four counts, has a skewed posterior that a Gaussian "
        "misses. Correcting each block's marginal by importance sampling moves them back "
        f"({z('importance', 'mode', 'sd_phi_log__[0]'):+.1f} and "
        f"{z('importance', 'mode', 'phi_trend_Intercept[0]'):+.1f}), but the globals' "
        "posterior is far from Gaussian: weighted Student-t draws around either mode "
        f"have Pareto k-hat {record['laplace']['khat']:.2f} and {imp['khat']:.2f} (above "
        "0.7: unusable), and the mode of the guide-level LFC sd lies "
        f"{z('importance', 'mode', 'sd_sgrna_log__[1]'):+.1f} NUTS sds from its mean. "
        "Its draws would need MCMC over the 11 globals, one importance-corrected "
        f"marginal (Newton on every block plus M proposals, {per_eval:.1f} s here) per "
        "gradient: thousands of them, against stage 1's few minutes of NUTS. Stage 1 "
        "stays NUTS on the subsample."
    )


def main() -> None:
    from screenformula.inference.two_stage.blocks import subset_model
    from screenformula.inference.two_stage.stage1 import choose_genes, unconstrained

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=300)
    parser.add_argument("--nuts-draws", type=int, default=8000)
    parser.add_argument("--draws-per-gene", type=int, default=32)
    parser.add_argument("--proposals", type=int, default=200)
    parser.add_argument("--nuts-cache", type=Path)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.report_only:
        OUT.with_suffix(".md").write_text(report(json.loads(OUT.read_text())))
        return
    model = hap1_model()
    genes = choose_genes(model.data, args.genes, np.random.default_rng(1))
    post, nuts_seconds = nuts_reference(model, genes, args.nuts_draws, args.nuts_cache)
    sub, _ = subset_model(model, genes)
    marginal = BlockMarginal(sub, args.draws_per_gene)
    lay = marginal.density.layout
    n_flat = post.sizes["chain"] * post.sizes["draw"]
    picks = np.linspace(0, n_flat - 1, 2000).round().astype(int)
    unc = unconstrained(sub.pymc_model, list(lay.global_names), post, picks)
    flat = np.array([np.concatenate([np.ravel(u[n]) for n in lay.global_names]) for u in unc])
    record = {
        "genes": int(len(genes)),
        "nuts_draws": args.nuts_draws,
        "nuts_seconds": nuts_seconds,
        "draws_per_gene": args.draws_per_gene,
        "labels": marginal.labels(),
        "nuts": {"mean": flat.mean(0).tolist(), "sd": flat.std(0).tolist()},
        "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "cpu": f"{os.cpu_count()} cores ({cpu_name()})",
        "load_start": round(os.getloadavg()[0], 1),
        "git": git_revision(),
    }
    record["laplace"] = fit_globals(marginal, "laplace", args.proposals)
    marginal.G, marginal.U = marginal.density.layout.join(sub.pymc_model.initial_point())
    record["importance"] = fit_globals(marginal, "importance", args.proposals)
    record["conclusion"] = conclusion(record)
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    OUT.with_suffix(".md").write_text(report(record))
    print(report(record))


if __name__ == "__main__":
    main()
