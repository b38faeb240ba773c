"""The per-gene conditional log-density, compiled once from the model's own PyMC graph.

For fixed global parameters the joint log-density is a sum over genes. `BlockDensity`
compiles, from ``model.logp(sum=False)`` of a model built with the PyTensor NB expression
(which has second derivatives), functions of (globals, ``G``, ``U``) returning

- every gene's log-density (its gene-level prior terms plus its guides' prior and
  likelihood terms, segment-summed to genes),
- the gradient of their sum (separable: each gene's own gradient), and
- Hessian-vector products, from which `hessian_blocks` gets every gene's Hessian with
  ``a + c`` products in all: guides of one gene never interact directly, so probing
  coordinate ``j`` of every gene at once, then coordinate ``q`` of every guide at once,
  gives the gene blocks ``A``, the guide blocks ``D`` and the gene-guide cross terms
  ``B`` (an "arrowhead" Hessian per gene).

No derivative is written by hand, so any formula nested in gene works.

The screen's data (counts, size factors, design rows, guide-to-gene indices) enter the
compiled functions as inputs, not as constants: PyTensor's numba cache keys a compiled
graph by its constants, and refuses to cache one holding an array over 1 MB, so with
data baked in every screen, chunk and gene subset paid the full numba compile (about
30 s per function set on HAP1). Lifted, one compiled graph serves every chunk and the
HMC subset of a run, and the next run on the same machine loads it from the cache.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import get_mode
from pytensor.graph.basic import Constant
from pytensor.graph.replace import clone_replace, graph_replace
from pytensor.graph.traversal import graph_inputs, io_toposort

from screenformula.inference.two_stage import _numba_ops  # noqa: F401 - registers tri_gamma
from screenformula.inference.two_stage.blocks import BlockLayout, block_layout, expression_kernel

#: PyTensor compile mode of the stage-2 functions (measured: see benchmarks/bench_two_stage.py).
COMPILE_MODE = "NUMBA"


class BlockDensity:
    """Compiled per-gene log-density, gradient and Hessian blocks of one `ScreenModel`.

    Parameters
    ----------
    model : ScreenModel
        The model (its data define the genes of this density; a chunk of genes is a
        `ScreenModel` on a subset, see `blocks.subset_model`).
    mode : str
        PyTensor compile mode.
    like : BlockDensity, optional
        A density of the same model on other genes (the chunk an HMC subset comes from):
        its compiled functions are reused wherever this density's graph is the same
        (same operations, same data-input types), so only the data differ.
    """

    def __init__(self, model: Any, mode: str = COMPILE_MODE, like: Any = None) -> None:
        from screenformula.backend.model import build_pymc_model

        start = time.perf_counter()
        with expression_kernel():
            pm_model = build_pymc_model(model.spec)
        self.pymc_model = pm_model
        point = pm_model.initial_point()
        self.layout: BlockLayout = block_layout(pm_model, model.spec, point)
        #: PyMC's initial point of the genes' and guides' coordinates (Newton's start)
        self.initial_GU: tuple[np.ndarray, np.ndarray] = self.layout.join(point)
        lay = self.layout
        gene_idx = pt.as_tensor_variable(lay.gene_of_guide)

        self.G = pt.matrix("G")
        self.U = pt.matrix("U")
        values = {v.name: v for v in pm_model.value_vars}
        self.global_inputs = [values[n] for n in lay.global_names]
        local_values = {values[v.name]: v for v in (*lay.gene_vars, *lay.guide_vars)}

        # one log-density term per free variable and observed variable
        rvs = list(pm_model.free_RVs) + list(pm_model.observed_RVs)
        terms = pm_model.logp(vars=rvs, sum=False, jacobian=True)
        per_gene = pt.zeros((self.G.shape[0],))
        per_guide = pt.zeros((self.U.shape[0],))
        value_names = {pm_model.rvs_to_values[rv].name: rv for rv in pm_model.free_RVs}
        levels = {v.name: v.level for v in (*lay.gene_vars, *lay.guide_vars)}
        for rv, term in zip(rvs, terms, strict=True):
            value = pm_model.rvs_to_values[rv]
            if rv in pm_model.observed_RVs:
                level = "sgrna"
            else:
                level = levels.get(value.name)
                assert value.name in value_names
            if level is None:
                continue  # a global prior: constant given the globals
            flat = term.reshape((term.shape[0], -1)).sum(axis=1) if term.ndim > 1 else term
            if level == "gene":
                per_gene = per_gene + flat
            else:
                per_guide = per_guide + flat
        per_gene = pt.inc_subtensor(per_gene[gene_idx], per_guide)

        replace = {}
        for value, v in local_values.items():
            M = self.G if v.level == "gene" else self.U
            block = M[:, v.start : v.start + v.width]
            replace[value] = block.reshape(v.shape) if len(v.shape) > 1 else block[:, 0]
        self._local_values = replace
        (lp,) = graph_replace([per_gene], replace, strict=False)
        (lp,), self.data_inputs, self.data_values = lift_constants([lp], (lay.n_genes, lay.n_sgrna))
        #: every gene's log-density as a graph of (globals, G, U, data inputs), for
        #: functions derived from it (benchmarks/bench_stage1_laplace.py's Fisher gradients)
        self.lp_graph = lp
        total = lp.sum()
        gG, gU = pytensor.grad(total, [self.G, self.U])
        self.VG = pt.matrix("VG")
        self.VU = pt.matrix("VU")
        hG, hU = pytensor.grad((gG * self.VG).sum() + (gU * self.VU).sum(), [self.G, self.U])
        inputs = [*self.global_inputs, self.G, self.U, *self.data_inputs]
        self._mode = mode
        self._functions = _process_functions() if like is None else like._functions
        self._logp = self._compile(inputs, lp)
        self._logp_grad = self._compile(inputs, [lp, gG, gU])
        self._hvp = self._compile([*inputs, self.VG, self.VU], [hG, hU])
        self.compile_seconds = time.perf_counter() - start

    def _compile(self, inputs: list, outputs: Any) -> Any:
        """``pytensor.function(inputs, outputs)``, or the one already compiled for this graph.

        The key is the compile mode, the graph's operations in order, its inputs' types
        and the values of the constants left in it (priors' parameters, the model's
        structure): two densities of one model on different genes share it, as their data
        are inputs; so do the chunks of later fits of a like model in this process (a
        worker's), which pay the compilation once.
        """
        outs = outputs if isinstance(outputs, list) else [outputs]
        key = (
            self._mode,
            tuple(str(i.type) for i in inputs),
            len(outs),
            tuple(str(node.op) for node in io_toposort(inputs, outs)),
            tuple(_constant_key(v) for v in graph_inputs(outs) if isinstance(v, Constant)),
        )
        fn = self._functions.get(key)
        if fn is None:
            # as PyMC compiles: a parameter outside its support (a Normal's sigma
            # underflowing to 0 on a wild trial point) gives -inf, which every step
            # rejects, instead of raising
            mode = get_mode(self._mode).including("local_check_parameter_to_ninf_switch")
            fn = pytensor.function(inputs, outputs, mode=mode, on_unused_input="ignore")
            # every call passes NumPy arrays of the inputs' dtypes (`global_list`, the
            # lifted data values, float64 coordinates): checking them cost 0.1-0.7 ms a
            # call, of 0.3 ms for a 100-gene HMC gradient
            fn.trust_input = True
            if len(self._functions) >= FUNCTION_CACHE_SIZE:
                self._functions.pop(next(iter(self._functions)))
            self._functions[key] = fn
        return fn

    def stored_function(self, names: list[str]) -> Any:
        """A function ``(globals, G, U) -> [values of the named model variables]``.

        ``globals`` maps the global value-variable names to unconstrained values; the
        variables are those a fit stores (``r_gene``, ``phi``, ...), on this density's
        genes and guides.
        """
        pm_model = self.pymc_model
        outs = pm_model.replace_rvs_by_values([pm_model[n] for n in names])
        outs = graph_replace(outs, self._local_values, strict=False)
        lay = self.layout
        outs, data_inputs, data_values = lift_constants(outs, (lay.n_genes, lay.n_sgrna))
        fn = self._compile([*self.global_inputs, self.G, self.U, *data_inputs], list(outs))

        def values(globals_unc: dict, G: np.ndarray, U: np.ndarray) -> list[np.ndarray]:
            return fn(*self.global_list(globals_unc), G, U, *data_values)

        return values

    # ------------------------------------------------------------------ calls
    def logp(self, glob: list[np.ndarray], G: np.ndarray, U: np.ndarray) -> np.ndarray:
        """Every gene's log-density (up to a constant of the globals)."""
        return self._logp(*glob, G, U, *self.data_values)

    def logp_grad(
        self, glob: list[np.ndarray], G: np.ndarray, U: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-gene log-density and its gradient in ``G`` and ``U``."""
        return self._logp_grad(*glob, G, U, *self.data_values)

    def hessian_blocks(
        self, glob: list[np.ndarray], G: np.ndarray, U: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every gene's Hessian of the log-density as arrowhead blocks.

        Returns
        -------
        A : (n_genes, a, a)
            Gene-coordinate block.
        B : (n_sgrna, c, a)
            Guide-by-gene cross terms.
        D : (n_sgrna, c, c)
            Guide blocks (guides of a gene do not interact).
        """
        lay = self.layout
        a, c = lay.a, lay.c
        A = np.empty((lay.n_genes, a, a))
        B = np.empty((lay.n_sgrna, c, a))
        D = np.empty((lay.n_sgrna, c, c))
        zG, zU = np.zeros_like(G), np.zeros_like(U)
        for j in range(a):
            VG = zG.copy()
            VG[:, j] = 1.0
            hG, hU = self._hvp(*glob, G, U, *self.data_values, VG, zU)
            A[:, :, j] = hG
            B[:, :, j] = hU
        for q in range(c):
            VU = zU.copy()
            VU[:, q] = 1.0
            _, hU = self._hvp(*glob, G, U, *self.data_values, zG, VU)
            D[:, :, q] = hU
        # symmetrise rounding noise
        A = 0.5 * (A + np.swapaxes(A, 1, 2))
        D = 0.5 * (D + np.swapaxes(D, 1, 2))
        return A, B, D

    def global_list(self, values: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Global values (unconstrained, by value-variable name) in input order."""
        return [
            np.asarray(values[n], dtype=float).reshape(self.layout.global_shapes[n])
            for n in self.layout.global_names
        ]


#: Compiled functions kept per thread of a process (oldest dropped first).
FUNCTION_CACHE_SIZE = 64

_FUNCTIONS: dict[int, dict[tuple, Any]] = {}


def _process_functions() -> dict[tuple, Any]:
    """The compiled stage-2 functions of the calling thread (one is not thread-safe)."""
    return _FUNCTIONS.setdefault(threading.get_ident(), {})


def _constant_key(v: Any) -> tuple:
    """A constant of a graph by its type and value."""
    data = np.asarray(v.data) if isinstance(v, pt.TensorConstant) else v.data
    if isinstance(data, np.ndarray) and data.dtype.kind not in "OUT":
        return (str(v.type), data.shape, data.tobytes())
    return (str(v.type), repr(data))


def lift_constants(
    outputs: list[pt.TensorVariable], sizes: tuple[int, ...] = ()
) -> tuple[list[pt.TensorVariable], list[pt.TensorVariable], list[np.ndarray]]:
    """Replace the data constants of the ``outputs``' graph by input variables.

    Every array constant (any dtype, any size) becomes an input keeping its dtype, number
    of dimensions and length-1 (broadcast) dimensions, with other lengths left free; an
    integer scalar equal to one of ``sizes`` (the numbers of genes and guides, used as
    shapes) becomes an int64 scalar input. Other scalars stay constants: they are the
    model's structure (0.5, 2 pi); a data-derived number such as a mean log size factor
    is a 1 x 1 array in PyMC's graphs. The compiled graph then depends on no data value
    and on no size: PyTensor types ``pt.zeros(n)``'s ``n`` by magnitude (int16 below
    32,768), and a size input cast back to that type left a ``Cast{int16}`` in a chunk's
    graph and a ``Cast{int8}`` in its 100-gene HMC subset's, so the subset recompiled
    (15 s of PyTensor rewrites); an int64 input in place of the constant serves both.

    Returns the new outputs, the inputs and their values (in the same order).
    """
    sizes = {int(n) for n in sizes if n > 2}
    inputs, values, replace = [], [], {}
    for v in graph_inputs(outputs):
        if not isinstance(v, pt.TensorConstant):
            continue
        data = np.asarray(v.data)
        if v.ndim > 0:
            shape = tuple(1 if n == 1 else None for n in data.shape)
            var = pt.tensor(dtype=data.dtype, shape=shape, name=f"data_{len(inputs)}")
        elif data.dtype.kind in "iu" and int(data) in sizes:
            var = pt.scalar(dtype="int64", name=f"size_{len(inputs)}")
            replace[v] = var  # int64 whatever its magnitude: one graph for every size
            inputs.append(var)
            values.append(np.asarray(int(data), dtype=np.int64))
            continue
        else:
            continue
        replace[v] = var
        inputs.append(var)
        values.append(data)
    if not replace:
        return list(outputs), [], []
    # rebuilt node by node (not `graph_replace`, which pins the old static shapes with
    # SpecifyShape, sizes included)
    lifted = clone_replace(list(outputs), replace, rebuild_strict=False)
    return lifted, inputs, values
