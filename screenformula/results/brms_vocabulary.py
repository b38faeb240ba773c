"""brms's post-processing vocabulary as methods of `ScreenFit` (a mixin).

Each method is a thin call of the NumPy/xarray core that computes it from the posterior:
`screenformula.results.brms_summary` (``summary``, ``fixef``, ``ranef``, ``VarCorr``),
`screenformula.results.predictive` (``posterior_epred``, ``posterior_predict``,
``log_lik``, ``loo``, ``loo_compare``), `screenformula.results.hypothesis` and
`screenformula.results.conditional`; figures come from `screenformula.plotting.brms`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from screenformula.results import brms_summary, conditional, predictive
from screenformula.results import hypothesis as hypothesis_core

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from screenformula.results.fit import ScreenFit

__all__ = ["ARVIZ_HINT", "BrmsVocabulary"]

#: What ArviZ functions are told when given a `ScreenFit` instead of its posterior.
ARVIZ_HINT = (
    "a ScreenFit is not an ArviZ object: pass fit.idata (the posterior as an arviz "
    "DataTree), e.g. az.summary(fit.idata) or az.plot_trace(fit.idata); fit.summary() "
    "prints brms's summary"
)


class BrmsVocabulary:
    """The methods of brms on a fit: ``summary``, ``fixef``, ``ranef``, ``VarCorr``, ...."""

    def _fit(self) -> ScreenFit:
        return self  # type: ignore[return-value]

    # ------------------------------------------------------------ summaries
    def summary(self, prob: float = 0.95) -> brms_summary.BrmsSummary:
        """The ``summary`` of brms: effects with Rhat and ESS, printed in brms's layout.

        Population effects, group-level sds and correlations and the dispersion, each
        with Estimate, Est.Error, interval, Rhat, Bulk_ESS and Tail_ESS. ``.fixed``,
        ``.random`` (per grouping factor) and ``.spec_pars`` are the tables,
        ``.to_frame()`` all of them in one.
        """
        return brms_summary.summarize_fit(self._fit(), prob)

    def fixef(self, summary: bool = True, probs: Sequence[float] = (0.025, 0.975)) -> pd.DataFrame:
        """Population-level effects (brms's ``fixef``): Estimate, Est.Error, Q2.5, Q97.5.

        Coefficients are named as brms names them (``treatmentdrugA``); with
        ``summary=False`` the draws (draws x coefficients).
        """
        return brms_summary.fixef(self._fit(), summary=summary, probs=probs)

    def ranef(
        self,
        groups: Sequence[str] | None = None,
        summary: bool = True,
        probs: Sequence[float] = (0.025, 0.975),
    ) -> dict[str, Any]:
        """Group-level deviations per level (brms's ``ranef``), by grouping factor.

        ``fit.ranef()["gene"]["treatmentdrugA"]`` gives each gene's deviation from the
        population effect (Estimate, Est.Error, Q2.5, Q97.5): brms's
        ``ranef(fit)$gene[, , "treatmentdrugA"]``. See `brms_summary.ranef`.
        """
        return brms_summary.ranef(self._fit(), groups=groups, summary=summary, probs=probs)

    def VarCorr(  # noqa: N802 - brms's name
        self, probs: Sequence[float] = (0.025, 0.975)
    ) -> dict[str, dict[str, pd.DataFrame]]:
        """Sds and correlations of the group-level effects (brms's ``VarCorr``)."""
        return brms_summary.VarCorr(self._fit(), probs=probs)

    # ---------------------------------------------------------- predictions
    def posterior_epred(
        self, ndraws: int | None = None, draw_ids: Sequence[int] | None = None
    ) -> xr.DataArray:
        """Draws of every screen count's expected value ``mu`` (brms's ``posterior_epred``).

        A (draw, sgrna, sample) DataArray; by default every draw, or fewer for a big
        screen (at most `predictive.MAX_CELLS` values); ``ndraws`` / ``draw_ids`` as brms.
        """
        return predictive.posterior_epred(self._fit(), ndraws, draw_ids)

    def posterior_predict(
        self,
        ndraws: int | None = None,
        draw_ids: Sequence[int] | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> xr.DataArray:
        """Replicated counts drawn from the fitted model (brms's ``posterior_predict``)."""
        return predictive.posterior_predict(self._fit(), ndraws, draw_ids, seed)

    def log_lik(self, draw_ids: Sequence[int] | None = None) -> xr.Dataset:
        """Pointwise log-likelihood of the counts (brms's ``log_lik``), from the posterior."""
        return predictive.log_likelihood(self._fit(), draw_ids)

    def pp_check(
        self,
        ndraws: int = 10,
        seed: int | np.random.Generator | None = None,
        path: str | os.PathLike | None = None,
    ) -> Figure:
        """Posterior predictive check (brms's ``pp_check``): a figure.

        The distribution of the observed counts over that of ``ndraws`` data sets
        replicated from the posterior, on the log10(count + 1) scale.
        """
        from screenformula.plotting.brms import pp_check_plot

        fit = self._fit()
        ndraws = min(int(ndraws), predictive.n_total_draws(fit))
        yrep = predictive.posterior_predict(fit, ndraws=ndraws, seed=seed)
        return pp_check_plot(fit.model.spec.counts, yrep.values, path=path)

    # ----------------------------------------------------------------- LOO
    def loo(self, var_name: str = "count", pointwise: bool = False) -> Any:
        """PSIS-LOO of the screen counts (brms's ``loo``), via ``arviz.loo``.

        The stored log-likelihood is used, or computed from the posterior when the fit
        kept none. See `predictive.loo`.
        """
        return predictive.loo(self._fit(), var_name, pointwise)

    def loo_compare(
        self, *others: ScreenFit, names: Sequence[str] | None = None, var_name: str = "count"
    ) -> pd.DataFrame:
        """Compare this fit with ``others`` by PSIS-LOO (brms's ``loo_compare``).

        Arviz's ``compare`` table, best first, with brms's ``elpd_diff`` / ``se_diff``.
        """
        fits = [self._fit(), *others]
        labels = list(names) if names is not None else [f"fit{i + 1}" for i in range(len(fits))]
        if len(labels) != len(fits):
            raise ValueError(f"names has {len(labels)} entries for {len(fits)} fits")
        return predictive.loo_compare(dict(zip(labels, fits, strict=True)), var_name)

    # ---------------------------------------------------------- hypotheses
    def hypothesis(
        self,
        hypotheses: str | Sequence[str],
        group: str | None = None,
        scope: Literal["standard", "coef", "ranef"] = "standard",
        alpha: float = 0.05,
    ) -> pd.DataFrame:
        """Test string hypotheses (brms's ``hypothesis``).

        ``fit.hypothesis("treatmentdrugA - treatmentdrugB < 0")`` on the population
        effects; ``group="gene", scope="coef"`` for every gene (population effect plus the
        gene's deviation). brms's columns: Hypothesis, Estimate, Est.Error, CI.Lower,
        CI.Upper, Evid.Ratio, Post.Prob, Star. See `screenformula.results.hypothesis`.
        """
        return hypothesis_core.hypothesis(
            self._fit(), hypotheses, group=group, scope=scope, alpha=alpha
        )

    def conditional_effects(
        self,
        effects: str | Sequence[str] | None = None,
        scale: Literal["response", "linear", "lfc"] = "response",
        prob: float = 0.95,
    ) -> conditional.ConditionalEffects:
        """Each population predictor's effect per level (brms's ``conditional_effects``).

        The expected count of a typical guide (``scale="response"``), its log, or the
        log2 fold-change from the reference level (``"lfc"``), with group-level effects
        left out: ``{variable: DataFrame}``, and ``.plot(path=None)`` draws it (brms's
        ``plot(conditional_effects(fit))``). See `screenformula.results.conditional`.
        """
        return conditional.conditional_effects(self._fit(), effects, scale=scale, prob=prob)

    # ---------------------------------------------------------------- ArviZ
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """ArviZ converts unknown objects with ``numpy.asarray``: say what to pass."""
        raise TypeError(ARVIZ_HINT)

    def __getitem__(self, key: Any) -> Any:
        """ArviZ plots index their input by group (``data["posterior"]``): say what to pass."""
        raise TypeError(ARVIZ_HINT)
