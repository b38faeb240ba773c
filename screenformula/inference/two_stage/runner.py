"""The two-stage engine as a method of the registry (``fit(method="two-stage")``)."""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

from screenformula.errors import FitError
from screenformula.inference.registry import FitRequest
from screenformula.inference.scratch import draw_array

__all__ = ["ENV_OPTIONS", "env_options", "run_two_stage"]

#: Environment variable of engine settings for runs that cannot pass them (the command
#: line, tests, benchmarks): ``"chunk_genes=500,stage1_draws=300"``. Keywords of ``fit``
#: win over it; the settings used are recorded in ``fit.options["config"]``.
ENV_OPTIONS = "SCREENFORMULA_TWO_STAGE"


def env_options() -> dict[str, Any]:
    """`TwoStageConfig` fields set by ``$SCREENFORMULA_TWO_STAGE`` (typed as the defaults)."""
    from screenformula.inference.two_stage.config import TwoStageConfig

    text = os.environ.get(ENV_OPTIONS, "").strip()
    if not text:
        return {}
    defaults = TwoStageConfig()
    known = {f.name for f in fields(TwoStageConfig)}
    # a field whose default is None is typed by its annotation ("int | None": workers)
    hints = {f.name: str(f.type) for f in fields(TwoStageConfig)}
    out: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        key, sep, value = (x.strip() for x in item.partition("="))
        if not sep or key not in known:
            raise FitError(
                f"${ENV_OPTIONS}: {item!r} is not KEY=VALUE with KEY one of {', '.join(known)}"
            )
        default = getattr(defaults, key)
        try:
            if value.lower() == "none":
                out[key] = None
            elif isinstance(default, bool):
                out[key] = value.lower() in ("1", "true", "yes")
            elif isinstance(default, int) or (default is None and "int" in hints[key]):
                out[key] = int(value)
            else:
                out[key] = float(value)
        except ValueError:
            raise FitError(f"${ENV_OPTIONS}: {key}={value!r} is not a number") from None
    return out


def _target_accept(value: float | None) -> dict[str, float]:
    """``fit(target_accept=...)`` as a config override; None leaves the config's default."""
    return {} if value is None else {"target_accept": value}


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
        client=request.client,
        checkpoint=request.checkpoint,
        force=request.force,
        # fit(target_accept=...) is stage 1's NUTS target acceptance (None: the config's)
        **{**_target_accept(request.target_accept), **env_options(), **request.kwargs},
    )
    for key in ("method", "store_sgrna"):  # fit_model records these itself
        options.pop(key, None)
    options.update(tune=None, engine="two-stage", target_accept=options["config"]["target_accept"])
    return idata, options
