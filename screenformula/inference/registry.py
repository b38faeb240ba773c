"""The inference methods `ScreenModel.fit` offers: one entry each, looked up by name.

Adding a method is one module with a runner plus one line in `METHODS`. A runner takes
the `ScreenModel` and a `FitRequest` and returns ``(idata, options)``: an arviz DataTree
whose ``posterior`` holds ``request.var_names`` with the names and dims NUTS gives, and
the options to record (they update the common ones `fit_model` records). Everything
else (what to store, streaming guide summaries, observed data, the log-likelihood, the
`ScreenFit`) is done once, for every method, in `screenformula.inference.fit`. Runners
are named as ``"module:function"`` and imported only when used, so asking what is
available (the CLI's ``--method`` choices, the demo) costs no PyMC import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

from screenformula.errors import FitError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "METHODS",
    "FitRequest",
    "InferenceMethod",
    "available_methods",
    "choose_method",
    "get_method",
    "method_names",
]


@dataclass
class FitRequest:
    """What `fit_model` asks of a runner (see `ScreenModel.fit` for the meanings).

    ``var_names`` are the variables to keep in the posterior; ``on_disk`` those of them
    (guide-level) whose draws should go to disk in folder ``scratch`` when the runner can
    (None: keep them in memory); ``kwargs`` the method's own options. ``client`` (a Dask
    client or a scheduler address), ``checkpoint`` (a folder) and ``force`` reach only
    methods that take them (`InferenceMethod.resumable`).
    """

    draws: int
    tune: int
    chains: int
    cores: int | None
    random_seed: int | None
    engine: str
    target_accept: float | None  # None: the method's own default
    progress: bool
    var_names: list[str]
    on_disk: tuple[str, ...] = ()
    scratch: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    client: Any = None
    checkpoint: str | None = None
    force: bool = False


@dataclass(frozen=True)
class InferenceMethod:
    """One inference method.

    Attributes
    ----------
    name : str
        What ``fit(method=...)`` and ``--method`` take.
    runner : str
        ``"module:function"`` of the runner (imported on first use).
    approximate : bool
        The posterior is an approximation (R-hat/ESS do not apply; fits say so).
    description : str
        One line for help texts.
    aliases : tuple of str
        Other names accepted for it.
    single_chain : bool
        Its draws are one set of draws (``chains`` is ignored).
    iteration_keyword : str, optional
        The keyword of ``fit`` that caps its iterations, if it has one.
    resumable : bool
        It runs its pieces on a Dask client and keeps them in a checkpoint folder
        (``fit(client=..., checkpoint=...)``).
    """

    name: str
    runner: str
    approximate: bool
    description: str
    aliases: tuple[str, ...] = ()
    single_chain: bool = False
    iteration_keyword: str | None = None
    resumable: bool = False

    def runner_function(self) -> Callable[..., tuple[Any, dict[str, Any]]]:
        """The runner, imported."""
        module, _, function = self.runner.partition(":")
        return getattr(import_module(module), function)

    def run(self, model: Any, request: FitRequest) -> tuple[Any, dict[str, Any]]:
        """Import the runner and run it."""
        return self.runner_function()(model, request)


#: Every method, in the order help texts list them.
METHODS: tuple[InferenceMethod, ...] = (
    InferenceMethod(
        "nuts",
        "screenformula.inference.nuts:run_nuts",
        approximate=False,
        description="full NUTS (nutpie by default; engine='pymc' or 'numpyro')",
    ),
    InferenceMethod(
        "two-stage",
        "screenformula.inference.two_stage.runner:run_two_stage",
        approximate=False,
        description="NUTS on a gene subsample for the global parameters, then every gene's "
        "posterior given them (Laplace, importance sampling, per-gene HMC): genome scale",
        single_chain=True,
        resumable=True,
    ),
    InferenceMethod(
        "advi",
        "screenformula.inference.approx:run_advi",
        approximate=True,
        description="mean-field ADVI: fast, approximate (intervals too narrow)",
        aliases=("approx",),
        single_chain=True,
        iteration_keyword="n",
    ),
)


#: ``method="auto"``: full NUTS up to this many genes (minutes on 2 cores: 2,000 genes took
#: 158 s of sampling, benchmarks/README.md), the two-stage engine above it.
AUTO_NUTS_MAX_GENES = 2_000
#: The same budget in gene-level effects (genes x effects per gene: treatment against
#: control has two, a baseline and a slope). A model with more per gene, one slope per line,
#: costs NUTS more per gene: the five JACKS AML lines in one model (1,579 genes x 6
#: effects) ran the two-stage engine in 5 minutes and full NUTS (2 chains) for over 30.
AUTO_NUTS_MAX_GENE_EFFECTS = 2 * AUTO_NUTS_MAX_GENES


def choose_method(
    n_genes: int, effects_per_gene: int = 2, guide_states: str = "none"
) -> tuple[InferenceMethod, str]:
    """What ``method="auto"`` runs for ``n_genes`` genes, and why (one line).

    Full NUTS while ``n_genes * effects_per_gene`` (the gene-level effects, every
    gene-level term's coefficients) is at most `AUTO_NUTS_MAX_GENE_EFFECTS`, the
    two-stage engine above. A model with guide states (``guide_states`` other than
    ``"none"``) runs the two-stage engine at any size: its grid stage 2 sums them.
    """
    if guide_states != "none":
        return get_method("two-stage"), (
            f"method='auto' runs the two-stage engine: guide states ({guide_states}) are "
            "summed on its grid stage 2"
        )
    nuts = get_method("nuts")
    size = n_genes * max(effects_per_gene, 1)
    what = f"{n_genes:,} genes"
    if effects_per_gene != 2:
        what += f" x {effects_per_gene} effects each"
    if size <= AUTO_NUTS_MAX_GENE_EFFECTS:
        limit = f"{AUTO_NUTS_MAX_GENES:,} genes x 2 effects"
        return nuts, f"method='auto' runs full NUTS: {what} (<= {limit}) take minutes"
    names = {m.name for m in METHODS}
    if "two-stage" not in names:
        return nuts, f"method='auto' runs full NUTS ({what}): no two-stage engine"
    return get_method("two-stage"), (
        f"method='auto' runs the two-stage engine: {what} (> {AUTO_NUTS_MAX_GENES:,} genes "
        "x 2 effects); full NUTS would take hours at this size (method='nuts' runs it anyway)"
    )


def get_method(name: str) -> InferenceMethod:
    """The method called ``name`` (or one of its aliases)."""
    for method in METHODS:
        if name == method.name or name in method.aliases:
            return method
    raise FitError(
        f"unknown method {name!r}: choose one of {', '.join(method_names()[1:])} (or auto)"
    )


def method_names() -> list[str]:
    """Every name ``fit(method=...)`` accepts: ``"auto"``, then each method and its aliases."""
    return ["auto", *(n for m in METHODS for n in (m.name, *m.aliases))]


def available_methods() -> list[InferenceMethod]:
    """The methods whose runner can be imported in this installation."""
    out = []
    for method in METHODS:
        try:
            method.runner_function()
        except Exception:  # noqa: BLE001 - a half-installed method counts as none
            continue
        out.append(method)
    return out
