"""Column roles and dimension names, kept in one place (as scvi-tools does)."""

SGRNA = "sgrna"
GENE = "gene"
GROUP = "group"
SAMPLE = "sample"
COUNT = "count"
CONDITION = "condition"
REPLICATE = "replicate"
BATCH = "batch"
TIME = "time"
POOL = "pool"  # boolean sample-sheet column: True for plasmid / T0 / day-0 samples
SIZE_FACTOR = "size_factor"
TREATMENT = "treatment"

# Condition labels that mark a pool sample when the sheet has no `pool` column.
POOL_LABELS = frozenset({"pool", "plasmid", "t0", "day0", "day-0", "d0", "pdna", "dna", "initial"})

# Dimension names used in the PyMC model and the posterior.
DIM_SGRNA = SGRNA
DIM_GENE = GENE
DIM_GROUP = GROUP
DIM_SAMPLE = SAMPLE
DIM_POOL_SAMPLE = "pool_sample"

# The convergence check of a fit (fit.diagnostics(), the provisional verdict) and of the
# two-stage engine's stage 1, which stops once its draws pass it. Stan's rule for final
# results: bulk ESS above 100 times the number of chains (mc-stan.org/misc/warnings.html,
# Vehtari et al. 2021); ESS_MIN is that rule for the 4 chains a NUTS fit runs by default,
# and the two-stage engine's stage 1 (2 chains) asks STAGE1_ESS_PER_CHAIN times its
# chains: half that rule, as stage 2 keeps only 8 of its draws (two_stage/config.py).
RHAT_MAX = 1.01
ESS_PER_CHAIN = 100.0
ESS_MIN = 4 * ESS_PER_CHAIN
STAGE1_ESS_PER_CHAIN = 50.0
