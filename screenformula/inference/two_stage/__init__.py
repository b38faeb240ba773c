"""Two-stage genome-scale inference.

Global parameters by NUTS on a subsample of genes, then every gene's block given K draws of them
(Laplace, Pareto-smoothed importance
sampling, per-gene HMC where the Laplace proposal is poor). Entry point:
`screenformula.inference.two_stage.engine.fit_two_stage` (orchestration); `config` holds its
settings, `stage1` the global parameters, `chunk` the pure per-chunk stage 2.
"""
