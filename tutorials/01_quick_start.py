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
# # Quick start: from a count table to a gene list
#
# This tutorial fits screenformula's default model to a real, public CRISPR knockout
# screen and reads the result as a biologist would: which genes drop out, how sure we
# are, what the figures look like, and the same files MAGeCK would have written.
#
# **The screen.** MAGeCK's own demo data (bundled with screenformula; BSD-3, Wei Li):
# 999 sgRNAs targeting 100 genes (about 10 guides per gene) in two leukaemia cell
# lines, HL60 and KBM7, each sequenced at an *initial* and a *final* time point. Guides
# whose gene the cells need to grow become rarer between the two time points, so
# essential genes show a negative log-fold-change (LFC), *final vs initial*.
#
# **The model.** Every guide count is negative binomial (counts of sequencing reads are
# overdispersed: replicates vary more than Poisson noise). Its log mean is the sample's
# sequencing depth plus
#
# ```
# count ~ 1 + condition + (1 + condition | gene) + (1 + condition | gene:sgrna)
# ```
#
# in the formula language of R's brms and lme4: every gene gets its own baseline and its
# own *final vs initial* effect (`(1 + condition | gene)`), and every guide deviates a
# little from its gene (`(1 + condition | gene:sgrna)`). Genes borrow strength from each
# other through these hierarchical terms, which is what makes 2 replicates usable.
# `screenformula test` and `make demo` write the gene term as
# `(1 + condition | gr(gene, dist = "student_slopes"))`: Student-t gene slopes with 3
# degrees of freedom, whose heavy tails leave strong essentials unshrunk where a normal
# prior, fitted to thousands of unaffected genes, pulls them toward zero (chosen on the
# panel of real screens, `benchmarks/results/panel.md`). `screenformula test` also lets
# each guide work or fail (`--guide-states auto`: at most a minority of a gene's guides
# failing, so the gene's effect is what most of its guides show; in Python
# `ScreenModel(..., guide_states="majority")`, fitted by the two-stage engine). This
# notebook keeps every guide working, the Python default.
# [`docs/MODEL.md`](../docs/MODEL.md) is the full specification.

# %% [markdown]
# ## The whole analysis
#
# These are the lines you would type (the cell above only sets up the notebook's figure
# display and quiets a PyTensor speed warning). The setting that differs from a real
# analysis is marked: this notebook runs in the project's continuous integration, so it draws only
# 150 posterior samples per chain, from 2 chains. For results you report, use the
# defaults (`draws=1000, tune=1000, chains=4`) and check convergence (tutorial 05).

# %%
# %matplotlib inline
import warnings

# PyTensor's C backend warns when it finds no BLAS library; it only affects the speed of
# some operations (sampling runs in nutpie's compiled code), not the results.
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")

# %%
import screenformula as sf
from screenformula import datasets, plotting

data = datasets.load_mageck_leukemia("sample", initial_as_pool=False, size_factors="control")
model = sf.ScreenModel(
    "count ~ 1 + condition + (1 + condition | gene) + (1 + condition | gene:sgrna)", data
)
fit = model.fit(draws=150, tune=150, chains=2, random_seed=1, progress=False)  # CI-sized
result = fit.contrast("condition", delta=0.5)
result.genes.sort_values("rank").head(10)

# %% [markdown]
# That was the analysis; the rest of this notebook explains each step and each column.
#
# ## 1. The data
#
# `load_mageck_leukemia` returns a `ScreenData`: the guide x sample count matrix, the
# gene of every guide and a sample sheet. Printing it shows each sample's condition,
# sequencing depth and **size factor**.
#
# Two choices in that call deserve a word:
#
# - `initial_as_pool=False`: the initial samples are an ordinary condition, the
#   reference level of `condition`, as MAGeCK compares them (`-t *.final -c *.initial`).
#   screenformula can also treat a plasmid / T0 sample as a separate *pool* measurement
#   of each guide's starting abundance; that needs other samples as the reference
#   condition, and tutorial 03 explains when it helps.
# - `size_factors="control"`: depths are normalised on the 10 guides of AHNAK, which
#   MAGeCK's demo uses as negative controls (a gene whose loss should not change growth).
#   The default, `"median"` (median of ratios, as DESeq2 and MAGeCK), assumes most
#   guides do not change; with a library of only 100 genes, many of them essential,
#   control guides are the safer anchor.

# %%
data

# %% [markdown]
# The final samples were sequenced 2.5 times deeper than the initial ones; the size
# factors take that out, so the model compares abundances, not raw reads.
#
# ## 2. The model
#
# Printing the model shows exactly what will be fitted: the likelihood, the dispersion
# (the default `"trend"`: each guide's dispersion follows a trend in its starting
# abundance, one trend per condition), the replicate scales (the default
# `replicate_scale="condition"`: each replicate of a condition gets its own factor on the
# treatment effects, as replicates differ in how far selection went; the effect reported
# is the replicates' geometric mean's), the group terms and **every prior**
# with where it came from (brms users: this is `prior_summary()`). Nothing is hidden.

# %%
model

# %% [markdown]
# ## 3. Fitting
#
# `model.fit()` runs the No-U-Turn sampler (through nutpie) and returns a `ScreenFit`
# holding the posterior draws. With 150 draws the Monte Carlo error is visible in the
# last digits of the probabilities below; a real analysis uses more.

# %%
fit

# %% [markdown]
# ## 4. The gene table
#
# `fit.contrast("condition")` compares every level of `condition` with its reference
# level, here *final vs initial*. Each gene gets one row:
#
# | column | meaning |
# | --- | --- |
# | `lfc` | posterior mean log2 fold-change (final vs initial) |
# | `lfc_sd`, `hdi_low`, `hdi_high` | posterior sd and 94% highest-density interval (log2) |
# | `prob_down`, `prob_up` | P(LFC < 0), P(LFC > 0) |
# | `lfsr` | local false sign rate: the probability that the sign of `lfc` is wrong |
# | `pep` | P(\|LFC\| <= delta): the probability that the gene has no effect that matters |
# | `qvalue` | Bayesian FDR of the list of genes ranked at least this well |
# | `hit` | the gene's own error (`error_down` / `error_up`: the chance that it is not changed beyond delta in its direction) is at most 0.05, so the list's FDR is at most 0.05 too; `call_rule="qvalue"` calls by `qvalue <= 0.05` instead |
#
# **Why `delta=0.5`?** With `delta = 0` a "hit" only means *the sign of the effect is
# known*, and with a smooth prior almost every gene has some tiny effect. `delta = 0.5`
# asks for a fold-change of at least 2^0.5 = 1.41 in either direction, which is what a
# biologist usually means by a hit (the README reports how well calibrated this is).
#
# On this screen **no gene clears 5% FDR at delta = 0.5**: the strongest dropouts are
# estimated at about -0.6 log2 with intervals reaching -0.3, so each still has a 20-70%
# chance (`pep`) of a change smaller than 1.41-fold. That is an honest answer for two
# "replicates" that are in fact two different cell lines. The sign, on the other hand,
# is certain for the top genes (`lfsr` = 0). Sort by `rank` (evidence) when you look for
# candidates, and read `pep` and the interval rather than the hit flag alone.

# %%
genes = result.genes.sort_values("rank")
genes[["gene", "lfc", "hdi_low", "hdi_high", "prob_down", "lfsr", "pep", "qvalue", "hit"]].head(15)

# %% [markdown]
# `result.hits(direction="down")` lists the genes called at the FDR target with a
# negative LFC, and printing the result gives a count per contrast (down + up = hits).
# Asking only for the sign (`delta=0`; the default of `fit.contrast` is 0.5) gives a
# very different picture: almost
# every gene is "down". Not because they are all essential: relative to the AHNAK
# control guides that set the size factors, the typical guide of this library fell by
# about 0.25 log2 between the two time points, and with 10 guides per gene that small
# shift has a sign the model is sure of. "Is the sign known?" and "is the change larger
# than 1.41-fold?" are different questions, and the second is the one to ask here.

# %%
print(result)
sign_only = fit.contrast("condition", delta=0)  # is the sign of the LFC known?
print(sign_only)
sign_only.hits(direction="down")[["gene", "lfc", "lfsr", "qvalue"]].head(10)

# %% [markdown]
# Every guide has its own row too (`result.sgrnas`): its LFC, and its **efficiency**,
# the share of the gene effect that guide shows (1: it does what its gene does; near 0:
# a guide that did not cut). Efficiencies are only given for genes whose sign is known.

# %%
top_gene = genes["gene"].iloc[0]
result.sgrnas.query("gene == @top_gene")[["sgrna", "lfc", "hdi_low", "hdi_high", "efficiency"]]

# %% [markdown]
# ## 5. Figures
#
# The plotting functions take the result *tables*, not the model, so they work as well
# on a filtered table or one read back from disk. The volcano plot puts effect size
# against evidence (`-log10 lfsr`; probabilities of exactly 0 are drawn at the
# resolution of the draws, 1 / (number of draws + 1)).

# %%
plotting.volcano_plot(result.genes)

# %% [markdown]
# The rank plot orders genes by LFC and draws each gene's 94% interval: the genes at
# the left whose intervals stay clear of zero are the confident dropouts.

# %%
plotting.rank_plot(result.genes, highlight=list(genes["gene"].head(5)))

# %% [markdown]
# One gene in detail: its guides' normalised counts per sample (left) and each guide's
# LFC against the gene's (right). Guides that agree make a convincing gene.

# %%
plotting.gene_panel(result.guide_counts(top_gene), result.sgrnas, genes.iloc[[0]])

# %% [markdown]
# ## 6. MAGeCK-format files
#
# `to_mageck` writes `gene_summary.txt` and `sgrna_summary.txt` with MAGeCK's columns in
# MAGeCK's order (then screenformula's own), so downstream tools that read MAGeCK output
# keep working. The values are Bayesian: `neg|p-value` is P(LFC >= 0), `neg|fdr` a
# Bayesian q-value, and so on (the README lists every column). Existing files are never
# overwritten unless you pass `overwrite=True`.

# %%
from pathlib import Path  # noqa: E402

out = Path("output") / "01_quick_start"
out.mkdir(parents=True, exist_ok=True)
written = result.to_mageck(out / "leukemia", overwrite=True)
[p.name for p in written]

# %%
import pandas as pd  # noqa: E402

pd.read_csv(written[0], sep="\t").sort_values("neg|rank").head(5)

# %% [markdown]
# ## Side by side with MAGeCK
#
# MAGeCK's own output on these counts ships with screenformula. The two methods rank
# genes on different evidence (MAGeCK: a rank aggregation of guide p-values;
# screenformula: the posterior of the gene LFC), yet the strongest dropouts should
# largely agree. Their LFCs do not: MAGeCK reports the median guide LFC of each gene as
# it is (about -1.1 log2 for its top genes), screenformula the posterior mean of a
# hierarchical model, which pulls noisy genes towards the screen-wide mean (about -0.6
# for the same genes). Shrinkage is the price of honest intervals from two samples per
# condition; the ranking is what to compare.

# %%
mageck = datasets.mageck_reference_output("gene")
ours = pd.read_csv(written[0], sep="\t")
top_ours = set(ours.nsmallest(10, "neg|rank")["id"])
top_mageck = set(mageck.nsmallest(10, "neg|rank")["id"])
print(f"top-10 depleted genes in common: {len(top_ours & top_mageck)} of 10")
print("shared:", sorted(top_ours & top_mageck))
columns = ["id", "neg|rank", "neg|lfc"]
side = ours[columns].merge(mageck[columns], on="id", suffixes=("", " (MAGeCK)"))
side.set_index("id").sort_values("neg|rank").head(8)

# %% [markdown]
# ## Where next
#
# - **02_from_brms**: the same ideas in brms vocabulary, and what each brms function is
#   called here.
# - **03_pool_component**: plasmid / T0 samples and the three ways to use them.
# - **04_treatments_and_groups**: several treatments, treatment-vs-treatment contrasts
#   and gene groups.
# - **05_checking_the_model**: is the fit trustworthy, and does the model describe the
#   counts?
#
# To save the fit and reload it later without refitting: `fit.save("fit.nc")` and
# `sf.load_fit("fit.nc")`. From the shell, `screenformula test` is a drop-in for
# `mageck test` that runs this whole notebook in one command.
