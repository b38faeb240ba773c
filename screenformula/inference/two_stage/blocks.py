"""Gene blocks: which variables are global and which belong to one gene, and subset models.

Given the global parameters, a model whose varying effects nest in gene factorises over
genes: each gene's block holds its gene-level effects (rows of the raw ``t_``/``z_``
variables of gene-level terms) and its guides' variables (rows of the raw variables of
guide-level terms, per-guide dispersions ``phi``). The layout flattens them into two
matrices, ``G`` (genes x gene coordinates) and ``U`` (guides x guide coordinates), in the
model's unconstrained (value-variable) space.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from screenformula._constants import DIM_GENE, DIM_SGRNA
from screenformula.errors import FitError
from screenformula.io.screen_data import ScreenData

#: The model levels a two-stage fit treats as local (one block per gene).
LOCAL_LEVELS = ("gene", "sgrna")


@dataclass(frozen=True)
class LocalVar:
    """One local value variable and its columns in ``G`` (gene) or ``U`` (guide)."""

    name: str  # value-variable name
    rv_name: str
    level: str  # "gene" or "sgrna"
    shape: tuple[int, ...]  # (n_levels,) or (n_levels, k)
    start: int  # first column in G or U
    width: int


@dataclass(frozen=True)
class BlockLayout:
    """How a PyMC model's value variables split into globals and per-gene blocks.

    Attributes
    ----------
    global_names : tuple of str
        Value-variable names of the global parameters (unconstrained).
    global_shapes : dict
        Their shapes.
    gene_vars, guide_vars : tuple of LocalVar
        Local value variables, gene level and guide level.
    n_genes, n_sgrna : int
    gene_of_guide : ndarray
        Gene code of every guide (rows of ``U`` to rows of ``G``).
    """

    global_names: tuple[str, ...]
    global_shapes: dict[str, tuple[int, ...]]
    gene_vars: tuple[LocalVar, ...]
    guide_vars: tuple[LocalVar, ...]
    n_genes: int
    n_sgrna: int
    gene_of_guide: np.ndarray

    @property
    def a(self) -> int:
        """Gene-level coordinates per gene."""
        return sum(v.width for v in self.gene_vars)

    @property
    def c(self) -> int:
        """Guide-level coordinates per guide."""
        return sum(v.width for v in self.guide_vars)

    @property
    def guides_per_gene(self) -> np.ndarray:
        """Number of guides of every gene."""
        return np.bincount(self.gene_of_guide, minlength=self.n_genes)

    @property
    def dim(self) -> np.ndarray:
        """Dimension of every gene's block."""
        return self.a + self.c * self.guides_per_gene

    def split(self, G: np.ndarray, U: np.ndarray) -> dict[str, np.ndarray]:
        """Value-variable arrays from ``G`` and ``U`` (leading batch axes allowed)."""
        out = {}
        for v, M in [(v, G) for v in self.gene_vars] + [(v, U) for v in self.guide_vars]:
            block = M[..., v.start : v.start + v.width]
            out[v.name] = block.reshape(block.shape[:-2] + v.shape)
        return out

    def join(self, values: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``G`` and ``U`` from value-variable arrays (inverse of `split`, no batch axes)."""
        G = np.zeros((self.n_genes, self.a))
        U = np.zeros((self.n_sgrna, self.c))
        for v in self.gene_vars:
            G[:, v.start : v.start + v.width] = np.reshape(values[v.name], (self.n_genes, -1))
        for v in self.guide_vars:
            U[:, v.start : v.start + v.width] = np.reshape(values[v.name], (self.n_sgrna, -1))
        return G, U


def check_supported(spec) -> None:  # noqa: ANN001 - a ModelSpec
    """Raise a `FitError` when the two-stage engine does not apply to a model.

    It needs every varying effect nested in gene (``gene``, ``gene:sgrna``, ``gene/sgrna``)
    or at sample level (a global parameter). A gene-group level couples genes: use
    ``method="nuts"``.
    """
    terms = list(spec.mean.groups)
    if spec.dispersion.predictor is not None:
        terms += list(spec.dispersion.predictor.groups)
    for term in terms:
        if term.level == "group":
            raise FitError(
                f"two-stage fit: term ({term.expr} | {term.factor}) has a gene-group level, which "
                "couples genes; use method='nuts'"
            )
    if spec.pool.mode == "covariate":
        raise FitError(
            "two-stage fit: pool='covariate' centres the pool covariate over the guides fitted, "
            "which a gene subsample changes; use pool='joint' or 'offset', or method='nuts'"
        )


def block_layout(pymc_model, spec, point: dict) -> BlockLayout:  # noqa: ANN001
    """Classify the free variables of ``pymc_model`` (built from ``spec``) into a layout.

    ``point`` is the model's initial point (``pymc_model.initial_point()``, which compiles
    a function: about 2 s for a 9,000-gene chunk), computed once by the caller.
    """
    from screenformula.inference.nuts import variable_shapes

    check_supported(spec)
    terms = list(spec.mean.groups)
    if spec.dispersion.predictor is not None:
        terms += list(spec.dispersion.predictor.groups)
    raw_level = {}
    hyper = set()  # every term's LKJ Cholesky factor is global, whatever its shape
    for term in terms:
        hyper.add(term.names.chol)
        if term.level in LOCAL_LEVELS:
            raw_level[term.names.raw] = term.level
            raw_level[term.names.raw_t] = term.level
            raw_level[term.names.raw_centered(())] = term.level
    n_genes = spec.data.n_genes
    n_sgrna = spec.data.n_sgrnas
    shapes = variable_shapes(pymc_model)
    globals_, gene_vars, guide_vars = [], {}, {}
    for rv in pymc_model.free_RVs:
        value = pymc_model.rvs_to_values[rv]
        dims = pymc_model.named_vars_to_dims.get(rv.name) or ()
        shape = shapes[rv.name]
        level = None
        for prefix, lev in raw_level.items():
            if rv.name == prefix or (prefix.endswith("__") and rv.name.startswith(prefix)):
                level = lev
        if level is None and dims[:1] == (DIM_SGRNA,):
            level = "sgrna"
        if level is None and dims[:1] == (DIM_GENE,):
            level = "gene"
        if level is None:
            # a variable with named dims that are neither gene nor sgrna is global (a
            # coefficient vector may have as many entries as a small subset has genes)
            if (
                not dims
                and rv.name not in hyper
                and shape[:1] in ((n_sgrna,), (n_genes,))
                and shape[0] > 1
            ):
                raise FitError(f"two-stage fit: cannot place variable {rv.name!r} in a gene block")
            globals_.append((value.name, tuple(np.shape(point[value.name]))))
        elif level == "gene":
            gene_vars[value.name] = (rv.name, tuple(np.shape(point[value.name])))
        else:
            guide_vars[value.name] = (rv.name, tuple(np.shape(point[value.name])))

    def lay(vars_: dict, level: str) -> tuple[LocalVar, ...]:
        out, start = [], 0
        for name, (rv_name, shape) in vars_.items():
            width = int(np.prod(shape[1:], dtype=int))
            out.append(LocalVar(name, rv_name, level, tuple(shape), start, width))
            start += width
        return tuple(out)

    return BlockLayout(
        global_names=tuple(n for n, _ in globals_),
        global_shapes={n: tuple(s) for n, s in globals_},
        gene_vars=lay(gene_vars, "gene"),
        guide_vars=lay(guide_vars, "sgrna"),
        n_genes=n_genes,
        n_sgrna=n_sgrna,
        gene_of_guide=np.asarray(spec.data.gene_codes, dtype=np.int64),
    )


def subset_data(data: ScreenData, genes: np.ndarray) -> tuple[ScreenData, np.ndarray]:
    """The guides of the genes with codes ``genes``, with the full screen's size factors.

    Returns the subset and the row (guide) indices it holds, in the original order.
    """
    keep = np.isin(data.gene_codes, np.asarray(genes))
    rows = np.flatnonzero(keep)
    sub = ScreenData(
        data.counts[rows],
        data.sgrnas[rows],
        data.genes_of_sgrna[rows],
        data.samples,
        gene_groups=data.gene_groups,
        controls=data.controls[rows],
        size_factors=data.size_factors.to_numpy(),
        source=data.source,
    )
    sub.size_factor_method = data.size_factor_method
    return sub, rows


def model_settings(model) -> dict:  # noqa: ANN001 - a ScreenModel
    """Keyword arguments that rebuild ``model`` on other data with the very same priors.

    Every prior of the spec is passed explicitly, so data-scaled defaults (the intercept's
    centre) stay those of the full screen.
    """
    s = model.settings
    priors = {key: entry.prior for key, entry in model.spec.priors.items()}
    predictor = getattr(model.spec.dispersion, "predictor", None)
    terms = [*model.spec.groups, *(getattr(predictor, "groups", ()) or ())]
    # each term's centred effects as resolved on the whole screen: "auto" looks at the
    # counts (spec/identification.py), and a subset must not decide otherwise
    centred = {
        t.name: [c for c, f in zip(t.coef_names, t.centered, strict=True) if f] for t in terms
    }
    # every setting as given (a new one reaches the subsets too), but these two
    return {
        **{key: s[key] for key in s.keys() if key != "formula"},
        "priors": priors,
        "parameterization": centred,
        "reference": s["reference"] or None,
    }


def subset_model(model, genes: np.ndarray):  # noqa: ANN001, ANN201
    """A `ScreenModel` on the guides of ``genes`` (codes) with ``model``'s settings."""
    sub, rows = subset_data(model.data, genes)
    dispersion = model.spec.dispersion.take(rows)
    return model_on(model.settings["formula"], sub, model_settings(model), dispersion), rows


def model_on(formula: str, data: ScreenData, settings: dict, dispersion=None):  # noqa: ANN001, ANN201
    """A `ScreenModel` on a gene subset, with the whole screen's data-scaled dispersion.

    ``settings`` come from `model_settings`; ``dispersion`` is the whole screen's
    `DispersionSpec` taken on the subset's guides (``DispersionSpec.take``): the trend's
    covariate is centred and clipped over every guide, so a subset must not recompute it.
    """
    from screenformula.model import ScreenModel

    out = ScreenModel(formula, data, **settings)
    if dispersion is not None:
        out.spec = replace(out.spec, dispersion=dispersion)
    return out


@contextlib.contextmanager
def expression_kernel() -> Iterator[None]:
    """Build PyMC models with the PyTensor NB expression (it has second derivatives)."""
    key = "SCREENFORMULA_NB_KERNEL"
    old = os.environ.get(key)
    os.environ[key] = "expression"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def variable_level(
    pm_model: Any, name: str, shape: tuple, n_genes: int, n_sgrna: int
) -> str | None:
    """``"gene"``, ``"sgrna"`` or None (global) for a stored variable."""
    dims = pm_model.named_vars_to_dims.get(name) or ()
    if DIM_SGRNA in dims:
        return "sgrna"
    if DIM_GENE in dims:
        return "gene"
    if not dims and shape:
        if shape[0] == n_sgrna and n_sgrna != n_genes:
            return "sgrna"
        if shape[0] == n_genes:
            return "gene"
    return None


def global_free_rvs(pm_model: Any, n_genes: int, n_sgrna: int, shapes: dict) -> list:
    """(RV name, value-variable name) of every global free variable."""
    out = []
    for rv in pm_model.free_RVs:
        if variable_level(pm_model, rv.name, shapes[rv.name], n_genes, n_sgrna) is None:
            out.append((rv.name, pm_model.rvs_to_values[rv].name))
    return out
