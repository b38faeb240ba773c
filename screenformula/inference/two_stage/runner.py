"""The two-stage engine as a method of the registry (``fit(method="two-stage")``)."""

from __future__ import annotations

from typing import Any

from screenformula.inference.registry import FitRequest
from screenformula.inference.scratch import draw_array

__all__ = ["run_two_stage"]


def run_two_stage(model: Any, request: FitRequest) -> tuple[Any, dict[str, Any]]:
    """Run `fit_two_stage` for the registry: the asked variables, guide draws on disk."""
    from screenformula.inference.two_stage.engine import fit_two_stage

    def allocate(name: str, shape: tuple[int, ...]) -> Any:
        return draw_array(name, shape, request.scratch if name in request.on_disk else None)

    idata, options = fit_two_stage(
        model,
        draws=request.draws,
        random_seed=request.random_seed,
        progress=request.progress,
        var_names=request.var_names,
        allocate=allocate,
        **request.kwargs,
    )
    for key in ("method", "store_sgrna"):  # fit_model records these itself
        options.pop(key, None)
    options.update(tune=None, engine="two-stage", target_accept=None)
    return idata, options
