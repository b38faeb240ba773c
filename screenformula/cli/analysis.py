"""The steps ``screenformula test`` and ``screenformula fit`` share: fit and keep, write.

Both fit a model, save the fit at once (kept whatever fails later, with a hint of how to
finish), say what the fit kept and, on stderr even with ``--quiet``, when the posterior
cannot be trusted (which quantity failed which check, and the flags or config keys that
fix it), then write each contrast's gene table and figures, and a log of the run. The
hit counts they print say which delta they used and, for a fit that failed its checks,
that the hits are provisional. The commands differ only in how they build the model and
which contrasts they take.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from screenformula.cli.outputs import OutputSet, write_tsv
from screenformula.errors import ScreenDataError, ScreenFormulaError

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from screenformula.inference.registry import InferenceMethod
    from screenformula.io.screen_data import ScreenData
    from screenformula.model import ScreenModel
    from screenformula.results.contrasts import ContrastResult
    from screenformula.results.diagnostics import Convergence, Wording
    from screenformula.results.fit import ScreenFit

__all__ = [
    "check_samples_have_reads",
    "dask_client",
    "distributed_options",
    "describe_data",
    "fit_and_keep",
    "hit_lines",
    "run_log",
    "stage1_options",
    "warn_convergence",
    "write_gene_outputs",
    "write_log",
]


def check_samples_have_reads(data: ScreenData, fix: Callable[[str], str]) -> None:
    """Stop, naming the sample, when a sample of ``data`` has no reads at all.

    Whatever the normalisation: such a sample is a wrong column or a failed library, and
    a model would read it as every gene lost.

    Parameters
    ----------
    data : ScreenData
        The samples the command will model.
    fix : callable
        Sample name -> what the user can do about it, in this command's terms.
    """
    depth = data.depth
    empty = [str(s) for s in depth.index[depth.to_numpy() <= 0]]
    if not empty:
        return
    source = Path(data.source).name if data.source else "count table"
    more = f" (and {len(empty) - 1} more: {', '.join(map(repr, empty[1:4]))})" if empty[1:] else ""
    raise ScreenDataError(
        f"{source}: sample {empty[0]!r}{more} has no reads (every count is 0): check that "
        f"column, or {fix(empty[0])}"
    )


@contextmanager
def dask_client(address: str | None) -> Iterator[Any]:
    """A Dask client of the scheduler at ``address`` (None: no Dask), closed afterwards.

    Raises the engine's one-line errors when Dask is not installed or no scheduler answers
    (`screenformula.inference.executors.connect`, a short timeout).
    """
    if not address:
        yield None
        return
    from screenformula.inference.executors import connect

    client = connect(address)
    try:
        yield client
    finally:
        client.close()


def method_for(model: ScreenModel, method: str) -> InferenceMethod:
    """The inference method ``method`` names, or the one ``auto`` chooses for ``model``."""
    from screenformula.inference.registry import choose_method, get_method

    if method != "auto":
        return get_method(method)
    return choose_method(model.data.n_genes, model.spec.effects_per_gene, model.spec.guide_states)[
        0
    ]


def distributed_options(
    model: ScreenModel,
    method: str,
    client: Any,
    checkpoint: Path,
    force: bool,
    scheduler_flag: str,
) -> dict[str, Any]:
    """``fit`` keywords for a Dask client and a checkpoint, when the method takes them.

    The two-stage engine gets ``checkpoint`` (a folder beside the outputs, resumed by
    rerunning the command; ``force`` starts over) and the client; other methods get
    neither, and a scheduler given for them is an error naming ``scheduler_flag``.
    """
    chosen = method_for(model, method)
    if not chosen.resumable:
        if client is not None:
            why = f" (auto chose {chosen.name} for {model.data.n_genes:,} genes)"
            raise ScreenFormulaError(
                f"{scheduler_flag} runs the two-stage engine's stage 2 on Dask: it needs "
                f"method two-stage, not {chosen.name}{why if method == 'auto' else ''}"
            )
        return {}
    out: dict[str, Any] = {"checkpoint": checkpoint, "force": force}
    if client is not None:
        out["client"] = client
    return out


def stage1_options(
    model: ScreenModel, method: str, stage1_draws: int | None, setting: str
) -> dict[str, Any]:
    """``fit`` keywords giving the two-stage engine's stage 1 ``stage1_draws`` draws and warm-up.

    Empty when ``stage1_draws`` is None. Stage 1 belongs to the two-stage engine: for any
    other method (``auto`` included, when it chooses NUTS for this screen) it is an
    error naming ``setting``, the flag or config key that gave it.
    """
    if stage1_draws is None:
        return {}
    chosen = method_for(model, method)
    if chosen.name != "two-stage":
        why = f" (auto chose {chosen.name} for {model.data.n_genes:,} genes)"
        raise ScreenFormulaError(
            f"{setting} sets the draws of the two-stage engine's stage 1: it needs method "
            f"two-stage, not {chosen.name}{why if method == 'auto' else ''}"
        )
    return {"stage1_draws": stage1_draws, "stage1_tune": stage1_draws}


def describe_data(data: ScreenData, log: Path) -> str:
    """What was read (``repr(data)``), with guides dropped for a missing count in ``log``."""
    text = repr(data)
    if len(data.dropped):
        text = text.replace("(see .dropped)", f"with a missing count (listed in {log})")
    return text


def fit_and_keep(
    model: ScreenModel,
    out: OutputSet,
    fit_path: Path,
    hint: str,
    say: Callable[[str], None],
    wording: Wording,
    **fit_kwargs: Any,
) -> tuple[ScreenFit, pd.DataFrame]:
    """Fit ``model``, stage the fit at ``fit_path`` and keep it if a later step fails.

    Returns the fit and its convergence table; says what the fit kept of its draws, and
    (`warn_convergence`, worded by ``wording``) when its posterior cannot be trusted.
    """
    from screenformula.results.diagnostics import describe_storage

    fit = model.fit(**fit_kwargs)
    fit.save(out.staged(fit_path), overwrite=True)
    out.keep_on_failure(fit_path, hint)
    for line in describe_storage(fit.options):
        say(line)
    warn_convergence(fit, wording)
    return fit, fit.diagnostics(warn=False)


def warn_convergence(fit: ScreenFit, wording: Wording) -> Convergence:
    """Print to stderr (whatever ``--quiet`` says) why the posterior cannot be trusted.

    Which quantity failed which check and what to change, in the command's flags or
    config keys (``wording``). Nothing is printed for a fit that passed its checks.
    """
    verdict = fit.convergence()
    if not verdict.trusted:
        print(f"screenformula: {verdict.message(wording)}", file=sys.stderr, flush=True)
    return verdict


#: ``--call-rule``'s help, for every command that calls hits.
CALL_RULE_HELP = (
    "how a gene is called: 'local' (default), when its own chance of not being changed "
    "beyond --delta is at most --fdr (the list's FDR is then at most --fdr too); 'qvalue', "
    "when the FDR of the list down to it is (more calls, some far weaker)"
)


def hit_lines(name: str, result: ContrastResult) -> list[str]:
    """Per contrast: ``name: 45 hits (40 down, 5 up) at local error <= 0.05, |log2 LFC| > 0.5``.

    The counts are those of ``result.hits()`` and its ``direction`` filter; the line says
    PROVISIONAL when the fit failed its convergence checks (or is approximate). With
    several contrasts each line names its contrast after ``name``; an empty ``name``
    names each line by its contrast only.
    """
    from screenformula.results.contrasts import call_text

    s = result.settings
    why = ""
    if result.provisional:
        approximate = result.convergence is not None and result.convergence.approximate
        why = ": PROVISIONAL, " + (
            "the posterior is approximate"
            if approximate
            else "the fit failed its convergence checks (see above)"
        )
    lines = []
    for c in result.contrasts:
        genes = result.genes[result.genes["contrast"] == c.label]
        hit = genes["hit"].astype(bool)
        down = int((hit & (genes["direction"] == "down")).sum())
        up = int((hit & (genes["direction"] == "up")).sum())
        label = (
            c.label if not name else name if len(result.contrasts) == 1 else f"{name} ({c.label})"
        )
        lines.append(
            f"{label}: {int(hit.sum())} hits ({down} down, {up} up) at {call_text(s)}, "
            f"|log2 LFC| > {s['delta']:g}{why}"
        )
    return lines


def write_gene_outputs(
    genes: pd.DataFrame, out: OutputSet, table: Path, volcano: Path, rank: Path
) -> None:
    """Stage a contrast's gene table (tab-separated) and its volcano and rank plots."""
    from screenformula.plotting import rank_plot, volcano_plot

    write_tsv(genes, out.staged(table))
    volcano_plot(genes, path=out.staged(volcano))
    rank_plot(genes, path=out.staged(rank))


def run_log(
    fit: ScreenFit, diagnostics: pd.DataFrame, started: float, **fields: Any
) -> dict[str, Any]:
    """The JSON log of a run: ``fields``, then the method, options, storage and checks."""
    from screenformula.results.diagnostics import describe_storage

    return {
        **fields,
        "method": fit.method,
        "options": fit.options,
        "storage": describe_storage(fit.options),
        "divergences": diagnostics.attrs.get("divergences"),
        "convergence_problems": diagnostics.attrs.get("problems", []),
        "provisional": fit.convergence().provisional,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def write_log(log: dict[str, Any], out: OutputSet, path: Path) -> None:
    """Stage the JSON log."""
    out.staged(path).write_text(json.dumps(log, indent=1, default=str) + "\n")
