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
# # The pool component: plasmid and T0 samples
#
# Most screens also sequence the **pool**: the plasmid library itself, or the cells at
# day 0 before any selection. This tutorial explains what that sample tells the model,
# the ways screenformula can use it, what the word "instrumental variable" (used for this
# in the question that started the project) does and does not mean here, and then
# measures, on a simulated screen whose true effects we know, how much each choice moves
# the gene log-fold-changes (LFCs) and their intervals.

# %%
# %matplotlib inline
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import screenformula as sf

# PyTensor's C backend warns when it finds no BLAS library; it only affects the speed of
# some operations (sampling runs in nutpie's compiled code), not the results.
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")

# %% [markdown]
# ## Why the pool sample matters
#
# A guide's count in a screen sample mixes two things: how abundant the guide was to
# begin with (the library is never perfectly even: some guides are cloned or packaged
# 10x more often than others) and what happened to the cells carrying it. The model
# separates them with a guide **baseline** `a_s` (the `1` in `(1 + treatment |
# gene:sgrna)`) and the treatment effects. The control samples alone identify the
# baseline; the pool is a second, independent measurement of it:
#
# - it is **not affected by the treatment** (it was sequenced before any selection), so
#   it cannot absorb or fake a treatment effect;
# - it is usually **deep and clean** (plasmid counts are less noisy than cell counts);
# - it matters most when the controls are few or noisy, and for guides that are rare at
#   the start, whose LFCs rest on a handful of reads.
#
# ## The modes
#
# `ScreenModel(..., pool=...)` (docs/MODEL.md, "The pool"):
#
# | `pool=` | what enters the model | cost | caveat |
# | --- | --- | --- | --- |
# | `None` | nothing: the pool samples, if any, are ordinary samples of the formula | - | drop them from the data to ignore the pool |
# | `"offset"` | `log((P[s] + 0.5) / L_pool)` as a fixed offset in every screen sample | cheap | treats the pool counts as exact (MAGeCK-style T0 normalisation) |
# | `"covariate"` | the centred log pool abundance as a covariate with a fitted coefficient `b_pool` | cheap | learns how much to trust it, but still ignores its noise guide by guide |
# | `"joint"` | a second likelihood `P[s,p] ~ NB(L_p exp(pool_Intercept + a_s), phi_pool)` that shares the guide baseline `a_s` with the screen | one more likelihood | the default when the sheet marks a pool sample and the formula has a guide-level intercept |
#
# `joint` is errors-in-variables: the pool is a *noisy measurement* of the same latent
# abundance the screen samples see. Because the guide-level effects `(a_s, b_s)` are
# multivariate normal with an LKJ correlation, the model also estimates whether guides
# that start rare respond differently to the treatment (`fit.guide_correlation()`).
#
# ## "Instrumental variable": what it would and would not mean
#
# The question that started this project called the pool an instrumental variable. In
# the textbook sense an *instrument* `Z` moves the exposure `X` and reaches the outcome
# `Y` only through `X` (the exclusion restriction), which lets one estimate the effect
# of `X` on `Y` despite unmeasured confounding. The pool is not that:
#
# - the exposure here is the treatment, and it is **assigned by the experimenter**;
#   there is no confounding of the treatment to undo, and the pool does not move it;
# - the pool **does** reach the outcome directly: a guide that is abundant in the
#   plasmid is abundant in every sample. That is exactly why it is useful.
#
# What the pool shares with an instrument is one assumption, **the treatment does not
# affect the pool** (it was measured before). screenformula uses it as a *measurement*
# of each guide's starting abundance, jointly modelled (`joint`) or plugged in
# (`offset`, `covariate`). The "unmeasured underlying effect" of the original question
# (something about a guide that makes it both rare at the start and respond differently)
# is handled like a *control function*: the pool equation's latent baseline enters the
# screen equation, and its correlation with the treatment deviations is estimated, not
# assumed to be zero.

# %% [markdown]
# ## A simulated screen with known truth
#
# `sf.simulate_screen` draws counts from this very model and returns the truth behind
# them. We make a small screen where the pool should matter: 60 genes x 4 guides, **one**
# control sample, two treated samples and one plasmid sample (deeper and less noisy,
# `phi_pool=50` against a typical `phi=20` in the screen). 10% of the genes are hits
# with true |LFC| between 0.5 and 2.5 (natural log); all other genes have LFC exactly 0.

# %%
data, truth = sf.simulate_screen(
    n_genes=60,
    n_sgrnas_per_gene=4,
    n_replicates=2,
    n_control_replicates=1,
    n_pool_samples=1,
    mean_count=150,
    phi_pool=50,
    random_seed=7,
)
data

# %% [markdown]
# The sample sheet has `treatment` (`control`, `treated`, and `pool` for the plasmid) and
# the boolean `pool` column that marks the plasmid row; `truth.genes` has every gene's
# true LFC.

# %%
true_lfc = truth.lfc_table(log2=True)["treated"].rename("true_lfc")
print(data.samples)
truth.hits[["gene", "treatment", "lfc_log2"]].head()

# %% [markdown]
# ## Four fits of the same formula
#
# Same formula, same seed, same (deliberately short, CI-sized) sampler settings; only
# the pool changes. For "no pool" we drop the plasmid sample from the data, so the model
# sees exactly what it would without it.

# %%
FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
SAMPLER = {"draws": 150, "tune": 150, "chains": 2, "random_seed": 1, "progress": False}

no_pool_data = data.subset(samples=list(data.screen_samples))
fits = {"no pool": sf.ScreenModel(FORMULA, no_pool_data, pool=None).fit(**SAMPLER)}
for mode in ["offset", "covariate", "joint"]:
    fits[mode] = sf.ScreenModel(FORMULA, data, pool=mode).fit(**SAMPLER)
{name: fit.options["wall_seconds"] for name, fit in fits.items()}

# %% [markdown]
# ## How much does each mode change the gene LFCs?
#
# For each fit: the error of the posterior mean LFC against the truth (RMSE, log2), the
# mean width of the 94% interval, and how often that interval covers the true LFC
# (94% is the target; with 60 genes and this few draws, expect a few points of noise).

# %%
tables = {}
rows = []
for name, fit in fits.items():
    genes = fit.contrast("treatment", ref="control").genes
    genes = genes[genes["contrast"] == "treated vs control"].set_index("gene")
    genes = genes.join(true_lfc)
    tables[name] = genes
    error = genes["lfc"] - genes["true_lfc"]
    covered = (genes["hdi_low"] <= genes["true_lfc"]) & (genes["true_lfc"] <= genes["hdi_high"])
    rows.append(
        {
            "pool": name,
            "rmse_lfc": float(np.sqrt(np.mean(error**2))),
            "rmse_hits": float(np.sqrt(np.mean(error[genes["true_lfc"] != 0] ** 2))),
            "mean_hdi_width": float((genes["hdi_high"] - genes["hdi_low"]).mean()),
            "coverage_94": float(covered.mean()),
        }
    )
summary = pd.DataFrame(rows).set_index("pool").round(3)
summary

# %% [markdown]
# Per gene, `fit.compare(other)` gives how much the LFC and its sd moved between two fits
# of the same screen. Here: what the joint pool changed relative to ignoring it.

# %%
moved = fits["joint"].compare(fits["no pool"])
moved[["gene", "lfc_fit", "lfc_other", "lfc_change", "sd_ratio"]].head(8)

# %%
print(
    f"median |LFC change| {moved['lfc_change'].abs().median():.3f} log2, "
    f"largest {moved['lfc_change'].abs().max():.3f}; "
    f"median sd ratio (joint / no pool) {moved['sd_ratio'].median():.2f}"
)

# %% [markdown]
# ### The same, as a picture
#
# Each panel: the posterior mean and 94% interval of every gene against its true LFC
# (the diagonal is perfect recovery). The right-most panel shows, per gene, how far each
# mode moved the LFC away from the no-pool fit.

# %%
fig, axes = plt.subplots(1, 5, figsize=(19, 4), sharey=False)
lims = [true_lfc.min() - 1, true_lfc.max() + 1]
for ax, (name, genes) in zip(axes[:4], tables.items(), strict=True):
    ax.errorbar(
        genes["true_lfc"],
        genes["lfc"],
        yerr=[genes["lfc"] - genes["hdi_low"], genes["hdi_high"] - genes["lfc"]],
        fmt="o",
        ms=3,
        lw=0.7,
        alpha=0.7,
    )
    ax.plot(lims, lims, color="black", lw=0.6)
    ax.set_title(f"pool = {name}")
    ax.set_xlabel("true LFC (log2)")
    ax.set_ylabel("estimated LFC (log2), 94% HDI")
base = tables["no pool"]["lfc"]
for name in ["offset", "covariate", "joint"]:
    change = (tables[name]["lfc"] - base).reindex(base.index)
    axes[4].scatter(base, change, s=10, label=name)
axes[4].axhline(0, color="black", lw=0.6)
axes[4].set_xlabel("LFC without the pool (log2)")
axes[4].set_ylabel("LFC change vs no pool (log2)")
axes[4].set_title("what the pool moved")
axes[4].legend(fontsize=8)
fig.suptitle("Gene LFCs (treated vs control) by pool mode, simulated screen with known truth")
fig.tight_layout()

# %% [markdown]
# ## Do guides that start rare respond differently?
#
# With `pool="joint"`, the guide baseline is what the pool measures, and the formula's
# `(1 + treatment | gene:sgrna)` estimates its correlation with each guide's treatment
# deviation. The simulation drew them with correlation -0.2; with 240 guides, a
# guide-level slope sd of only 0.15 and these few draws, the posterior is wide, which is
# itself the honest answer: this screen cannot pin it down.

# %%
print("true guide-level correlation:", truth.params["sgrna_correlation"][0, 1])
fits["joint"].guide_correlation()

# %% [markdown]
# ## What to take away
#
# - The pool never changes *which* contrast you estimate; it changes how well the guide
#   baselines are known, hence the noise in each LFC. Read the table above for the size
#   of the effect on this screen: with a single control sample the pool adds a second
#   look at every guide's starting abundance.
# - `offset` trusts the plasmid counts as exact, which is fine for deep plasmid
#   sequencing and wrong for a shallow T0 sample; `covariate` estimates how much to
#   trust them; `joint` models their noise guide by guide and is the default.
# - When the screen has **no** control samples (the plasmid is the only reference),
#   the pool cannot be set aside: keep it as an ordinary sample (`pool=None`) and make
#   it the reference level of the treatment factor, as tutorial 04 does.
# - Always compare: `fit_a.compare(fit_b)` per gene, and LOO (tutorial 05) for how well
#   each model predicts the screen counts.
