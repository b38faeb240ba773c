"""`TwoStageConfig`: every setting of a two-stage fit, with the measurements behind it."""

from __future__ import annotations

from dataclasses import dataclass

from screenformula._constants import STAGE1_ESS_PER_CHAIN, rhat_for_ess

#: Stage 1's subsample: genes per gene-level effect, and the fewest (`stage1_gene_count`).
STAGE1_GENES_PER_EFFECT = 150
STAGE1_MIN_GENES = 300


@dataclass(frozen=True)
class TwoStageConfig:
    """Settings of a two-stage fit (defaults chosen by measurement, see below).

    Stage 1's size and length and K were chosen on HAP1 (`benchmarks/bench_stage1.py`:
    stage 1 alone, genome-wide; `benchmarks/bench_two_stage.py --hap1-reference`: against
    full NUTS). Fewer genes with longer chains mix better per second (the guide-level sds
    and correlation, whose draws mix slowest, are less sharply peaked on a smaller
    subsample): 1,000 genes x 500 draws gave R-hat 1.15 / ESS 10; 300 genes x 2,000
    draws 1.009 / 164 in 53-75 s (by the hour), x 6,000 draws 1.007 / 450 in 76 s. So
    stage 1 runs until its globals pass bulk and tail ESS of 50 per chain and the R-hat
    converged chains show at that ESS, 1.0198 (looked at every 500 draws), up to 10,000
    draws: genome-wide HAP1 stops after 1,000-2,000 draws (four fit seeds; 1,000-3,500
    when it asked R-hat <= 1.01 at the same ESS, 3,500-4,000 at Stan's 100 per chain and
    1.01, 7,000-8,000 at 400, with the same agreement with full NUTS), a screen that
    mixes faster sooner.
    K matters more than stage 1's size for stage 2's accuracy: each kept global draw
    fixes the guide-level sd that sets every gene's LFC sd, so with K = 4 the gene sds
    moved by 3 % between stage-1 runs; K = 8 reached 97.2 %, 96.8 % and (with stage 1
    stopping once converged, at 9,000 draws) 97.0 % hit agreement with full NUTS in three
    runs (K = 4: 95.9-96.9 %, K = 16: 97.5 %, at twice K = 8's Newton time).

    Attributes
    ----------
    stage1_genes : int or None
        Genes in the stage-1 subsample (all genes with a control guide are added on top
        of the abundance-stratified draw when they exceed it). None (the default):
        ``STAGE1_GENES_PER_EFFECT`` per gene-level effect, at least 300
        (`stage1_gene_count`): 300 for a baseline and one slope, as chosen on HAP1
        above. More effects mean a larger gene-level covariance to estimate (21 sds and
        correlations for JACKS's five lines in one model against 3), and the subsample
        is where it is learnt: on those lines (1,579 genes, 6 effects) 300 genes put the
        lines' correlations at 0.55-0.81 where full NUTS on every gene put them at
        0.68-0.83, and called 20 / 7 / 16 / 24 / 24 essential genes (MOLM, MV411, HL60,
        OCIAML2, OCIAML3) against NUTS's 21 / 12 / 21 / 25 / 26; 800 genes called
        22 / 14 / 20 / 25 / 26.
    stage1_draws, stage1_tune, stage1_chains : int
        NUTS settings of stage 1; ``stage1_draws`` is the most draws per chain. 500
        tuning draws (Stan's 1,000 before 2026-12-04; nutpie's own default is 300):
        genome-wide HAP1 still stopped at 4,000 draws (ESS 254 against 286, R-hat 1.009
        against 1.008) and stage 1 took 128 s where it took 171-178 s that day; on 300
        HAP1 genes x 4,000 draws alone, 110 s against 123 s, ESS 278 against 303.
    stage1_check_every : int
        Stage 1 stops at the first multiple of this many draws at which its global
        variables pass the convergence check (R-hat at most ``stage1_rhat_target``, bulk
        and tail ESS at least ``stage1_ess_per_chain`` times its chains), keeping exactly
        the draws checked:
        deterministic given the seed and nutpie's compiled functions (the same seed gave
        other draws after a cold compile than from PyTensor's warm cache, see
        `stage1.run_stage1`). 0: always ``stage1_draws``. A simulated
        20,000-gene screen with a pool had ESS 1,700 after 7,000 draws (305 s of stage 1,
        more than half the fit).
    stage1_min_draws : int
        The fewest draws per chain stage 1 keeps (its first check is at the first
        multiple of ``stage1_check_every`` from there). 1,000, Stan's default length: on
        the simulated 2,000-gene seed 1 stage 1 passed its check at 500 draws (R-hat
        1.015, ESS 109) and gave 96.8 % hit agreement with full NUTS, against 97.2 % from
        the 1,000 draws it ran when it asked R-hat 1.01.
    stage1_rhat_max : float or None
        The R-hat that check asks; None: the R-hat a converged sampler shows at the ESS
        asked, ``sqrt(1 + 2 / stage1_ess_per_chain)`` (`rhat_for_ess`): 1.0198 at 50 per
        chain, and Stan's 1.01 at its 100 per chain.
    stage1_ess_per_chain : float
        The ESS per stage-1 chain that check asks, and that ``fit.diagnostics()`` asks of
        a two-stage fit: 50 per chain, half Stan's rule for final results (100 per chain),
        because stage 1's draws are not the result: stage 2 conditions on K = 8 of them,
        spread over the chains. On the HAP1 reference genes the stage-1 length did not move
        the two-stage fit's hit agreement with full NUTS (97.2 % after 2,000 draws, 96.8 %
        and 97.0 % after 7,000 and 9,000 at K = 8). Measured against 100 per chain
        (2026-12-05, `benchmarks/results/two_stage_settings/README.md`): genome-wide HAP1
        stopped at 2,500 draws instead of 3,500 (R-hat 1.007, stage 1 46.8 s against
        56.5 s; the same AUC and calls); the HAP1 reference genes' fit seed 1 at 2,500
        instead of 7,000 (96.7 % against 96.5 % hit agreement); fit seed 2 and simulated
        seed 2 stopped where they did (R-hat, not ESS, decided: 5,000 and 1,000 draws).
    n_global_draws : int
        K, the stage-1 draws carried into stage 2.
    proposal_factor : float
        Importance proposals per kept draw (per gene and global draw).
    proposal_df : float
        Degrees of freedom of the Student-t proposal (``inf``: the Laplace Gaussian).
    proposal_scale : float
        Scale of the proposal relative to the Laplace covariance's square root.
    proposal_qmc : bool
        Draw each gene's proposals from randomised quasi-Monte Carlo points (one scrambled
        Sobol set per global draw, shifted per coordinate: `laplace.ProposalPoints`; the
        Student-t radius stays independent) instead of independently. The effective
        sample size is the same (about 36 of 125 on the HAP1 reference genes), but each
        gene's proposals cover the proposal more evenly, so its tail probabilities vary
        less. Hit agreement with full NUTS, the same stage 1 each time
        (`benchmarks/results/two_stage_settings/README.md`): simulated 2,000 genes 97.8
        against 96.8 %; HAP1 reference genes 97.2-97.6 against 96.5-97.3 % (three
        stage-2 seeds), 96.2-96.4 against 95.9-96.5 % (another fit seed), and on a third
        stage 1 96.5-97.4 against 97.1-97.2 % (two): +0.4 points on average. Genome-wide
        HAP1 it costs about 5 CPU s (the inverse normal CDF), 2-3 s of wall time.
    khat_threshold : float
        Genes with a pooled Pareto k-hat above it are refitted by HMC.
    hmc_warmup, hmc_warmup_next : int
        HMC warm-up iterations for the first global draw, and for each later one (step
        sizes are carried over).
    chunk_genes : int
        Most genes in one stage-2 chunk.
    workers : int or None
        Processes running stage 2's chunks; None: one per core when the screen has at
        least ``parallel_min_genes`` genes, else in this process (0 or 1: in this process).
    parallel_min_genes : int
        From this many genes stage 2 has at least two chunks. The chunks depend on the
        genes and these settings only, never on the workers, so a seed gives the same
        fit on any executor.
    proposal_batch : int
        Importance proposals drawn at a time (bounds the memory of their guide coordinates).
    newton_max_iter : int
    target_accept : float
        Stage 1's NUTS target acceptance. 0.9: on genome-wide HAP1 stage 1 diverged once in
        6,000 draws at 0.8 (fit seed 1 of seeds 1-4), and never at 0.9; one divergence
        makes a fit's hits provisional.
    """

    stage1_genes: int | None = None
    stage1_draws: int = 10000
    stage1_tune: int = 500
    stage1_chains: int = 2
    stage1_check_every: int = 500
    stage1_ess_per_chain: float = STAGE1_ESS_PER_CHAIN
    stage1_rhat_max: float | None = None
    stage1_min_draws: int = 1000
    n_global_draws: int = 8
    proposal_factor: float = 1.0
    proposal_df: float = 7.0
    proposal_scale: float = 1.1
    proposal_qmc: bool = True
    khat_threshold: float = 0.7
    hmc_warmup: int = 150
    hmc_warmup_next: int = 40
    chunk_genes: int = 10000
    workers: int | None = None
    parallel_min_genes: int = 3000
    proposal_batch: int = 20
    newton_max_iter: int = 50
    target_accept: float = 0.9

    def stage1_gene_count(self, effects_per_gene: int = 2) -> int:
        """Stage 1's subsample size for a model with ``effects_per_gene`` gene-level effects."""
        if self.stage1_genes is not None:
            return int(self.stage1_genes)
        return max(STAGE1_MIN_GENES, STAGE1_GENES_PER_EFFECT * max(effects_per_gene, 1))

    @property
    def stage1_rhat_target(self) -> float:
        """The R-hat stage 1's check asks (``stage1_rhat_max``, or `rhat_for_ess`)."""
        if self.stage1_rhat_max is not None:
            return float(self.stage1_rhat_max)
        return rhat_for_ess(self.stage1_ess_per_chain)
