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
# # Several treatments and gene groups
#
# A real multi-condition screen: five acute myeloid leukaemia (AML) cell lines (MOLM,
# MV411, HL60, OCIAML2, OCIAML3), two replicates each, all grown from one library whose
# plasmid was sequenced twice. This is the small example of JACKS (Allen et al.;
# github.com/felicityallen/JACKS, MIT licence): 8,080 guides of 1,579 genes (about 5 per
# gene). We ask:
#
# 1. which genes does each line depend on (each line against the plasmid)?
# 2. which genes differ *between* lines (treatment against treatment)?
# 3. which **gene group** is most enriched and most depleted in each line, and how sure
#    are we?
#
# The data are not bundled with screenformula; they are read from the project's shared
# data folder (`$SCREENFORMULA_DATA`, by default `../shared/data` beside the checkout),
# the same convention the tests use.

# %%
# %matplotlib inline
import os
import re
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import screenformula as sf
from screenformula import plotting

# PyTensor's C backend warns when it finds no BLAS library; it only affects the speed of
# some operations (sampling runs in nutpie's compiled code), not the results.
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")

REPO = Path(sf.__file__).resolve().parents[1]  # the checkout (editable install)
SHARED = Path(os.environ.get("SCREENFORMULA_DATA", REPO.parent / "shared" / "data"))
JACKS = SHARED / "jacks-aml-yusa-small"
GENESETS = SHARED / "reference-genesets" / "hart-bagel"
print((JACKS / "README.txt").read_text().splitlines()[0])

# %% [markdown]
# ## Reading the screen
#
# The count table is in MAGeCK's layout (guide, gene, one column per sample) and a
# second file maps each sequenced sample to its cell line. We turn that map into a
# sample sheet: `treatment` is the cell line, or `plasmid` for the two library samples.
# `plasmid` is recognised as a pool label, so it becomes the **reference level**: every
# line is compared with the library it was grown from, as JACKS does.
#
# Why not `pool="joint"` (tutorial 03)? The pool modes model the plasmid *beside* a
# reference condition among the screen samples (an untreated arm). This screen has
# none: the plasmid *is* the reference, so it stays an ordinary sample (`pool=None`).

# %%
replicates = pd.read_csv(JACKS / "example_repmap.tab", sep="\t")
sheet = pd.DataFrame(
    {
        "sample": replicates["Replicate"],
        "condition": ["plasmid" if s == "CTRL" else s for s in replicates["Sample"]],
    }
)
sheet["treatment"] = sheet["condition"]
full = sf.read_counts(JACKS / "example_count_data.tab", samples=sheet)
full

# %% [markdown]
# ## Gene groups
#
# The shared folder has reference gene *sets* (core-essential CEGv2 and non-essential
# NEGv1 genes, Hart et al.; MIT), but they are two lists, not a partition of genes into
# groups. For groups we use **HGNC gene families** recognised by their official symbol
# roots: `ANAPC1`, `ANAPC2`, ... are subunits of the anaphase-promoting complex,
# `ATP6V*` of the vacuolar ATPase, `ATP5*` of mitochondrial ATP synthase, and so on. The
# rule is transparent and reproducible, but it is a heuristic: symbol roots do not
# always mean shared function (the "BCL2 family" here mixes pro- and anti-apoptotic
# genes). With your own data, pass any gene -> group table (a pathway database, complex
# annotations) to `read_counts(..., gene_groups=...)`.
#
# The library only covers genes from A1BG to BRS3 (alphabetical), so the families are
# those of that range.

# %%
FAMILIES = {
    "anaphase-promoting complex": r"^ANAPC\d",
    "Arp2/3 complex": r"^ARPC\d",
    "ATP synthase (mito.)": r"^ATP5",
    "V-ATPase": r"^ATP6V",
    "N-glycosylation (ALG)": r"^ALG\d",
    "autophagy (ATG)": r"^ATG\d",
    "adaptor protein complexes": r"^AP[1-4][A-Z]\d",
    "BBSome (cilia)": r"^BBS\d",
    "APOBEC deaminases": r"^APOBEC",
    "aquaporins": r"^AQP\d",
    "ADAMTS proteases": r"^ADAMTS\d",
    "ARID (chromatin)": r"^ARID\d",
    "bromodomain (BRD)": r"^BRD\d",
    "BCL2 family": r"^BCL2",
}
genes = pd.Series(full.gene_names, index=full.gene_names)
family = {g: name for g in genes for name, rx in FAMILIES.items() if re.match(rx, g)}
essential = set(pd.read_csv(GENESETS / "CEGv2.txt", sep="\t")["GENE"])
nonessential = set(pd.read_csv(GENESETS / "NEGv1.txt", sep="\t")["GENE"])
pd.Series(family).value_counts().rename("genes in the library").to_frame()

# %% [markdown]
# ## A subset, for speed
#
# This notebook runs in CI, so we keep **every gene of those families plus every
# CEGv2 and NEGv1 gene in the library** (the latter to check the results against known
# biology) and drop the other ~1,300 genes. Size factors are computed on the *full*
# library first and carried over: many guides make a stabler normalisation.

# %%
keep = set(family) | ((essential | nonessential) & set(genes))
rows = np.isin(full.genes_of_sgrna, list(keep))
data = sf.ScreenData(
    full.counts[rows],
    full.sgrnas[rows],
    full.genes_of_sgrna[rows],
    full.samples,
    gene_groups=pd.Series(family),
    size_factors=full.size_factors.to_numpy(),
    source=full.source,
)
data

# %% [markdown]
# ## Look before modelling: how noisy is each condition?
#
# The model's noise is the negative binomial dispersion. Before choosing how it may
# vary, compare replicates: for each condition, the spread of the log ratio between its
# two samples (divided by sqrt(2): the noise of one sample, on the natural-log scale).

# %%
norm = np.log(full.counts / full.size_factors.to_numpy() + 0.5)
noise = {}
for level, block in full.samples.groupby("treatment", sort=False):
    cols = full.samples.index.get_indexer(block.index)
    ratio = norm[:, cols[0]] - norm[:, cols[1]]
    noise[level] = 1.4826 * np.median(np.abs(ratio - np.median(ratio))) / np.sqrt(2)
pd.Series(noise).round(3).rename("replicate noise (log sd)").to_frame()

# %% [markdown]
# The plasmid replicates agree closely (a log sd below 0.1, i.e. within about 8%);
# MOLM and MV411 replicates are about nine times noisier, the other lines in between. The per-guide `dispersion="sgrna"` gives each guide one
# dispersion shared by **all** samples, which cannot describe that: fitted here, it
# settles on a compromise, explains the clean lines' dropouts as noise and shrinks the
# gene effects towards zero (and its chains do not converge, which
# `fit.diagnostics()` reports). The default, `dispersion="trend"`, gives each condition
# with replicates its own dispersion trend; the brms way, shown here, is a
# **distributional formula** that lets the dispersion depend on the condition, exactly
# as brms's `shape ~ treatment` would:
#
# ```python
# dispersion="shape ~ 1 + treatment"
# ```
#
# ## The model
#
# ```
# count ~ 1 + treatment + (1 + treatment || gene) + (1 | gene:sgrna)
# ```
#
# - `treatment`: one coefficient per cell line, against the plasmid;
# - `(1 + treatment || gene)`: every gene its own baseline and its own effect in each
#   line. `||` makes them independent: with six effects per gene, the correlated
#   version (`|`, a 6 x 6 LKJ correlation) is the better model but costs more sampling
#   time than CI allows;
# - `(1 | gene:sgrna)`: every guide its own abundance. A real analysis would add guide
#   slopes (`(1 + treatment | gene:sgrna)`): guides differ in cutting efficiency, which
#   is JACKS's whole point.
#
# The full analysis, JACKS's design: correlated gene effects per line and **one
# efficacy per guide, shared by every line**, from a yes/no `treated` column of the
# sample sheet (`no` for the plasmid):
#
# ```python
# "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treated | gene:sgrna)"
# ```
#
# Fitted with `method="two-stage"` (228 s on 2 cores), it called 20, 6, 16, 24 and 21
# essential genes in MOLM, MV411, HL60, OCIAML2 and OCIAML3, and no non-essential one.
# Fitted one line at a time with the default model, the lines called 6, 0, 13, 25
# and 21, and MAGeCK called 11, 4, 17, 21 and 20. The noisy lines learn which of a
# gene's guides work from the clean ones (`benchmarks/results/panel.md`, `trend-sharedeff`).
# On the command line the same model is one `-t` per line, each named:
#
# ```sh
# screenformula test -k counts.tsv -c CTRL_1,CTRL_2 -t MOLM=MOLM_rep_1,MOLM_rep_2 \
#     -t MV411=MV411_rep_1,MV411_rep_2 -t HL60=HL60_rep_1,HL60_rep_2 \
#     -t OCIAML2=OCIAML2_rep_1,OCIAML2_rep_2 -t OCIAML3=OCIAML3_rep_1,OCIAML3_rep_2 \
#     -n out/lines --method two-stage
# ```
#
# which writes a MAGeCK pair of files per line (`out/lines.MOLM_vs_control.gene_summary.txt`
# ...); on these counts it ran in 16 minutes on 2 cores (stage 1 sees 150 genes per
# gene-level effect, 900 here for a baseline and five lines) and called 21, 11, 21, 25 and
# 26 essential genes, none non-essential (MAGeCK, each line alone: 11, 4, 17, 21, 20).
#
# Sampler settings are CI-sized; the diagnostics at the end say what that costs.

# %%
model = sf.ScreenModel(
    "count ~ 1 + treatment + (1 + treatment || gene) + (1 | gene:sgrna)",
    data,
    pool=None,
    dispersion="shape ~ 1 + treatment",
)
fit = model.fit(draws=100, tune=150, chains=2, random_seed=1, progress=False)
print(model)

# %% [markdown]
# ## 1. Each line against the plasmid
#
# `fit.contrast("treatment")` compares every level with the reference: five contrasts.
# `delta=0.5` asks for a change of at least 2^0.5 = 1.41-fold for a hit.

# %%
vs_plasmid = fit.contrast("treatment", delta=0.5)
print(vs_plasmid)

# %% [markdown]
# **Sanity check against known biology.** Core-essential genes (CEGv2) should drop out
# in every line and non-essential genes (NEGv1) should not move. They were not used to
# fit the model, so they are an independent check:

# %%
g = vs_plasmid.genes.copy()
g["reference set"] = np.where(
    g["gene"].isin(essential),
    "core essential (CEGv2)",
    np.where(g["gene"].isin(nonessential), "non-essential (NEGv1)", "other"),
)
checked = g[g["reference set"] != "other"]
checked.groupby(["contrast", "reference set"]).agg(
    genes=("gene", "size"), median_lfc=("lfc", "median"), hits=("hit", "sum")
).round(2)

# %%
contrasts = list(dict.fromkeys(g["contrast"]))
fig, ax = plt.subplots(figsize=(8, 4))
for i, label in enumerate(contrasts):
    for j, (name, color) in enumerate(
        [("core essential (CEGv2)", "C3"), ("non-essential (NEGv1)", "C0")]
    ):
        values = checked[(checked["contrast"] == label) & (checked["reference set"] == name)]
        x = i + (j - 0.5) * 0.35 + np.random.default_rng(i).uniform(-0.08, 0.08, len(values))
        ax.scatter(x, values["lfc"], s=10, color=color, label=name if i == 0 else None)
ax.axhline(0, color="black", lw=0.6)
ax.set_xticks(range(len(contrasts)), [c.replace(" vs plasmid", "") for c in contrasts])
ax.set_xlabel("cell line (each against the plasmid)")
ax.set_ylabel("gene LFC, log2 (posterior mean)")
ax.set_title("Known essential genes drop out in every line; non-essential genes do not")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 2. Treatment against treatment
#
# Which genes does one line need more than another? `fit.contrast(a=..., b=...)`
# compares two levels directly: each gene's `LFC[a] - LFC[b]`, with the same summaries.
# This is *not* the same as comparing two hit lists: a gene can be a hit in one line
# and miss the threshold in another while the two effects are statistically
# indistinguishable, and only the direct contrast says so.

# %%
molm_vs_ociaml2 = fit.contrast("treatment", a="MOLM", b="OCIAML2", delta=0.5)
print(molm_vs_ociaml2)
molm_vs_ociaml2.genes.sort_values("rank")[
    ["gene", "contrast", "lfc", "hdi_low", "hdi_high", "prob_down", "qvalue"]
].head(8)

# %% [markdown]
# The forest plot puts the top genes of that comparison side by side in both lines
# (each against the plasmid), to see which line drives the difference:

# %%
top = list(molm_vs_ociaml2.genes.sort_values("rank")["gene"].head(12))
plotting.forest_plot(vs_plasmid.genes, top, contrast=["MOLM vs plasmid", "OCIAML2 vs plasmid"])

# %% [markdown]
# ## 3. The most enriched and most depleted gene group per line
#
# Without a `group` term in the formula, a group's effect is the posterior of the
# **mean LFC of its genes** (docs/MODEL.md, "Contrasts"), computed draw by draw. From the
# same draws come `prob_top`, the posterior probability that the group has the
# *largest* effect of all groups in that contrast, and `prob_bottom`, the smallest: the
# question "which group is most enriched?" answered directly, uncertainty included.
# (Adding `(1 + treatment | group/gene/sgrna)` to the formula would instead estimate a
# group-level effect with its own partial pooling.)

# %%
groups = vs_plasmid.groups
best = []
for label, block in groups.groupby("contrast", sort=False):
    up = block.loc[block["prob_top"].idxmax()]
    down = block.loc[block["prob_bottom"].idxmax()]
    best.append(
        {
            "contrast": label,
            "most enriched group": up["group"],
            "P(most enriched)": up["prob_top"],
            "enriched: effect (log2)": up["effect"],
            "most depleted group": down["group"],
            "P(most depleted)": down["prob_bottom"],
            "depleted: effect (log2)": down["effect"],
        }
    )
pd.DataFrame(best).set_index("contrast").round(2)

# %% [markdown]
# Read the probabilities, not only the names: a "most enriched" group with
# P = 0.3 is one of several candidates, while P close to 1 is a clear winner. In a
# dropout screen of proliferation, the depleted side is where the biology is
# (essential complexes such as the V-ATPase or the anaphase-promoting complex); on the
# enriched side, groups of genes that are not expressed in blood cells (aquaporins,
# ADAMTS proteases) simply sit near zero, and which of them is "top" is close to a coin
# toss. The group plot shows effects and both probabilities for two lines:

# %%
plotting.group_plot(groups, contrast=["MOLM vs plasmid", "OCIAML2 vs plasmid"])

# %% [markdown]
# ## How far to trust this notebook's numbers
#
# 100 draws per chain are enough to show the workflow, not to publish: check the
# diagnostics, then rerun with the defaults (`draws=1000, tune=1000, chains=4`), the
# full library and guide slopes before drawing conclusions.

# %%
diag = fit.diagnostics(["Intercept", "b", "sd_gene", "alpha_b", "r_gene"], warn=False)
print("divergences:", diag.attrs["divergences"])
diag[["rhat_max", "ess_bulk_min", "ess_tail_min", "ok"]]
