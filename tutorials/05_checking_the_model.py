# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Checking the model
#
# A posterior is only as good as two things: the sampler explored it (convergence), and
# the model describes the counts (model checking). This tutorial goes through the
# checks in the order you would run them:
#
# 1. **prior predictive check**: before fitting, do the priors produce plausible counts?
# 2. **convergence diagnostics**: after fitting, can the draws be trusted?
# 3. **posterior predictive checks**: does the fitted model reproduce the data, in
#    particular its overdispersion?
# 4. **LOO comparison**: which dispersion and which pool mode predict the counts best?
#
# A simulated screen is used so that every step runs in seconds and so that we know
# what the right answer is (its guides have *different* dispersions, and it has a
# plasmid sample); on your data the same code applies unchanged.

# %%
# %matplotlib inline
import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pymc as pm

import screenformula as sf

# PyTensor's C backend warns when it finds no BLAS library (speed only, not results);
# ArviZ warns about a dimension named "sample" (our screen samples, not its draws).
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
warnings.filterwarnings("ignore", message="Found dimension named 'sample'")
warnings.filterwarnings("ignore", message="Numba will use object mode")

data, truth = sf.simulate_screen(
    n_genes=40, n_sgrnas_per_gene=4, n_replicates=2, n_pool_samples=1, random_seed=11
)
FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
# The simulation draws each guide's dispersion from a Gamma, independent of its
# abundance: the per-guide `dispersion="sgrna"` is the model that made these data (the
# default, `"trend"`, is for real screens; docs/MODEL.md section 3).
model = sf.ScreenModel(FORMULA, data, dispersion="sgrna")  # pool="auto" -> "joint"
data

# %% [markdown]
# ## 1. Prior predictive check
#
# Draw parameters from the priors alone and counts from those parameters. The question
# is not "do they match the data?" (they should not: nothing has been learned yet) but
# "do they cover it without being absurd?" A prior that puts most of its mass on counts
# of 10^12 or on all-zero screens makes the sampler's job harder and can bias small
# screens. screenformula's intercept prior is centred on the data's own median
# normalised count (as brms does), and the other priors are weakly informative on the
# log scale.

# %%
prior = model.sample_prior_predictive(draws=200, random_seed=1)
prior_counts = prior["prior_predictive"]["count"].values.ravel()
observed = model.spec.counts.ravel()

quantiles = [0.05, 0.25, 0.5, 0.75, 0.95]
pd.DataFrame(
    {
        "observed": np.quantile(observed, quantiles),
        "prior predictive": np.quantile(prior_counts, quantiles),
    },
    index=[f"q{int(q * 100)}" for q in quantiles],
).round(0)

# %%
fig, ax = plt.subplots(figsize=(6, 4))
bins = np.linspace(0, 16, 60)
ax.hist(np.log1p(prior_counts), bins=bins, density=True, alpha=0.5, label="prior predictive")
ax.hist(
    np.log1p(observed),
    bins=bins,
    density=True,
    histtype="step",
    lw=2,
    color="black",
    label="observed",
)
ax.set_xlabel("log(1 + count)")
ax.set_ylabel("density")
ax.set_title("Prior predictive check: counts the priors allow vs the data")
ax.legend()
fig.tight_layout()

# %% [markdown]
# The prior predictive is much wider than the data, as it should be, and the data sit
# well inside it. Had the observed counts fallen in a tail, the intercept prior (key
# `"Intercept"`) or the size factors would be the first things to check.
#
# ## 2. Fitting and convergence diagnostics
#
# As everywhere in these tutorials the sampler settings are CI-sized. `fit.diagnostics()`
# reports, per variable, the worst R-hat (chains agree when it is close to 1; the
# threshold is 1.01), the smallest bulk and tail effective sample sizes (ESS; by default
# at least 400, i.e. 100 per chain for 4 chains) and the number of divergent transitions
# (any divergence means the sampler met geometry it could not follow, and the draws
# may be biased).

# %%
SAMPLER = {"draws": 150, "tune": 150, "chains": 2, "random_seed": 1, "progress": False}
fit = model.fit(**SAMPLER)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    diag = fit.diagnostics()
for w in caught:
    print(f"{type(w.message).__name__}: {w.message}")
print("divergent transitions:", diag.attrs["divergences"])
diag

# %% [markdown]
# With 2 x 150 draws this fit misses the ESS threshold: expected, and the
# `ConvergenceWarning` says so. **What to do when the diagnostics fail**, in order:
#
# 1. **Low ESS, R-hat a little above 1.01**: run longer (`draws=1000, tune=1000,
#    chains=4`, the defaults). This is the usual case and the cure is cheap.
# 2. **Divergences**: raise `target_accept` (0.9, 0.95) so the sampler takes smaller
#    steps. If they persist, the geometry is the problem: try the other
#    parameterisation of the group term that diverges, e.g.
#    `parameterization={"gene": True}` (centred) or `{"sgrna": False}` (non-centred).
#    Centred suits levels that the counts identify well (many reads, many replicates);
#    non-centred suits weakly identified ones. The default (`"auto"`) already centres the
#    guide-level slopes of a screen whose counts identify them (RT112: 20 leapfrog steps
#    per draw instead of 420); `print(model)` shows what each term centres.
# 3. **R-hat far above 1 for a few variables**: chains found different answers. Look at
#    which variables (often a group sd near zero, or a correlation with little data);
#    simplify the model there (`||` instead of `|`, drop a guide-level slope) or give
#    that sd a tighter prior (`priors={"sd_sgrna": sf.Prior("HalfNormal", sigma=0.5)}`).
# 4. **Never** report hits from a fit whose diagnostics fail; `method="approx"` is fine
#    for a first look, but it has no diagnostics at all (its intervals are too narrow).
#
# The worst variables first:

# %%
diag.sort_values("ess_bulk_min").head(6)

# %% [markdown]
# ## 3. Posterior predictive checks
#
# Replicate the screen from the fitted model (one replicated count table per posterior
# draw) and compare with the data. Any statistic can be compared; three that matter
# for screens:
#
# - the **distribution of counts** (does the model get the overall shape right?);
# - the **overdispersion per guide** (the negative binomial's reason to exist): for
#   each guide, the variance across replicate samples of the same condition divided
#   by their mean;
# - the **fraction of low counts** (dropouts: guides that vanish).

# %%
pp = pm.sample_posterior_predictive(
    fit.idata, model=model.pymc_model, random_seed=2, progressbar=False
)
replicated = pp["posterior_predictive"]["count"].values
replicated = replicated.reshape(-1, *replicated.shape[2:])  # draws x guides x samples
y = fit.idata["observed_data"]["count"].values  # guides x screen samples
sizes = model.spec.log_size_factors


def dispersion_index(counts):
    """Per guide: variance / mean of the size-normalised counts of each condition."""
    norm = counts / np.exp(sizes)
    conditions = data.samples.loc[list(model.spec.samples), "treatment"].astype(str).to_numpy()
    ratios = []
    for level in np.unique(conditions):
        block = norm[..., conditions == level]
        ratios.append(block.var(axis=-1, ddof=1) / np.maximum(block.mean(axis=-1), 1e-9))
    return np.mean(ratios, axis=0)


obs_index = dispersion_index(y)
rep_index = dispersion_index(replicated[:100])

fig, axes = plt.subplots(1, 3, figsize=(16, 4))
bins = np.linspace(0, np.log1p(y.max()) + 1, 40)
for draw in replicated[:40]:
    axes[0].hist(np.log1p(draw).ravel(), bins=bins, histtype="step", color="C0", alpha=0.2)
axes[0].hist(np.log1p(y).ravel(), bins=bins, histtype="step", color="black", lw=2)
axes[0].set_xlabel("log(1 + count)")
axes[0].set_ylabel("guide x sample cells")
axes[0].set_title("count distribution: data (black), 40 replicates (blue)")

qs = np.linspace(0.02, 0.98, 25)
# one curve per replicated screen: the quantiles of the per-guide index over guides
axes[1].plot(qs, np.quantile(np.log10(rep_index + 1e-3), qs, axis=1), color="C0", alpha=0.1)
axes[1].plot(qs, np.quantile(np.log10(obs_index + 1e-3), qs), color="black", lw=2)
axes[1].set_xlabel("quantile over guides")
axes[1].set_ylabel("log10 variance / mean across replicates")
axes[1].set_title("overdispersion per guide")

low = 10
stat_rep = (replicated < low).mean(axis=(1, 2))
axes[2].hist(stat_rep, bins=20, color="C0", alpha=0.6, label="replicated")
axes[2].axvline((y < low).mean(), color="black", lw=2, label="observed")
axes[2].set_xlabel(f"fraction of counts below {low}")
axes[2].set_ylabel("replicated screens")
axes[2].set_title("low counts (dropouts)")
axes[2].legend()
fig.suptitle("Posterior predictive checks")
fig.tight_layout()

# %% [markdown]
# The black line should run through the blue band in every panel. A data curve above
# the band in the middle panel would say the model underestimates overdispersion (try
# `dispersion="sgrna"` if you used `"shared"`, or a dispersion formula such as
# `"shape ~ 1 + treatment"` when some conditions are noisier than others, as in
# tutorial 04); an observed low-count fraction far in the right tail would point at
# zero-inflation, which no screenformula family models yet.
#
# This fit shows a mild misfit in the third panel: the data have *fewer* counts below
# 10 than most replicated screens. The per-guide dispersion prior, `phi[s] ~ Gamma(1,
# phi_rate)`, is an exponential distribution with much of its mass near zero, and a
# guide seen in four screen samples cannot say much about its own `phi`; a few guides
# are given very small dispersions, whose replicated counts sometimes collapse to near
# zero. (The simulation drew `phi` from a Gamma with shape 4, which has little mass near
# zero.) It is small here, but it is the kind of discrepancy only a predictive check
# shows, and a reason to look at the dispersion when a screen has few replicates.
#
# ## 4. LOO comparison of dispersion and pool modes
#
# PSIS-LOO estimates how well each model predicts a count it did not see (expected log
# predictive density, ELPD; higher is better), from one fit per model. The fit stores
# the pointwise log-likelihood, so ArviZ does the rest. We fit two alternatives:
#
# - `dispersion="shared"`: one dispersion for all guides, against the per-guide
#   dispersion;
# - `pool="offset"`: the plasmid counts as a fixed offset, against the default joint
#   pool likelihood.
#
# All three models are compared on the same observations, the screen counts
# (`var_name="count"`): the joint model also has a likelihood for the pool counts, which
# the offset model does not, so comparing everything would not be fair.

# %%
fits = {
    "sgrna dispersion, joint pool": fit,
    "shared dispersion, joint pool": sf.ScreenModel(FORMULA, data, dispersion="shared").fit(
        **SAMPLER
    ),
    "sgrna dispersion, offset pool": sf.ScreenModel(FORMULA, data, pool="offset").fit(**SAMPLER),
}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Pareto-k warnings: discussed below
    loos = {name: az.loo(f.idata, var_name="count") for name, f in fits.items()}
    comparison = az.compare(loos)
comparison

# %% [markdown]
# How to read it: `elpd_diff` is each model's ELPD minus the best one's, `dse` its
# standard error. A difference of less than about 2-4 standard errors is not a reason
# to prefer one model. The simulated guides have dispersions that vary 2-fold around
# their mean, so the per-guide dispersion should come out ahead of the shared one.
#
# ### The Pareto-k diagnostic
#
# PSIS-LOO is only reliable for observations whose Pareto k is below 0.7. Each guide
# here has its own baseline, slope and dispersion, informed by a handful of counts,
# so leaving out one count moves the posterior of those parameters a lot, and many
# counts get a high k:

# %%
rows = []
for name, loo in loos.items():
    k = np.asarray(loo.pareto_k).ravel()
    rows.append(
        {
            "model": name,
            "elpd_loo": round(float(loo.elpd), 1),
            "p_loo": round(float(loo.p), 1),
            "k > 0.7": f"{(k > 0.7).mean():.1%}",
            "k > 1": f"{(k > 1).mean():.1%}",
        }
    )
pd.DataFrame(rows).set_index("model")

# %% [markdown]
# When many k are high, the ELPD estimates carry extra error and small differences
# should not be trusted. Remedies, from cheap to thorough: compare models on a
# **coarser unit** (leave out a whole guide or sample: exact K-fold cross-validation,
# `az.loo_kfold`, refitting K times); use **moment matching**
# (`az.loo_moment_match`), which needs the model's log-density function; or rely on the
# posterior predictive checks above, which do not have this problem. For genome-wide
# screens the pointwise log-likelihood is only stored when it fits in memory
# (`log_likelihood=True` forces it).
#
# ### What the choice changes in the gene list
#
# Whatever LOO says, the question a biologist cares about is whether the choice changes
# the conclusions. `fit.compare(other)` gives, per gene, how the LFC and its sd move
# (and the hit calls of `fit.contrast()` with its defaults, i.e. calls of an LFC
# beyond `delta = 0.5`):

# %%
rows = []
for name, other in list(fits.items())[1:]:
    moved = fit.compare(other)
    rows.append(
        {
            "alternative": name,
            "median |LFC change| (log2)": round(float(moved["lfc_change"].abs().median()), 3),
            "max |LFC change| (log2)": round(float(moved["lfc_change"].abs().max()), 3),
            "median sd ratio (default / alt.)": round(float(moved["sd_ratio"].median()), 2),
            "hits only in default": int((moved["hit_fit"] & ~moved["hit_other"]).sum()),
            "hits only in alternative": int((~moved["hit_fit"] & moved["hit_other"]).sum()),
        }
    )
pd.DataFrame(rows).set_index("alternative")

# %% [markdown]
# ## Summary: a checklist
#
# - Before fitting: `print(model)` (is it the model you meant?), a prior predictive
#   check.
# - After fitting: `fit.diagnostics()` with no warning (R-hat <= 1.01, ESS >= 400, no
#   divergences) before reading any gene table.
# - Posterior predictive checks of the count distribution, the overdispersion per guide
#   and low counts.
# - Alternatives compared with LOO (minding Pareto k) and, above all, with
#   `fit.compare()`: conclusions that survive reasonable changes of the model are the
#   ones to report.
