"""Column roles and dimension names, kept in one place (as scvi-tools does)."""

import math

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


def rhat_for_ess(ess_per_chain: float) -> float:
    """The split R-hat that converged chains of ``ess_per_chain`` effective draws each show.

    R-hat compares the variance between split halves of the chains with that within them.
    For converged chains each half's mean varies with the posterior variance over the
    half's ESS, so R-hat^2 is about ``1 + 2 * chains / ESS - 2 * chains / draws``
    (``2 * chains`` halves, ESS and draws over all chains; cf. Vats & Knudson 2021,
    "Revisiting the Gelman-Rubin diagnostic"): for chains whose ESS is well below their
    length, ``sqrt(1 + 2 / ess_per_chain)`` whatever the number of chains. At Stan's 100
    per chain that is 1.00995, its threshold of 1.01 (Vehtari et al. 2021); at 50 per
    chain, 1.0198. One variable of such chains passes 1.01 in about a third of runs
    (`tests/inference/test_stage1_early_stop.py`): asked 1.01 with 50 per chain on a dozen
    globals, genome-wide HAP1's stage 1 stopped when every R-hat happened to fall below
    its expected value, after 1,000 to 3,500 draws (fit seeds 1-4; R-hats 1.006-1.010).
    """
    return math.sqrt(1.0 + 2.0 / float(ess_per_chain))
