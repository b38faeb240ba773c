"""Per-gene Laplace approximations by vectorised Newton steps on arrowhead Hessians.

Every gene's negative Hessian ``P`` (its precision) has a gene block ``A`` (a x a),
guide blocks ``D_s`` (c x c) and cross terms ``B_s`` (c x a); guides of one gene do not
interact. Newton steps, Gaussian / Student-t draws and their log densities all go
through the Schur complement ``S = A - sum_s B_s' D_s^-1 B_s``, so their cost is linear in
the number of guides and no gene's block is ever formed densely (a non-targeting "gene"
of a thousand guides costs what a thousand guides cost).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln


def segment_matrix(gene_of_guide: np.ndarray, n_genes: int) -> sp.csr_matrix:
    """Sparse (genes x guides) 0/1 matrix: ``M @ x`` sums guide rows into their genes."""
    n = len(gene_of_guide)
    return sp.csr_matrix((np.ones(n), (gene_of_guide, np.arange(n))), shape=(n_genes, n))


def segsum(M: sp.csr_matrix, x: np.ndarray) -> np.ndarray:
    """Sum guide rows of ``x`` (guides first, any trailing shape) into genes."""
    flat = x.reshape(x.shape[0], -1)
    return np.asarray(M @ flat).reshape((M.shape[0],) + x.shape[1:])


def _min_eig(X: np.ndarray) -> np.ndarray:
    return np.linalg.eigvalsh(X)[..., 0] if X.shape[-1] else np.full(X.shape[0], np.inf)


def _pd_cholesky(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factors of a stack of symmetric matrices, and which were not PD.

    A matrix that is not positive definite is replaced by the identity. The factorisation
    of the whole stack is tried first; only when it fails (or gives a non-finite factor)
    are the smallest eigenvalues computed to find which matrices fail (the eigenvalues of
    every block took 10 of a genome-wide stage 2's 300 CPU seconds, and nearly always
    every block is positive definite).
    """
    if X.shape[-1]:
        try:
            L = np.linalg.cholesky(X)
            if np.isfinite(L).all():
                return L, np.zeros(X.shape[0], bool)
        except np.linalg.LinAlgError:
            pass
    bad = ~(_min_eig(X) > 0)
    X = np.where(bad[:, None, None], np.eye(X.shape[-1]), X)
    return np.linalg.cholesky(X), bad


@dataclass
class ArrowFactor:
    """Factorised per-gene precision (negative Hessian) in arrowhead form.

    ``T`` maps standard normal ``(zG, zU)`` to deviations with covariance ``P^-1``:
    ``dG = LSinvT zG``, ``dU = -DinvB dG[gene] + LDinvT zU``.
    """

    LSinvT: np.ndarray  # (n_genes, a, a)  inverse transpose of chol(S)
    LDinvT: np.ndarray  # (n_sgrna, c, c)
    DinvB: np.ndarray  # (n_sgrna, c, a)
    Dinv: np.ndarray  # (n_sgrna, c, c)
    Sinv: np.ndarray  # (n_genes, a, a)
    B: np.ndarray  # (n_sgrna, c, a)
    logdet: np.ndarray  # (n_genes,) log det P
    ok: np.ndarray  # (n_genes,) bool: P positive definite
    gene_of_guide: np.ndarray
    M: sp.csr_matrix

    def solve(self, gG: np.ndarray, gU: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``P^-1 g`` for gradients ``gG`` (n_genes, a), ``gU`` (n_sgrna, c)."""
        DinvgU = np.einsum("sqr,sr->sq", self.Dinv, gU)
        rhs = gG - segsum(self.M, np.einsum("sqa,sq->sa", self.B, DinvgU))
        dG = np.einsum("gab,gb->ga", self.Sinv, rhs)
        dU = DinvgU - np.einsum("sqa,sa->sq", self.DinvB, dG[self.gene_of_guide])
        return dG, dU

    def transform(self, zG: np.ndarray, zU: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Deviations ``T z`` (leading batch axes allowed).

        The small contracted axes (a, c: a few coordinates) are summed by explicit
        multiply-adds over whole arrays: ``einsum`` with a batch axis over 80,000 guides
        took about as long as the log-density itself.
        """
        dG = _small_matvec(self.LSinvT, zG)
        dU = _small_matvec(self.LDinvT, zU) - _small_matvec(
            self.DinvB, dG[..., self.gene_of_guide, :]
        )
        return dG, dU

    def transpose(self, vG: np.ndarray, vU: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``T' v`` (for gradients in whitened coordinates)."""
        w = vG - segsum(self.M, np.einsum("sqa,sq->sa", self.DinvB, vU))
        return (
            np.einsum("gba,gb->ga", self.LSinvT, w),
            np.einsum("srq,sr->sq", self.LDinvT, vU),
        )


def _small_matvec(M: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``M[i] @ z[..., i, :]`` for every row ``i``, summing the short last axis explicitly."""
    out = M[..., 0] * z[..., None, 0]
    for r in range(1, M.shape[-1]):
        out += M[..., r] * z[..., None, r]
    return out


def _tri_inv(L: np.ndarray) -> np.ndarray:
    """Inverses of a stack of small lower-triangular matrices, by forward substitution.

    The blocks are a few coordinates wide, so a loop over their entries on whole arrays
    beats ``np.linalg.inv``'s per-matrix LU (5 of a genome-wide stage 2's 300 CPU seconds).
    """
    k = L.shape[-1]
    X = np.zeros_like(L)
    diag = 1.0 / np.diagonal(L, axis1=-2, axis2=-1)
    for i in range(k):
        X[..., i, i] = diag[..., i]
        for j in range(i):
            X[..., i, j] = -(L[..., i, j:i] * X[..., j:i, j]).sum(-1) * diag[..., i]
    return X


def factor(
    A: np.ndarray,
    B: np.ndarray,
    D: np.ndarray,
    gene_of_guide: np.ndarray,
    M: sp.csr_matrix,
    lam: np.ndarray | None = None,
) -> ArrowFactor:
    """Factor the precision ``P = -H`` (+ ``lam`` I per gene) from Hessian blocks.

    The blocks are those of the log-density (`BlockDensity.hessian_blocks`). Genes whose
    ``P`` is not positive definite
    get ``ok = False`` and an identity-regularised factor, so arithmetic stays finite.
    """
    n_genes, a = A.shape[:2]
    c = D.shape[1]
    PA, PB, PD = -A, -B, -D
    if lam is not None:
        PA = PA + lam[:, None, None] * np.eye(a)
        PD = PD + lam[gene_of_guide, None, None] * np.eye(c)
    LD, bad_guide = _pd_cholesky(PD)
    ok = np.bincount(gene_of_guide[bad_guide], minlength=n_genes) == 0
    LDinv = _tri_inv(LD)
    Dinv = np.einsum("sqr,sqt->srt", LDinv, LDinv)
    DinvB = Dinv @ PB
    S = PA - segsum(M, np.einsum("sqa,sqb->sab", PB, DinvB))
    S = 0.5 * (S + np.swapaxes(S, 1, 2))
    LS, bad = _pd_cholesky(S)
    ok &= ~bad
    LSinv = _tri_inv(LS)
    logdet = 2 * np.log(np.diagonal(LS, axis1=1, axis2=2)).sum(axis=1) + segsum(
        M, 2 * np.log(np.diagonal(LD, axis1=1, axis2=2)).sum(axis=1)
    )
    return ArrowFactor(
        LSinvT=np.swapaxes(LSinv, 1, 2),
        LDinvT=np.swapaxes(LDinv, 1, 2),
        DinvB=DinvB,
        Dinv=Dinv,
        Sinv=np.einsum("gab,gac->gbc", LSinv, LSinv),
        B=PB,
        logdet=logdet,
        ok=ok,
        gene_of_guide=gene_of_guide,
        M=M,
    )


@dataclass
class LaplaceFit:
    """Per-gene modes and factorised precisions, with Newton diagnostics."""

    G: np.ndarray
    U: np.ndarray
    lp: np.ndarray  # log-density at the mode
    factor: ArrowFactor
    iterations: np.ndarray  # Newton iterations per gene
    converged: np.ndarray  # bool per gene

    @property
    def ok(self) -> np.ndarray:
        """Converged with a positive definite precision at the mode."""
        return self.converged & self.factor.ok


def newton(
    density,  # noqa: ANN001 - BlockDensity
    glob: list[np.ndarray],
    G: np.ndarray,
    U: np.ndarray,
    *,
    max_iter: int = 50,
    tol: float = 1e-8,
    max_step: float = 5.0,
    max_halvings: int = 6,
    done_damping: float = 1e-3,
) -> LaplaceFit:
    """Maximise every gene's log-density at once by damped Newton steps.

    Each gene keeps its own Levenberg damping and backtracking step; a gene stops when its
    Newton decrement ``g' P^-1 g / 2`` falls below ``tol`` with a damping of at most
    ``done_damping`` (the damped decrement is then within a factor ``1 + lambda /
    eigmin(P)`` of the undamped one; waiting for the damping to decay to 0 took genes one
    to three more iterations: on HAP1's first genome-wide chunk, 46 against 52 passes
    over the chunk for its 8 global draws, modes moved by at most 4e-5). Each iteration
    tries at most ``max_halvings`` step halvings (every trial is a log-density call over
    all genes); a gene whose step is not accepted raises its damping for the next
    iteration instead.
    """
    lay = density.layout
    gog = lay.gene_of_guide
    M = segment_matrix(gog, lay.n_genes)
    n = lay.n_genes
    lam = np.zeros(n)
    iters = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, bool)
    G, U = G.copy(), U.copy()
    lp, gG, gU = density.logp_grad(glob, G, U)
    fac = None
    for _ in range(max_iter):
        A, B, D = density.hessian_blocks(glob, G, U)
        fac = factor(A, B, D, gog, M, lam)
        for _ in range(8):  # raise damping until every gene's precision is PD
            if fac.ok.all():
                break
            lam = np.where(fac.ok, lam, np.maximum(10 * lam, 1e-3))
            fac = factor(A, B, D, gog, M, lam)
        dG, dU = fac.solve(gG, gU)
        decrement = (gG * dG).sum(1) + segsum(M, (gU * dU).sum(1))
        done |= (decrement / 2 < tol) & (lam <= done_damping) & fac.ok
        if done.all():
            break
        # cap the step (far from the mode), per gene
        size = np.maximum(np.abs(dG).max(1), segsum_max(gog, np.abs(dU).max(1), n))
        scale = np.minimum(1.0, max_step / np.maximum(size, 1e-300))
        scale = np.where(done, 0.0, scale)
        step = scale.copy()
        accepted = done.copy()
        for _ in range(max_halvings):
            trial_G = G + step[:, None] * dG
            trial_U = U + step[gog, None] * dU
            lp_t = density.logp(glob, trial_G, trial_U)
            good = np.isfinite(lp_t) & (lp_t >= lp + 1e-4 * step * decrement) & ~accepted
            if good.any():
                G[good] = trial_G[good]
                U[good[gog]] = trial_U[good[gog]]
                accepted |= good
            if accepted.all():
                break
            step = np.where(accepted, step, step / 2)
        moved = accepted & ~done
        iters += ~done
        lam = np.where(moved, lam / 10, np.maximum(10 * lam, 1e-3))
        lam[lam < 1e-6] = 0.0
        stuck = ~accepted
        done |= stuck & (decrement / 2 < 1e-4)  # flat enough: rounding stops progress
        lp, gG, gU = density.logp_grad(glob, G, U)
    A, B, D = density.hessian_blocks(glob, G, U)
    fac = factor(A, B, D, gog, M)
    return LaplaceFit(G, U, lp, fac, iters, done)


def segsum_max(gene_of_guide: np.ndarray, x: np.ndarray, n_genes: int) -> np.ndarray:
    """Per-gene maximum of a guide vector (0 for genes without guides)."""
    out = np.zeros(n_genes)
    np.maximum.at(out, gene_of_guide, x)
    return out


@dataclass
class ProposalPoints:
    """Randomised quasi-Monte Carlo points for one set of proposals of every gene.

    One scrambled Sobol point set of ``n`` points in ``d`` dimensions, shared by every
    gene, and a uniform shift per coordinate (Cranley-Patterson rotation), so that each
    gene's proposals are marginally exactly the proposal distribution while, together,
    they cover it more evenly than independent draws. A gene's own coordinates use
    dimensions ``0 .. a - 1``; its ``k``-th guide's use ``a + c k .. a + c k + c - 1``.
    """

    points: np.ndarray  # (n, d) scrambled Sobol points
    shift_G: np.ndarray  # (n_genes, a)
    shift_U: np.ndarray  # (n_sgrna, c)
    dims_U: np.ndarray  # (n_sgrna, c) the dimension of every guide coordinate

    def uniforms(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """The shifted points ``lo .. hi - 1``: ``(hi - lo, n_genes, a)``, ``(.., n_sgrna, c)``."""
        rows = self.points[lo:hi]
        a = self.shift_G.shape[1]
        uG = rows[:, None, :a] + self.shift_G[None]
        uU = rows[:, self.dims_U] + self.shift_U[None]
        for u in (uG, uU):  # modulo 1 of numbers in [0, 2)
            np.subtract(u, 1.0, out=u, where=u >= 1.0)
        return uG, uU


#: Most dimensions of a Sobol point set (SciPy's direction numbers); a screen whose
#: largest gene needs more draws its proposals independently.
MAX_SOBOL_DIMS = 21201


def proposal_points(fit: LaplaceFit, n: int, rng: np.random.Generator) -> ProposalPoints | None:
    """`ProposalPoints` for ``n`` proposals of every gene of ``fit`` (None: too many dims)."""
    from scipy.stats import qmc

    gene = fit.factor.gene_of_guide
    n_genes, a = fit.G.shape
    n_sgrna, c = fit.U.shape
    order = np.argsort(gene, kind="stable")
    first = np.searchsorted(gene[order], gene[order])  # first position of each one's gene
    rank = np.empty(n_sgrna, dtype=np.int64)
    rank[order] = np.arange(n_sgrna) - first
    d = a + c * (int(rank.max()) + 1 if n_sgrna else 0)
    if d > MAX_SOBOL_DIMS:
        return None
    m = max(int(np.ceil(np.log2(max(n, 2)))), 1)
    sobol = qmc.Sobol(d, scramble=True, seed=rng)
    points = sobol.random_base2(m)[:n]
    return ProposalPoints(
        points,
        rng.random((n_genes, a)),
        rng.random((n_sgrna, c)),
        a + c * rank[:, None] + np.arange(c)[None, :],
    )


def sample_proposal(
    fit: LaplaceFit,
    n: int,
    rng: np.random.Generator,
    *,
    df: float = np.inf,
    scale: float = 1.0,
    uniforms: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` draws per gene from the Laplace Gaussian or a multivariate Student-t.

    The proposal has location the mode and scale matrix ``scale**2 P^-1``; with finite
    ``df`` each gene's draw is divided by ``sqrt(w)``, ``w ~ Gamma(df/2, rate=df/2)``.
    The standard normals behind a draw are independent, or with ``uniforms`` (``n`` rows
    of `ProposalPoints.uniforms`) their inverse normal CDF; ``w`` is independent.

    Returns
    -------
    G, U : (n, n_genes, a), (n, n_sgrna, c)
    logq : (n, n_genes)
        The proposal's log density of each gene's draw.
    """
    f = fit.factor
    n_genes, a = fit.G.shape
    n_sgrna, c = fit.U.shape
    if uniforms is None:
        zG = rng.standard_normal((n, n_genes, a))
        zU = rng.standard_normal((n, n_sgrna, c))
    else:
        zG, zU = (_inverse_normal_cdf(u) for u in uniforms)
    dim = a + c * np.asarray(f.M.sum(axis=1)).ravel()
    if np.isfinite(df):
        w = rng.gamma(df / 2, 2 / df, size=(n, n_genes))
    else:
        w = np.ones((n, n_genes))
    root = scale / np.sqrt(w)
    G = np.empty((n, n_genes, a))
    U = np.empty((n, n_sgrna, c))
    q = np.zeros((n, n_genes))
    _proposal_kernel(
        f.LSinvT, f.LDinvT, f.DinvB, f.gene_of_guide, fit.G, fit.U, zG, zU, root, G, U, q
    )
    quad = q / w  # Mahalanobis distance in units of the scale matrix
    base = -0.5 * (dim * np.log(scale**2) - f.logdet)
    if np.isfinite(df):
        logq = (
            gammaln((df + dim) / 2)
            - gammaln(df / 2)
            - dim / 2 * np.log(df * np.pi)
            + base
            - (df + dim) / 2 * np.log1p(quad / df)
        )
    else:
        logq = -dim / 2 * np.log(2 * np.pi) + base - quad / 2
    return G, U, logq


@numba.njit(cache=True)
def _proposal_kernel(  # noqa: PLR0913
    LSinvT: np.ndarray,
    LDinvT: np.ndarray,
    DinvB: np.ndarray,
    gene_of_guide: np.ndarray,
    G0: np.ndarray,
    U0: np.ndarray,
    zG: np.ndarray,
    zU: np.ndarray,
    root: np.ndarray,
    G: np.ndarray,
    U: np.ndarray,
    q: np.ndarray,
) -> None:
    """`sample_proposal`'s draws from standard normals, in one pass (filled in place).

    ``G = G0 + root * dG``, ``U = U0 + root[gene] * dU`` with ``(dG, dU) =
    LaplaceFactor.transform(zG, zU)``, and ``q`` (zeros in) the squared norm of each
    gene's ``z``. The NumPy form of the same (`LaplaceFactor.transform`) made
    temporaries of every product: 12.6 of a genome-wide stage 2's 99 CPU seconds went to
    drawing proposals.
    """
    n, n_genes, a = zG.shape
    n_sgrna, c = zU.shape[1], zU.shape[2]
    dG = np.empty((n_genes, a))
    for i in range(n):
        for j in range(n_genes):
            r = root[i, j]
            qq = 0.0
            for p in range(a):
                acc = 0.0
                for t in range(a):
                    acc += LSinvT[j, p, t] * zG[i, j, t]
                dG[j, p] = acc
                G[i, j, p] = G0[j, p] + r * acc
                qq += zG[i, j, p] * zG[i, j, p]
            q[i, j] += qq
        for k in range(n_sgrna):
            j = gene_of_guide[k]
            r = root[i, j]
            qq = 0.0
            for p in range(c):
                acc = 0.0
                for t in range(c):
                    acc += LDinvT[k, p, t] * zU[i, k, t]
                for t in range(a):
                    acc -= DinvB[k, p, t] * dG[j, t]
                U[i, k, p] = U0[k, p] + r * acc
                qq += zU[i, k, p] * zU[i, k, p]
            q[i, j] += qq


def _inverse_normal_cdf(u: np.ndarray) -> np.ndarray:
    """``ndtri(u)``, with points at 0 or 1 (a shifted point can land on 0) moved inside."""
    from scipy.special import ndtri

    return ndtri(np.clip(u, 1e-300, 1.0 - 1e-16, out=u))
