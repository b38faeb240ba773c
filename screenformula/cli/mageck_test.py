"""``screenformula test``: a drop-in for ``mageck test`` that fits the screen model."""

from __future__ import annotations

import argparse
import re
import shlex
import time
from pathlib import Path

import pandas as pd

from screenformula.cli.analysis import (
    CALL_RULE_HELP,
    check_samples_have_reads,
    dask_client,
    describe_data,
    distributed_options,
    fit_and_keep,
    hit_lines,
    run_log,
    stage1_options,
    write_gene_outputs,
    write_log,
)
from screenformula.cli.outputs import OutputSet
from screenformula.errors import ScreenDataError, ScreenFormulaError
from screenformula.inference.registry import METHODS, get_method, method_names
from screenformula.inference.two_stage.checkpoint import remove_checkpoint
from screenformula.io.advice import Wording
from screenformula.results.contrast_core import CALL_RULES, DEFAULT_DELTA
from screenformula.spec.formula import SCREEN_FORMULA
from screenformula.spec.guide_states import GUIDE_STATES
from screenformula.spec.replicate_scale import DEFAULT_REPLICATE_SCALE, REPLICATE_SCALE_MODES

FORMULA = SCREEN_FORMULA
#: Several treated groups (-t NAME=... given more than once): JACKS's design, a gene effect
#: per group and one efficacy per guide shared by every group (the yes/no ``treated``
#: column); on the JACKS AML lines it called more than each line alone and than MAGeCK
#: (`benchmarks/results/panel.md`, ``trend-sharedeff``).
GROUPS_FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treated | gene:sgrna)"
#: A group name: it names a level of the model and the group's output files.
GROUP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
SUFFIXES = (
    ".gene_summary.txt",
    ".sgrna_summary.txt",
    ".genes.tsv",
    ".fit.nc",
    ".volcano.png",
    ".rank.png",
    ".log",
)
#: The settings a data error may suggest, as this command's flags.
WORDING: Wording = {
    "size_factors": lambda value: f"--norm-method {value}",
    "nan": lambda value: f"--nan {value}",
    "controls": lambda _: "--control-sgrna FILE or --control-gene FILE",
    "leave_out": lambda sample: f"leave {sample!r} out of -t/-c/--pool",
}
#: The settings that help a fit converge, as this command's flags.
CONVERGENCE_WORDING = {
    "method": lambda v: f"--method {v}",
    "draws": lambda v: f"--draws {v} --tune {v}",
    "target_accept": lambda v: f"--target-accept {v}",
    "chains": lambda v: f"--chains {v}",
    "stage1_draws": lambda v: f"--stage1-draws {v}",
}
#: The flags that give the samples each role.
ROLE_FLAGS = ("-t/--treatment-id", "-c/--control-id", "--pool")
#: ``mageck test`` flags this command refuses, each with what to use instead.
MAGECK_ONLY = {
    "--day0-label": (
        "give the day-0 samples with -c/--control-id and the later ones with "
        "-t/--treatment-id (a plasmid or T0 reference with --pool)",
        "?",
    ),
    "--paired": (
        "samples are not paired by order; all replicates are fitted together (for a "
        "pair effect, use `screenformula fit` with a pair column and a (1 | pair) term)",
        0,
    ),
    "--pdf-report": (
        "PREFIX.volcano.png and PREFIX.rank.png are written, `screenformula plot "
        "PREFIX.fit.nc --kind forest -o FILE.pdf` draws a PDF, and in Python "
        "screenformula.report.write_report(fit, result, 'report.html') writes a report",
        0,
    ),
}


class _Refused(argparse.Action):
    """A ``mageck test`` flag: exit 2 with one line saying what to use instead."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        advice = MAGECK_ONLY[self.option_strings[0]][0]
        parser.exit(2, f"screenformula: error: {option_string} is not supported: {advice}\n")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``test`` sub-command."""
    p = sub.add_parser(
        "test",
        help="treatment vs control, MAGeCK-compatible output (like `mageck test`)",
        description=(
            "Fit the screen model (treatment vs control, correlated gene and guide effects, "
            "guide dispersions shrunk toward an abundance trend, the pool when --pool is "
            "given) and write MAGeCK-compatible "
            "PREFIX.gene_summary.txt / PREFIX.sgrna_summary.txt, PREFIX.genes.tsv, "
            "PREFIX.fit.nc, figures and PREFIX.log."
        ),
    )
    p.add_argument("-k", "--count-table", required=True, help="MAGeCK count table (tsv/csv/.gz)")
    p.add_argument(
        "-t",
        "--treatment-id",
        required=True,
        action="append",
        metavar="[NAME=]IDS",
        help="treated samples: names or 0-based indices, comma-separated. Give it once per "
        "treated group, each named (-t MOLM=M1,M2 -t MV411=V1,V2), to fit every group "
        "against the controls in one model: a gene effect per group, one efficacy per guide "
        "shared by all groups (JACKS's design); outputs then have one "
        "PREFIX.NAME_vs_control.gene_summary.txt / .sgrna_summary.txt per group",
    )
    p.add_argument(
        "-c", "--control-id", required=True, help="control samples: names or 0-based indices"
    )
    p.add_argument(
        "-n", "--output-prefix", default="sample1", help="output prefix (default: sample1)"
    )
    p.add_argument(
        "--pool", help="pool (plasmid / T0) samples: names or indices; enables the joint pool model"
    )
    p.add_argument(
        "--norm-method", choices=["median", "total", "control", "none"], default="median"
    )
    p.add_argument(
        "--nan",
        choices=["error", "drop"],
        default="error",
        help="a missing count (empty, NA): stop with an error naming it (default), or drop "
        "the sgRNA (listed in PREFIX.log)",
    )
    p.add_argument(
        "--replicate-scale",
        choices=REPLICATE_SCALE_MODES,
        default=DEFAULT_REPLICATE_SCALE,
        help="condition (default): each replicate of a treated group gets its own factor on "
        "the treatment effects (replicates that went through more doublings deplete "
        "further), and the reported effect is the replicates' geometric mean's; none: one "
        "effect for every replicate",
    )
    p.add_argument(
        "--guide-states",
        choices=("auto", *GUIDE_STATES),
        default="auto",
        help="auto (default): majority with no --pool, method auto or two-stage and no "
        "--keep-guide-draws yes, else none; majority: each guide works or fails (a failing "
        "guide shows the screen's typical effect), at most (k-1)//2 of a gene's k guides "
        "failing, so one outlying guide cannot carry a gene, summed by the two-stage engine "
        "(an exact grid with one -t group, a mixture of Laplace approximations with "
        "several); any: each guide fails on its own; none: every guide works",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--control-sgrna", help="file of control sgRNA ids, one per line")
    group.add_argument("--control-gene", help="file of control gene labels, one per line")
    p.add_argument(
        "--method",
        choices=method_names(),
        default="auto",
        help="auto (default): nuts up to 2,000 genes (4,000 gene-level effects: with several "
        "-t groups each gene has one per group and one more), else two-stage; "
        + "; ".join(f"{m.name}: {m.description}" for m in METHODS)
        + " (approx = advi)",
    )
    p.add_argument(
        "--max-iterations",
        type=int,
        default=None,
        help="approx: at most this many optimisation steps (default 10000; stops earlier "
        "when converged)",
    )
    p.add_argument(
        "--stage1-draws",
        type=int,
        default=None,
        metavar="N",
        help="two-stage: draws and warm-up per chain of stage 1 (NUTS on a gene subsample; "
        "default: up to 10,000 draws, stopping once converged, after 1,000 warm-up); raise "
        "it when the fit says its first stage needs more draws",
    )
    p.add_argument(
        "--keep-guide-draws",
        choices=["auto", "yes", "no"],
        default="auto",
        help="keep every guide-level draw in PREFIX.fit.nc (auto: when they take under about "
        "500 MB); otherwise guide results come from summaries computed during the fit",
    )
    p.add_argument("--draws", type=int, default=1000, help="posterior draws per chain")
    p.add_argument("--tune", type=int, default=1000, help="warm-up draws per chain")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="chains run in parallel")
    p.add_argument(
        "--target-accept",
        type=float,
        default=None,
        help="NUTS target acceptance (default: 0.8 for nuts, 0.9 for two-stage's stage 1); "
        "raise it (0.95) when the fit reports divergent transitions",
    )
    p.add_argument(
        "--delta",
        type=float,
        default=DEFAULT_DELTA,
        help=f"minimum |log2 LFC| a hit must exceed (default {DEFAULT_DELTA:g}, as in Python's "
        "fit.contrast(); 0 calls any gene whose sign is known)",
    )
    p.add_argument("--fdr", type=float, default=0.05, help="Bayesian FDR target for hits")
    p.add_argument("--call-rule", choices=CALL_RULES, default=CALL_RULES[0], help=CALL_RULE_HELP)
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="two-stage: run stage 2 on the Dask cluster of this scheduler (tcp://HOST:8786; "
        "needs pip install 'screenformula[dask]')",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace existing outputs; two-stage: start over instead of resuming from "
        "PREFIX.checkpoint (kept while a run is unfinished)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    for flag, (_, nargs) in MAGECK_ONLY.items():
        p.add_argument(flag, nargs=nargs, action=_Refused, help=argparse.SUPPRESS)
    p.set_defaults(run=run, wording=WORDING)


def resolve_samples(spec: str, columns: list[str], flag: str) -> list[str]:
    """Sample names from names or 0-based column indices (as MAGeCK accepts)."""
    names = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in columns:
            names.append(item)
        elif item.isdigit() and int(item) < len(columns):
            names.append(columns[int(item)])
        else:
            raise ScreenDataError(
                f"{flag} {item!r}: no such sample in the count table "
                f"(samples: {', '.join(columns)})"
            )
    if not names:
        raise ScreenDataError(f"{flag} names no sample")
    return names


def run(args: argparse.Namespace, say) -> int:  # noqa: ANN001 - say is a print-like callable
    """Run ``screenformula test``."""
    import screenformula as sf

    started = time.perf_counter()
    extra = {}
    if args.max_iterations is not None:
        keyword = None if args.method == "auto" else get_method(args.method).iteration_keyword
        if keyword is None:
            raise ScreenFormulaError(f"--max-iterations does not apply to --method {args.method}")
        if args.max_iterations < 1:
            raise ScreenFormulaError("--max-iterations must be at least 1")
        extra[keyword] = args.max_iterations
    if args.stage1_draws is not None:
        if args.method not in ("auto", "two-stage"):
            raise ScreenFormulaError(f"--stage1-draws does not apply to --method {args.method}")
        if args.stage1_draws < 1:
            raise ScreenFormulaError("--stage1-draws must be at least 1")
    if args.target_accept is not None and not 0 < args.target_accept < 1:
        raise ScreenFormulaError("--target-accept must lie strictly between 0 and 1")
    keep = {"auto": "auto", "yes": True, "no": False}[args.keep_guide_draws]
    groups = parse_groups(args.treatment_id)
    states = resolve_guide_states(
        args.guide_states, bool(args.pool), args.method, args.keep_guide_draws
    )
    formula = FORMULA if len(groups) == 1 else GROUPS_FORMULA
    prefix = Path(args.output_prefix)
    outputs = [prefix.with_name(prefix.name + s) for s in SUFFIXES]
    if len(groups) > 1:  # a MAGeCK pair per group, named as ContrastResult.to_mageck does
        outputs[:2] = [
            prefix.with_name(f"{prefix.name}.{name}_vs_control{suffix}")
            for name in groups
            for suffix in SUFFIXES[:2]
        ]
    genes_path, fit_path, volcano_path, rank_path, log_path = outputs[-5:]
    checkpoint = prefix.with_name(prefix.name + ".checkpoint")
    with OutputSet(outputs, force=args.force) as out, dask_client(args.scheduler) as client:
        table = sf.read_counts(args.count_table, size_factors="none", nan=args.nan)
        columns = list(map(str, table.samples.index))
        members = {
            name: resolve_samples(spec, columns, "-t/--treatment-id")
            for name, spec in groups.items()
        }
        treated = [sample for ids in members.values() for sample in ids]
        control = resolve_samples(args.control_id, columns, "-c/--control-id")
        pool = resolve_samples(args.pool, columns, "--pool") if args.pool else []
        given = [*treated, *control, *pool]
        twice = sorted({s for s in given if given.count(s) > 1})
        if twice:
            raise ScreenDataError(f"sample {twice[0]!r} is given twice (or in two roles)")
        chosen = pool + control + treated
        level = {sample: name for name, ids in members.items() for sample in ids}
        sheet = pd.DataFrame(
            {
                "sample": chosen,
                "condition": ["pool"] * len(pool)
                + ["control"] * len(control)
                + [level[s] for s in treated],
                "treatment": ["control"] * (len(pool) + len(control)) + [level[s] for s in treated],
                "treated": ["no"] * (len(pool) + len(control)) + ["yes"] * len(treated),
                "pool": [True] * len(pool) + [False] * (len(control) + len(treated)),
            }
        )
        controls = args.control_sgrna or args.control_gene
        data = sf.read_counts(
            args.count_table,
            samples=_sheet_for(sheet, columns),
            controls=controls,
            size_factors="none",
            nan=args.nan,
        )
        data = data.subset(samples=chosen)
        roles = zip(ROLE_FLAGS, (treated, control, pool), strict=True)
        flags = {sample: flag for flag, ids in roles for sample in ids}
        check_samples_have_reads(data, lambda sample: f"leave it out of {flags[sample]}")
        data = data.with_size_factors(args.norm_method)
        say(describe_data(data, log_path))
        model = sf.ScreenModel(
            formula,
            data,
            pool="joint" if pool else None,
            reference={"treatment": "control"},
            replicate_scale=args.replicate_scale,
            guide_states=states,
        )
        say(repr(model))
        extra.update(stage1_options(model, args.method, args.stage1_draws, "--stage1-draws"))
        extra.update(
            distributed_options(model, args.method, client, checkpoint, args.force, "--scheduler")
        )
        fit, diagnostics = fit_and_keep(
            model,
            out,
            fit_path,
            f"; finish with: screenformula contrast {shlex.quote(str(fit_path))} --ref control "
            f"--delta {args.delta:g} --fdr {args.fdr:g} --call-rule {args.call_rule} --mageck "
            f"-n {shlex.quote(str(prefix))}",
            say,
            CONVERGENCE_WORDING,
            method=args.method,
            store_sgrna=keep,
            summary_deltas=(args.delta,),
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            cores=args.threads,
            random_seed=args.seed,
            target_accept=args.target_accept,
            progress=not args.quiet,
            **extra,
        )
        result = fit.contrast(
            "treatment",
            ref="control",
            delta=args.delta,
            fdr_target=args.fdr,
            call_rule=args.call_rule,
        )
        result.to_mageck(out.staged(prefix), overwrite=True)
        write_gene_outputs(result.genes, out, genes_path, volcano_path, rank_path)
        log = run_log(
            fit,
            diagnostics,
            started,
            command="screenformula test",
            count_table=str(args.count_table),
            treatment=treated if len(groups) == 1 else members,
            control=control,
            pool=pool,
            norm_method=args.norm_method,
            nan=args.nan,
            dropped=data.dropped.to_dict("records"),
            formula=formula,
            replicate_scale=args.replicate_scale,
            guide_states=states,
            hits=int(result.genes["hit"].sum()),
            delta=args.delta,
        )
        write_log(log, out, log_path)
        written = out.commit()
    remove_checkpoint(checkpoint)  # the run is finished
    say(f"wrote {', '.join(str(p) for p in written)}")
    top = result.genes.sort_values("rank").head(10)
    shown = ["gene", "lfc", "hdi_low", "hdi_high", "lfsr", "qvalue", "hit", "direction"]
    say(top[(["contrast"] if len(groups) > 1 else []) + shown].to_string(index=False))
    for line in hit_lines("treatment vs control" if len(groups) == 1 else "", result):
        say(line)
    return 0


def resolve_guide_states(given: str, pool: bool, method: str, guide_draws: str = "auto") -> str:
    """``--guide-states``, with ``auto`` resolved.

    ``auto`` is ``majority`` where it applies (no ``--pool``, method auto or two-stage,
    guide draws not asked to be kept): chosen on the panel of real screens
    (``benchmarks/results/panel.md``), where it passes every row against MAGeCK, each
    line alone and several ``-t`` groups in one model (JACKS's design, a mixture of
    Laplace approximations over the states). Else ``none``: the states need the
    two-stage engine and no joint pool likelihood.
    """
    if given != "auto":
        return given
    fits = not pool and method in ("auto", "two-stage") and guide_draws != "yes"
    return "majority" if fits else "none"


def parse_groups(values: list[str]) -> dict[str, str]:
    """The treated groups of the ``-t`` flags: name -> sample ids.

    One ``-t`` is MAGeCK's (its samples form the level ``treatment``; a ``NAME=`` prefix
    is allowed and ignored); several must each be named, with distinct names that are
    neither ``control`` nor ``pool``.
    """
    if len(values) == 1:
        name, sep, spec = values[0].partition("=")
        return {"treatment": spec if sep and GROUP_NAME.fullmatch(name) else values[0]}
    groups: dict[str, str] = {}
    for value in values:
        name, sep, spec = value.partition("=")
        if not sep or not GROUP_NAME.fullmatch(name):
            raise ScreenDataError(
                f"-t/--treatment-id {value!r}: with several treated groups give each as "
                "NAME=IDS (a name of letters, digits, '_', '.', '-'; e.g. -t MOLM=M1,M2)"
            )
        if name in groups or name in ("control", "pool"):
            why = "is given twice" if name in groups else "is a reserved name"
            raise ScreenDataError(f"-t/--treatment-id: the group name {name!r} {why}")
        groups[name] = spec
    return groups


def _sheet_for(sheet: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The sheet extended to every sample of the table (unused ones marked as such)."""
    unused = [c for c in columns if c not in set(sheet["sample"])]
    extra = pd.DataFrame(
        {
            "sample": unused,
            "condition": "unused",
            "treatment": "unused",
            "treated": "no",
            "pool": False,
        }
    )
    return pd.concat([sheet, extra], ignore_index=True)
