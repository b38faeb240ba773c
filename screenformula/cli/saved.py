"""``screenformula contrast`` and ``screenformula plot``: work from a saved fit, no refit."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from screenformula.cli.analysis import CALL_RULE_HELP, hit_lines, warn_convergence
from screenformula.cli.outputs import OutputSet, write_tsv
from screenformula.errors import ScreenFormulaError
from screenformula.io.text import format_names
from screenformula.results.contrast_core import CALL_RULES, DEFAULT_DELTA

PLOTS = ("volcano", "rank", "forest", "group")
#: How to refit a saved fit that failed its checks: with the command that made it.
REFIT_WORDING = {
    "method": lambda v: f"refit with --method {v} (test) or fit: {{method: {v}}} (fit)",
    "draws": lambda v: (
        f"refit with --draws {v} --tune {v} (test) or fit: {{draws: {v}, tune: {v}}} (fit)"
    ),
    "target_accept": lambda v: f"--target-accept {v} (test) or fit: {{target_accept: {v}}} (fit)",
    "chains": lambda v: f"--chains {v} (test) or fit: {{chains: {v}}} (fit)",
    "stage1_draws": lambda v: (
        f"refit with --stage1-draws {v} (test) or fit: {{stage1_draws: {v}}} (fit)"
    ),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``contrast`` and ``plot`` sub-commands."""
    c = sub.add_parser("contrast", help="contrasts from a saved fit (PREFIX.fit.nc)")
    c.add_argument("fit", type=Path, help="a fit saved by `screenformula test/fit`")
    c.add_argument("--factor", default="treatment")
    c.add_argument("--ref", help="reference level (default: the model's)")
    c.add_argument("-a", help="level a of an a-vs-b contrast")
    c.add_argument("-b", help="level b of an a-vs-b contrast")
    c.add_argument(
        "--delta",
        type=float,
        default=DEFAULT_DELTA,
        help=f"minimum |log2 LFC| a hit must exceed (default {DEFAULT_DELTA:g}, as "
        "`screenformula test`; 0 calls any gene whose sign is known)",
    )
    c.add_argument("--fdr", type=float, default=0.05)
    c.add_argument("--call-rule", choices=CALL_RULES, default=CALL_RULES[0], help=CALL_RULE_HELP)
    c.add_argument("-n", "--output-prefix", required=True)
    c.add_argument("--mageck", action="store_true", help="also write MAGeCK-format summaries")
    c.add_argument("--force", action="store_true")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(run=run_contrast)

    p = sub.add_parser("plot", help="a figure from a saved fit")
    p.add_argument("fit", type=Path)
    p.add_argument("--kind", choices=PLOTS, default="volcano")
    p.add_argument("--factor", default="treatment")
    p.add_argument("--ref")
    p.add_argument("--genes", help="comma-separated genes for a forest plot")
    p.add_argument("-o", "--output", type=Path, required=True, help="image file (.png, .pdf, .svg)")
    p.add_argument("--force", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run_plot)


def _contrast(args: argparse.Namespace, fit: Any = None) -> Any:
    import screenformula as sf

    if (args.a is None) != (getattr(args, "b", None) is None):
        raise ScreenFormulaError("-a and -b go together")
    if fit is None:
        fit = sf.load_fit(args.fit)
    result = fit.contrast(
        args.factor,
        ref=args.ref,
        a=getattr(args, "a", None),
        b=getattr(args, "b", None),
        delta=getattr(args, "delta", DEFAULT_DELTA),
        fdr_target=getattr(args, "fdr", 0.05),
        call_rule=getattr(args, "call_rule", CALL_RULES[0]),
    )
    warn_convergence(fit, REFIT_WORDING)
    return result


def run_contrast(args: argparse.Namespace, say: Any) -> int:
    """Run ``screenformula contrast``."""
    prefix = Path(args.output_prefix)
    genes = prefix.with_name(prefix.name + ".genes.tsv")
    paths = [genes]
    guides = prefix.with_name(prefix.name + ".sgrna_summary.txt")
    if args.mageck:
        paths += [prefix.with_name(prefix.name + ".gene_summary.txt"), guides]
    # a fit saved without guide draws or guide summaries (before they existed) has no guides
    with OutputSet(paths, force=args.force, optional=[guides]) as out:
        result = _contrast(args)
        write_tsv(result.genes, out.staged(genes))
        if args.mageck:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                result.to_mageck(out.staged(prefix), overwrite=True)
            if result.sgrna_message:
                say(f"no {guides.name}: {result.sgrna_message}")
        out.commit()
    say(result.genes.sort_values("rank").head(10).to_string(index=False))
    for line in hit_lines("", result):
        say(line)
    return 0


def forest_genes(spec: str | None, known: Sequence[str]) -> list[str] | None:
    """The genes of ``--genes``, each checked to be a gene of the fit (``known``).

    Raises
    ------
    ScreenFormulaError
        ``--genes`` naming no gene, or a gene the fit does not have (with a few it has).
    """
    if spec is None:
        return None
    genes = [g.strip() for g in spec.split(",") if g.strip()]
    if not genes:
        raise ScreenFormulaError("--genes names no gene")
    present = set(known)
    unknown = [g for g in genes if g not in present]
    if unknown:
        examples = ", ".join(list(known)[:3])
        what = "is not a gene" if len(unknown) == 1 else "are not genes"
        raise ScreenFormulaError(
            f"--genes: {format_names(unknown)} {what} of this fit "
            f"({len(present):,} genes, e.g. {examples})"
        )
    return genes


def run_plot(args: argparse.Namespace, say: Any) -> int:
    """Run ``screenformula plot``."""
    import screenformula as sf
    from screenformula import plotting

    args.a = args.b = None
    if args.genes is not None and args.kind != "forest":
        raise ScreenFormulaError(f"--genes is for --kind forest, not --kind {args.kind}")
    with OutputSet([args.output], force=args.force) as out:
        fit = sf.load_fit(args.fit)
        genes = forest_genes(args.genes, [str(g) for g in fit.model.data.gene_names])
        result = _contrast(args, fit)
        target = out.staged(args.output)
        match args.kind:
            case "volcano":
                plotting.volcano_plot(result.genes, path=target)
            case "rank":
                plotting.rank_plot(result.genes, path=target)
            case "forest":
                plotting.forest_plot(result.genes, gene_list=genes, path=target)
            case "group":
                if result.groups.empty:
                    raise ScreenFormulaError("this fit has no gene groups to plot")
                plotting.group_plot(result.groups, path=target)
        out.commit()
    say(f"wrote {args.output}")
    return 0
