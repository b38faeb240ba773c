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
# # Coming from brms
#
# screenformula speaks brms's formula language and borrows its vocabulary (`b`, `sd`,
# `cor`, `shape`, `prior_summary`), so a brms user can read a screenformula model at a
# glance. This page is a dictionary: first a table of brms calls and their
# screenformula spelling, then one small model fitted here, with every screenformula
# equivalent actually running. R is not available in this notebook, so brms code is
# shown as text only.
#
# Where screenformula has **no** equivalent, the table says so rather than pointing at
# something that merely looks similar.

# %% [markdown]
# ## The dictionary
#
# **Model and formula**
#
# | brms | screenformula | notes |
# | --- | --- | --- |
# | `brm(count ~ ..., data = long_df, family = negbinomial())` | `sf.ScreenModel("count ~ ...", data).fit()` | `data` is a `ScreenData` (count matrix + sample sheet), not a long table; one row per guide x sample is implied |
# | `(1 + treatment \| gene)` | `(1 + treatment \| gene)` | correlated varying effects, LKJ prior on the correlation |
# | `(1 + treatment \|\| gene)` | `(1 + treatment \|\| gene)` | independent varying effects (no correlation) |
# | `(1 \| gene/sgrna)` | `(1 \| gene/sgrna)` | expands to `(1 \| gene) + (1 \| gene:sgrna)`, as in brms |
# | `(1 \| gene:sgrna)` | `(1 \| gene:sgrna)` | `gene`, `sgrna`, `group` are built-in factors; any sample-sheet column works too |
# | `(1 + treatment \| gr(gene, dist = "student"))` | the same | multivariate Student-t varying effects (heavier tails); prior key `"df"` / `"df_gene"`, default Gamma(2, 0.1) as brms |
# | (no brms shortcut) | `(1 + treatment \| gr(gene, dist = "student_slopes"))` | Student-t slopes beside normal intercepts, df fixed at 3 by default (`"df"`; a Gamma prior estimates it); the gene term of `screenformula test` and the demo |
# | `(1 \| p \| gene)` (ID syntax), `gr(..., by = )`, `mm()`, `s()`, `t2()`, `gp()`, `mo()`, `me()`, `mi()` | not supported | refused by name: "s(x) is not supported by screenformula" |
# | `+ offset(log(size_factor))` | automatic | size factors (median-of-ratios, total or control guides) always enter as an offset |
# | `+ offset(x)` | `+ offset(x)` | `x` a numeric sample-sheet column |
# | `family = negbinomial()` | `family="negativebinomial"` (default) | `Var = mu + mu^2 / shape`: brms's `shape` is our `phi` |
# | `family = poisson()` | `family="poisson"` | |
# | `bf(count ~ ..., shape ~ 1 + (1 \| sgrna))` | `dispersion="shape ~ 1 + (1 \| sgrna)"` | log link; `alpha ~` and `phi ~` are accepted spellings |
# | one `shape`, prior `gamma(0.01, 0.01)` | `dispersion="shared"` | same default prior, key `"phi"` |
# | (no brms shortcut) | `dispersion="sgrna"` | `phi[s] ~ Gamma(1, phi_rate)`, one per guide, partially pooled (the default until the panel of real screens, `benchmarks/results/panel.md`) |
# | `bf(count ~ a + s * b, nl = TRUE)` with a per-replicate `s` | `replicate_scale="condition"` (default) | each replicate of a condition multiplies the treatment part by its own factor, `log s ~ ZeroSumNormal(0.5)` within the condition (prior key `"log_scale"`), so effects are the replicates' geometric mean's; `replicate_scale="none"` for one effect per condition |
# | (no brms shortcut) | `dispersion="trend"` (default) | `log phi` linear in each guide's starting abundance per sample class, every guide on it (DESeq2's mean-dispersion trend, made Bayesian; a prior on `sd_phi` adds each guide's own deviation); priors `"phi_trend_Intercept"`, `"phi_trend_slope"`, `"sd_phi"` |
#
# **Priors**
#
# | brms | screenformula | notes |
# | --- | --- | --- |
# | `set_prior("normal(0, 2)", class = "b")` | `priors={"b": sf.Prior("Normal", mu=0, sigma=2)}` | default Student-t(5, 0, 1); brms's default is flat |
# | `set_prior(..., class = "b", coef = "treatmentdrugA")` | `"b_treatment[drugA]"` | coefficient names as `prior_summary()` prints them |
# | `set_prior(..., class = "sd", group = "gene")` | `"sd_gene"` (or `"sd"` for all) | default Exponential(1); brms: half Student-t(3, 0, 2.5) |
# | `set_prior(..., class = "sd", group = "gene", coef = "Intercept")` | `"sd_gene__Intercept"` | |
# | `set_prior("lkj(2)", class = "cor")` | `"cor": 2` or `lkj_eta=2` | default LKJ(3); brms: LKJ(1) |
# | `set_prior(..., class = "Intercept")` | `"Intercept"` | default Student-t(3, log median normalised count, 2.5), as brms |
# | `set_prior(..., class = "shape")` | `"phi"` (shared), `"phi_rate"` (per guide), `"alpha_Intercept"`, `"alpha_sd"` (formula) | |
# | `get_prior()`, `prior_summary(fit)` | `model.prior_summary()`, `print(model)` | before or after fitting |
# | `sample_prior = "only"` | `model.sample_prior_predictive()` | prior and prior predictive draws |
#
# **Fitting and results**
#
# | brms | screenformula | notes |
# | --- | --- | --- |
# | `iter`, `warmup`, `chains`, `seed` | `draws`, `tune`, `chains`, `random_seed` | `draws` counts kept draws only (brms's `iter` includes warm-up) |
# | `control = list(adapt_delta = 0.95)` | `target_accept=0.95` | |
# | `backend = "cmdstanr"` | `engine="nutpie"` (default), `"pymc"`, `"numpyro"` | or `method="approx"` for a fast, approximate first look |
# | `summary(fit)`, `print(fit)` | `fit.summary()`, `print(fit)` | brms's layout and columns (Estimate, Est.Error, l-95% CI, u-95% CI, Rhat, Bulk_ESS, Tail_ESS); `fit.diagnostics()` adds divergences |
# | `fixef(fit)` | `fit.fixef()` | brms's names (`treatmentdrugA`); `summary=False` gives the draws |
# | `ranef(fit)` | `fit.ranef()["gene"]["treatmentdrugA"]` | deviations per level, by grouping factor as the formula writes it; gene totals (`coef()`): `fit.contrast()` |
# | `VarCorr(fit)` | `fit.VarCorr()["gene"]["sd"]`, `["cor"]` | |
# | `hypothesis(fit, "treatmentdrugA - treatmentdrugB < 0")` | `fit.hypothesis("treatmentdrugA - treatmentdrugB < 0")` | brms's columns; `group="gene", scope="coef"` per gene; with q-values: `fit.contrast("treatment", a="drugA", b="drugB")` |
# | `pp_check(fit)` | `fit.pp_check()` | density overlay on log10(count + 1) |
# | `loo(fit)`, `loo_compare(a, b)` | `fit.loo()`, `fit.loo_compare(other)` | ArviZ's PSIS-LOO; the log-likelihood is computed when the fit did not store it |
# | `conditional_effects(fit)` | `fit.conditional_effects()`, `.plot()` | typical guide's expected count per level (`scale="lfc"`: log2 fold-change); per gene: `fit.expected_counts()` |
# | `posterior_epred(fit)`, `posterior_predict(fit)`, `log_lik(fit)` | `fit.posterior_epred()`, `fit.posterior_predict()`, `fit.log_lik()` | draws x guide x sample (xarray); `ndraws=` as brms, fewer draws by default for a big screen |
# | ArviZ on a brmsfit (`as_draws`) | `az.summary(fit.idata)` | ArviZ functions take `fit.idata`; given `fit` they say so |
# | `as_draws_df(fit)` | `fit.posterior` (xarray), `fit.posterior["b"].to_dataframe()` | |
# | `saveRDS(fit)`, `readRDS` | `fit.save("fit.nc")`, `sf.load_fit("fit.nc")` | one netCDF file with data and model settings |

# %% [markdown]
# ## The same model, both ways
#
# A small simulated screen (30 genes x 3 guides; control and two drugs, 2 replicates
# each) stands in for your data. In brms you would first make a long table, one row per
# guide x sample, with the log size factor as a column, and write:
#
# ```r
# library(brms)
# fit <- brm(
#   bf(count ~ 1 + treatment + offset(log_sf) +
#        (1 + treatment | gene) + (1 | gene:sgrna),
#      shape ~ 1 + (1 | sgrna)),
#   family = negbinomial(),
#   data = long_df,
#   prior = c(set_prior("student_t(5, 0, 1)", class = "b"),
#             set_prior("normal(0, 2)", class = "b", coef = "treatmentdrugA"),
#             set_prior("lkj(2)", class = "cor")),
#   chains = 2, iter = 300, warmup = 150, seed = 1
# )
# prior_summary(fit)
# ```
#
# In screenformula:

# %%
# %matplotlib inline
import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np

import screenformula as sf

# PyTensor's C backend warns when it finds no BLAS library; it only affects the speed of
# some operations (sampling runs in nutpie's compiled code), not the results.
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
# Predictive draws: ArviZ warns about a dimension named "sample" (our screen samples, not
# its draws), and PyTensor that it runs the NumPy random-number code as Python.
warnings.filterwarnings("ignore", message="Found dimension named 'sample'")
warnings.filterwarnings("ignore", message="Numba will use object mode")

data, truth = sf.simulate_screen(
    n_genes=30,
    n_sgrnas_per_gene=3,
    treatments=("drugA", "drugB"),
    n_replicates=2,
    n_pool_samples=0,
    random_seed=3,
)
model = sf.ScreenModel(
    "count ~ 1 + treatment + (1 + treatment | gene) + (1 | gene:sgrna)",
    data,
    dispersion="shape ~ 1 + (1 | sgrna)",
    priors={
        "b": sf.Prior("StudentT", nu=5, mu=0, sigma=1),
        "b_treatment[drugA]": sf.Prior("Normal", mu=0, sigma=2),
        "cor": 2,
    },
)
model.prior_summary()

# %% [markdown]
# `print(model)` is the human-readable version: likelihood, dispersion, group terms and
# every prior with `(default)` or `(user)` beside it.

# %%
print(model)

# %% [markdown]
# ### Formula syntax, checked
#
# Building a model does not fit it, so the parser can be tried cheaply. `||` gives
# independent effects, `gene/sgrna` expands into two terms exactly as in brms:

# %%
print(sf.ScreenModel("count ~ 1 + treatment + (1 + treatment || gene/sgrna)", data))

# %% [markdown]
# An `offset()` takes a numeric sample-sheet column. For example, size factors from
# external spike-ins: switch the built-in ones off (`size_factors="none"`) and pass your
# own log factor. Here the log total count per sample stands in for a spike-in
# measurement, which makes this model the same as `size_factors="total"`.

# %%
sheet = data.samples.copy()
sheet["log_spikein"] = np.log(data.depth / data.depth.mean())
spiked = sf.ScreenData(data.counts, data.sgrnas, data.genes_of_sgrna, sheet, size_factors="none")
print(sf.ScreenModel("count ~ 1 + treatment + offset(log_spikein) + (1 | gene:sgrna)", spiked))

# %% [markdown]
# ### Fitting
#
# `draws=150, tune=150` mirrors `iter = 300, warmup = 150`. These are CI-sized numbers;
# use the defaults (1000 + 1000, 4 chains) for an analysis you report.

# %%
fit = model.fit(draws=150, tune=150, chains=2, random_seed=1, progress=False)
print(fit)

# %% [markdown]
# ### `summary(fit)`
#
# `fit.summary()` prints brms's summary: group-level sds and correlations per grouping
# factor, regression coefficients and the dispersion, each with R-hat and bulk/tail ESS
# (with 2 x 150 draws ESS falls short of 400, as expected here; tutorial 05 explains
# what to do about it). Its tables are DataFrames: `.fixed`, `.random["gene"]`,
# `.spec_pars`.

# %%
s = fit.summary()
print(s)

# %% [markdown]
# `fit.diagnostics()` adds the divergence count and names, for every variable, what it
# is in words:

# %%
diag = fit.diagnostics(warn=False)
print("divergences:", diag.attrs["divergences"])
diag

# %% [markdown]
# ### `fixef()`, `ranef()`, `VarCorr()`
#
# Population-level ("fixed") effects, named as brms names them:

# %%
fit.fixef()

# %% [markdown]
# Group-level sds and correlations (`VarCorr`), per grouping factor:

# %%
vc = fit.VarCorr()
print(vc["gene"]["sd"].round(3))
vc["gene"]["cor"].round(3)

# %% [markdown]
# Group-level deviations (`ranef`), one table per grouping factor as the formula writes
# it, levels x (coefficient, statistic); brms's `ranef(fit)$gene[, , "treatmentdrugA"]`
# is:

# %%
fit.ranef()["gene"]["treatmentdrugA"].head()

# %% [markdown]
# These are deviations from the population coefficient, as in brms. For a screen the
# quantity of interest is usually a gene's total treatment effect (`b + r_gene`: brms's
# `coef()`), which `fit.contrast()` computes and summarises:

# %%
res = fit.contrast("treatment", delta=0.5)
res.genes.sort_values("rank")[["gene", "contrast", "lfc", "hdi_low", "hdi_high", "qvalue"]].head()

# %% [markdown]
# ### `hypothesis()`
#
# String hypotheses, with brms's columns: on the population effects,

# %%
fit.hypothesis(["treatmentdrugA - treatmentdrugB < 0", "treatmentdrugA = 0"])

# %% [markdown]
# and per gene (brms's `scope = "coef", group = "gene"`: population effect plus the
# gene's deviation; `Group` names the gene):

# %%
per_gene = fit.hypothesis("treatmentdrugA - treatmentdrugB < 0", group="gene", scope="coef")
per_gene.sort_values("Post.Prob", ascending=False).head()

# %% [markdown]
# For calling genes, `fit.contrast` asks the same per-gene question with a minimum
# effect, posterior error probabilities and q-values across genes:

# %%
a_vs_b = fit.contrast("treatment", a="drugA", b="drugB", delta=0.5)
a_vs_b.genes.sort_values("rank")[["gene", "contrast", "lfc", "prob_up", "prob_down", "pep"]].head()

# %% [markdown]
# ### `posterior_epred()`, `posterior_predict()`, `pp_check()`
#
# Draws x guides x samples, as xarray (brms's draws x observations matrix is
# `.values.reshape(ndraws, -1)`); `ndraws=` as in brms, and a big screen gets fewer
# draws by default so memory stays sane:

# %%
epred = fit.posterior_epred(ndraws=100)
print(dict(epred.sizes))
yrep = fit.posterior_predict(ndraws=100, seed=1)
print("mean count: observed", model.spec.counts.mean().round(1), "| replicated", yrep.mean().item())

# %% [markdown]
# `pp_check` overlays the observed counts on replicated data sets (log10(count + 1)):

# %%
fit.pp_check(ndraws=20, seed=1)

# %% [markdown]
# ### `loo()`, `loo_compare()`
#
# ArviZ's PSIS-LOO of the guide x sample counts, from the stored pointwise
# log-likelihood (computed from the posterior when a fit did not keep one).
# `fit.loo_compare(other)` plays `loo_compare`; tutorial 05 compares dispersion and pool
# modes and explains the Pareto-k warnings.

# %%
fit.loo()

# %% [markdown]
# ### `conditional_effects()`
#
# The expected count of a typical guide at each level of each population predictor
# (group-level effects left out, as brms's default), at a typical sequencing depth;
# `scale="lfc"` gives log2 fold-changes from the reference level, and `.plot()` draws
# them:

# %%
ce = fit.conditional_effects()
print(ce)
ce.plot()

# %% [markdown]
# Per gene, `fit.expected_counts()` gives the posterior expected ("real", de-noised) read
# count of every gene in every condition, with intervals, beside the observed
# normalised count:

# %%
expected = fit.expected_counts()
top = list(res.genes.sort_values("rank")["gene"].drop_duplicates().head(4))
shown = expected[expected["gene"].isin(top)]

fig, ax = plt.subplots(figsize=(7, 4))
by = expected.attrs["by"]  # the sample-sheet column the counts are per level of
conditions = list(dict.fromkeys(shown[by]))
for i, gene in enumerate(top):
    g = shown[shown["gene"] == gene].set_index(by).loc[conditions]
    x = np.arange(len(conditions)) + (i - 1.5) * 0.12
    ax.errorbar(
        x,
        g["mean"],
        yerr=[g["mean"] - g["hdi_low"], g["hdi_high"] - g["mean"]],
        fmt="o-",
        label=gene,
    )
    ax.scatter(x, g["observed"], marker="x", color="black", zorder=3)
ax.set_xticks(range(len(conditions)), conditions)
ax.set_yscale("log")
ax.set_xlabel(by)
ax.set_ylabel("expected gene count (sum over guides)")
ax.set_title("Expected counts per condition (94% HDI); x = observed, normalised")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ### ArviZ
#
# Every ArviZ function takes the posterior, `fit.idata` (`az.summary(fit)` says so):

# %%
az.summary(fit.idata, var_names=["Intercept", "b"])

# %% [markdown]
# ### Saving: `saveRDS()`
#
# One netCDF file holds the draws, the data and the model settings; `sf.load_fit`
# rebuilds a working fit without refitting.

# %%
from pathlib import Path  # noqa: E402

out = Path("output") / "02_from_brms"
out.mkdir(parents=True, exist_ok=True)
path = fit.save(out / "fit.nc", overwrite=True)
again = sf.load_fit(path)
print(again.model.settings["formula"], "|", again.model.settings["dispersion"])

# %% [markdown]
# ## What brms does that screenformula does not (yet)
#
# - `hypothesis()` has no point-hypothesis Bayes factor (`Evid.Ratio` of `=`: it needs
#   prior draws, which a fit does not keep); `conditional_effects()` shows the levels a
#   sample-sheet variable takes, not a grid over a continuous covariate.
# - Only the negative binomial and Poisson families; no zero-inflation, no
#   `cens()`/`trunc()`/`weights()` response terms, no `(1 | p | g)` cross-formula
#   correlations. brms terms such as `s()`, `t2()`, `gp()`, `mo()`, `me()` and `mi()`
#   are refused by name ("s(x) is not supported by screenformula").
# - Formulas describe *samples*: population terms use sample-sheet columns and the
#   group factors are genes, guides, gene groups or sheet columns. Guide-level
#   covariates (e.g. a predicted guide efficiency) have no place in the formula yet.
#
# What screenformula adds for screens: the guide x sample layout that scales to
# genome-wide libraries, the pool likelihood (tutorial 03), gene and gene-group
# contrasts with Bayesian FDR, and MAGeCK-format output.
