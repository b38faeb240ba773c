"""``screenformula fit CONFIG.yaml``: a whole analysis from one validated config file."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from screenformula.cli.analysis import (
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
from screenformula.errors import ScreenFormulaError
from screenformula.inference.registry import method_names
from screenformula.inference.two_stage.checkpoint import remove_checkpoint
from screenformula.io.advice import Wording
from screenformula.results.contrast_core import DEFAULT_DELTA
from screenformula.spec.replicate_scale import DEFAULT_REPLICATE_SCALE

if TYPE_CHECKING:
    from collections.abc import Callable

    from screenformula.io.screen_data import ScreenData
    from screenformula.model import ScreenModel

EXAMPLE = """\
counts: counts.tsv            # MAGeCK or long count table (paths relative to this file)
samples: samples.tsv          # the sample sheet (below)
formula: "count ~ 1 + condition + (1 + condition | gene) + (1 + condition | gene:sgrna)"
dispersion: trend             # trend | trend-sample | sgrna | shared | "alpha ~ 1 + (1 | sgrna)"
replicate_scale: condition    # condition (each replicate's own effect scale) | none
guide_states: none            # none | majority (guides that work or fail; two-stage) | any
pool: auto                    # auto | joint | offset | covariate | none
size_factors: median          # median | total | control | none
nan: error                    # a missing count: error | drop (its sgRNA)
priors:
  b: {name: StudentT, args: {nu: 5, mu: 0, sigma: 1}}
fit: {method: nuts, draws: 1000, tune: 1000, chains: 4, seed: 1}
contrasts:
  - {factor: condition, ref: control, delta: 0.5}
output: results/
"""

#: The sample sheet of `EXAMPLE` (tab- or space-separated; ``pool``: plasmid / T0 samples).
EXAMPLE_SHEET = """\
sample  condition  pool
P0      plasmid    true
C1      control    false
C2      control    false
T1      drug       false
T2      drug       false
"""

#: ``screenformula fit --help``: the example config, its sample sheet, and how to check it.
HELP = f"""\
Example config (analysis.yaml):

{EXAMPLE}
samples.tsv (tab- or space-separated; pool: true for the plasmid / T0 samples):

{EXAMPLE_SHEET}
counts.tsv: sgRNA id, gene, then one count column per sample (P0 C1 C2 T1 T2).

Every setting, the data, the model and the contrasts are checked before the fit
starts; --check stops there (nothing is fitted or written).
"""

#: The settings a data error may suggest, as config keys.
WORDING: Wording = {
    "size_factors": lambda value: f"size_factors: {value} in the config",
    "nan": lambda value: f"nan: {value} in the config",
    "controls": lambda _: "controls: in the config (a gene label, sgRNA ids or a file of them)",
    "leave_out": lambda sample: f"remove {sample!r} from the count table and the sample sheet",
}


#: The settings that help a fit converge, as config keys.
CONVERGENCE_WORDING = {
    "method": lambda v: f"fit: {{method: {v}}} in the config",
    "draws": lambda v: f"fit: {{draws: {v}, tune: {v}}} in the config",
    "target_accept": lambda v: f"fit: {{target_accept: {v}}} in the config",
    "chains": lambda v: f"fit: {{chains: {v}}} in the config",
    "stage1_draws": lambda v: f"fit: {{stage1_draws: {v}}} in the config",
}


class PriorConfig(BaseModel):
    """A prior: a PyMC distribution name and its parameters."""

    model_config = ConfigDict(extra="forbid")
    name: str
    args: dict[str, float] = Field(default_factory=dict)


class FitConfig(BaseModel):
    """How to fit."""

    model_config = ConfigDict(extra="forbid")
    method: str = "auto"
    draws: int = Field(1000, gt=0)
    tune: int = Field(1000, ge=0)
    chains: int = Field(4, gt=0)
    seed: int | None = None
    cores: int | None = Field(None, gt=0)
    target_accept: float | None = Field(None, gt=0, lt=1)  # None: the method's default
    stage1_draws: int | None = Field(None, gt=0)

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value not in method_names():
            raise ValueError(f"must be one of {', '.join(method_names())}")
        return value

    @model_validator(mode="after")
    def _stage1(self) -> FitConfig:
        if self.stage1_draws is not None and self.method not in ("auto", "two-stage"):
            raise ValueError(
                "stage1_draws sets the draws of the two-stage engine's stage 1: it needs "
                f"method two-stage (or auto), not {self.method}"
            )
        return self


class ContrastConfig(BaseModel):
    """One contrast to report: every level of ``factor`` against ``ref``, or ``a`` vs ``b``.

    ``delta`` is the minimum |log2 LFC| a hit must exceed (default 0.5, as ``screenformula
    test --delta`` and Python's ``fit.contrast()``); ``fdr`` the Bayesian FDR target;
    ``call_rule`` how a gene is called (``"local"``: its own local error is at most ``fdr``;
    ``"qvalue"``: its q-value is; as ``screenformula test --call-rule``).
    """

    model_config = ConfigDict(extra="forbid")
    factor: str = "treatment"
    ref: str | None = None
    a: str | None = None
    b: str | None = None
    delta: float = Field(DEFAULT_DELTA, ge=0)
    fdr: float = Field(0.05, gt=0, lt=1)
    call_rule: Literal["local", "qvalue"] = "local"
    name: str | None = None


class ScreenEntry(BaseModel):
    """One screen of several: its count table, and its own sample sheet if it has one."""

    model_config = ConfigDict(extra="forbid")
    counts: Path
    name: str | None = None
    samples: Path | None = None


class AnalysisConfig(BaseModel):
    """The whole analysis (see `EXAMPLE`).

    ``screens`` (instead of ``counts``) fits several screens with the same settings, each
    into its own folder ``output/<name>/``: a list of count tables (``{counts:, name:,
    samples:}``), or a folder whose count tables all share the ``samples`` sheet.
    ``scheduler`` (``tcp://HOST:8786``) runs the two-stage engine's stage 2 on that Dask
    cluster.
    """

    model_config = ConfigDict(extra="forbid")
    counts: Path | None = None
    screens: list[ScreenEntry] | Path | None = None
    scheduler: str | None = None
    samples: Path | None = None
    formula: str
    family: str = "negativebinomial"
    dispersion: str = "trend"
    replicate_scale: Literal["none", "condition"] = DEFAULT_REPLICATE_SCALE
    guide_states: Literal["none", "any", "majority"] = "none"
    pool: str | None = "auto"
    priors: dict[str, PriorConfig | float] = Field(default_factory=dict)
    lkj_eta: float = Field(3.0, gt=0)
    reference: dict[str, str] = Field(default_factory=dict)
    gene_groups: Path | None = None
    controls: str | Path | None = None
    size_factors: Literal["median", "total", "control", "none"] = "median"
    nan: Literal["error", "drop"] = "error"
    fit: FitConfig = Field(default_factory=FitConfig)
    contrasts: list[ContrastConfig] = Field(default_factory=lambda: [ContrastConfig()])
    output: Path = Path("screenformula-output")

    @field_validator("screens", mode="before")
    @classmethod
    def _plain_paths(cls, value: Any) -> Any:
        if isinstance(value, list):  # a bare path stands for {counts: path}
            return [{"counts": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _one_source(self) -> AnalysisConfig:
        if (self.counts is None) == (self.screens is None):
            raise ValueError(
                "give counts: (one screen) or screens: (a list of count tables, or a folder "
                "of them), not both"
                if self.counts is not None
                else "counts: or screens: is required"
            )
        return self

    @field_validator("pool")
    @classmethod
    def _pool(cls, value: str | None) -> str | None:
        if value in (None, "none", "None"):
            return None
        if value not in ("auto", "joint", "offset", "covariate"):
            raise ValueError("must be auto, joint, offset, covariate or none")
        return value


def load_config(path: Path) -> AnalysisConfig:
    """Read and validate a config; relative paths are taken from the config's folder."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ScreenFormulaError(f"no such config file: {path}") from None
    except yaml.YAMLError as err:
        raise ScreenFormulaError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ScreenFormulaError(f"{path}: expected a mapping of settings")
    try:
        config = AnalysisConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ScreenFormulaError(f"{path}: {where}: {first['msg']}") from None
    base = path.parent
    for field in ("counts", "samples", "gene_groups", "output"):
        value = getattr(config, field)
        if value is not None and not Path(value).is_absolute():
            setattr(config, field, base / value)
    if isinstance(config.controls, str) and (base / config.controls).is_file():
        config.controls = base / config.controls
    if isinstance(config.screens, Path):
        folder = config.screens if config.screens.is_absolute() else base / config.screens
        config.screens = screens_in(folder, path)
    elif config.screens is not None:
        for entry in config.screens:
            for field in ("counts", "samples"):
                value = getattr(entry, field)
                if value is not None and not value.is_absolute():
                    setattr(entry, field, base / value)
    return config


#: File name endings of count tables in a folder of screens.
TABLE_SUFFIXES = (".txt", ".tsv", ".csv")
COMPRESSED = (".gz", ".bz2", ".xz")


def screens_in(folder: Path, path: Path) -> list[ScreenEntry]:
    """A screen per count table (``.txt``/``.tsv``/``.csv``, maybe compressed) in ``folder``.

    Each is named after its file (``a.count.txt.gz`` -> ``a.count``), in name order.
    """
    if not folder.is_dir():
        raise ScreenFormulaError(f"{path}: screens: {folder} is not a folder")
    entries = []
    for file in sorted(folder.iterdir()):
        name = file.name
        for suffix in COMPRESSED:
            name = name.removesuffix(suffix)
        if not file.is_file() or name.startswith(".") or not name.endswith(TABLE_SUFFIXES):
            continue
        entries.append(ScreenEntry(counts=file, name=Path(name).stem))
    if not entries:
        raise ScreenFormulaError(
            f"{path}: screens: no count table ({'/'.join(TABLE_SUFFIXES)}) in {folder}"
        )
    return entries


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``fit`` sub-command."""
    p = sub.add_parser(
        "fit",
        help="fit a formula model from a YAML config and report its contrasts",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", type=Path, help="YAML config file")
    p.add_argument(
        "--check",
        action="store_true",
        help="check the config, the data, the model and the contrasts, then stop (no fit, "
        "nothing written)",
    )
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run, wording=WORDING)


def contrast_names(config: AnalysisConfig, path: Path) -> list[str]:
    """Each contrast's output name (its files' prefix): distinct, and a plain file name."""
    names: dict[str, int] = {}
    for i, c in enumerate(config.contrasts):
        name = _contrast_name(c, i)
        if not name or name.startswith(".") or any(x in name for x in "/\\\0"):
            raise ScreenFormulaError(
                f"{path}: contrasts.{i}: {name!r} cannot name output files (give it a name: "
                "of letters, digits, '_' or '-')"
            )
        if name in names:
            raise ScreenFormulaError(
                f"{path}: contrasts.{i}: its outputs would be named {name!r} like those of "
                f"contrasts.{names[name]} (give one of them a name:)"
            )
        names[name] = i
    return list(names)


def prepare(
    config: AnalysisConfig, path: Path, say: Callable[[str], None], log: Path
) -> tuple[ScreenData, ScreenModel]:
    """Read the data, build the model and check every contrast against it: all before a fit.

    Raises
    ------
    ScreenFormulaError
        Naming the config and the setting (``contrasts.1``) when something would fail
        only after the fit.
    """
    import screenformula as sf
    from screenformula.spec.settings import ModelSettings

    data = sf.read_counts(
        config.counts,
        samples=config.samples,
        gene_groups=config.gene_groups,
        controls=config.controls,
        size_factors="none",
        nan=config.nan,
    )
    check_samples_have_reads(data, WORDING["leave_out"])
    data = data.with_size_factors(config.size_factors)
    say(describe_data(data, log))
    settings = ModelSettings.from_dict(
        {
            **config.model_dump(include=set(ModelSettings.keys())),
            "priors": {
                k: (v if isinstance(v, float) else v.model_dump()) for k, v in config.priors.items()
            },
        }
    )
    try:
        model = sf.ScreenModel.from_settings(settings, data)
    except ScreenFormulaError as err:  # formula, priors, pool: settings of the config
        raise ScreenFormulaError(f"{path}: {str(err).splitlines()[0]}") from None
    say(repr(model))
    check_contrasts(config, model, path)
    return data, model


def check_contrasts(config: AnalysisConfig, model: ScreenModel, path: Path) -> None:
    """Resolve each contrast's factor and levels on the model, as the fit will later."""
    from screenformula.results.draws import resolve_contrasts

    given = "contrasts" in config.model_fields_set
    unfitted = SimpleNamespace(model=model)  # what resolving contrasts reads of a fit
    for i, c in enumerate(config.contrasts):
        try:
            with warnings.catch_warnings():  # said again, once, when the fit is summarised
                warnings.simplefilter("ignore")
                resolve_contrasts(unfitted, c.factor, ref=c.ref, a=c.a, b=c.b)  # type: ignore[arg-type]
        except ScreenFormulaError as err:
            where = f"contrasts.{i}" if given else f"the default contrast (factor {c.factor!r})"
            hint = "" if given else "; set contrasts: in the config"
            raise ScreenFormulaError(f"{path}: {where}: {err}{hint}") from None


def run(args: argparse.Namespace, say: Any) -> int:
    """Run ``screenformula fit``."""
    config = load_config(args.config)
    contrast_names(config, args.config)
    if config.screens is not None:
        return run_screens(config, args, say)
    if args.check:
        check_one(config, args, say)
        return 0
    with dask_client(config.scheduler) as client:
        fit_one(config, args, say, client)
    return 0


def output_paths(config: AnalysisConfig, names: list[str]) -> list[Path]:
    """The files a fit of ``config`` writes: fit, log, then each contrast's three."""
    out_dir = config.output
    paths = [out_dir / "fit.nc", out_dir / "log.json"]
    for name in names:
        paths += [
            out_dir / f"{name}.genes.tsv",
            out_dir / f"{name}.volcano.png",
            out_dir / f"{name}.rank.png",
        ]
    return paths


def check_one(config: AnalysisConfig, args: argparse.Namespace, say: Any) -> None:
    """``--check``: read, build and check everything; fit and write nothing."""
    paths = output_paths(config, contrast_names(config, args.config))
    _, model = prepare(config, args.config, say, paths[1])
    _stage1(config, model, args.config)
    existing = [p for p in paths if p.exists()]
    if existing and not args.force:
        say(f"note: {existing[0]} exists: the fit will need --force")
    say(f"{args.config}: ready to fit (nothing was fitted or written)")


def fit_one(
    config: AnalysisConfig, args: argparse.Namespace, say: Any, client: Any
) -> dict[str, Any]:
    """Fit one screen and write its outputs; returns its genes, hits and seconds.

    A two-stage fit keeps its checkpoint in ``output/checkpoint`` until the outputs are
    written (rerunning the command resumes it; ``--force`` starts over).
    """
    started = time.perf_counter()
    names = contrast_names(config, args.config)
    out_dir = config.output
    paths = output_paths(config, names)
    checkpoint = out_dir / "checkpoint"
    with OutputSet(paths, force=args.force) as out:
        data, model = prepare(config, args.config, say, paths[1])
        f = config.fit
        extra = _stage1(config, model, args.config)
        extra.update(
            distributed_options(
                model, f.method, client, checkpoint, args.force, "scheduler: in the config"
            )
        )
        fit, diagnostics = fit_and_keep(
            model,
            out,
            paths[0],
            f"; finish with: screenformula contrast {shlex.quote(str(paths[0]))} -n PREFIX "
            "(per contrast)",
            say,
            CONVERGENCE_WORDING,
            method=f.method,
            draws=f.draws,
            tune=f.tune,
            chains=f.chains,
            cores=f.cores,
            random_seed=f.seed,
            target_accept=f.target_accept,
            progress=not args.quiet,
            summary_deltas=tuple(c.delta for c in config.contrasts),
            **extra,
        )
        summary = {}
        for name, c in zip(names, config.contrasts, strict=True):
            result = fit.contrast(
                c.factor,
                ref=c.ref,
                a=c.a,
                b=c.b,
                delta=c.delta,
                fdr_target=c.fdr,
                call_rule=c.call_rule,
            )
            write_gene_outputs(
                result.genes,
                out,
                out_dir / f"{name}.genes.tsv",
                out_dir / f"{name}.volcano.png",
                out_dir / f"{name}.rank.png",
            )
            summary[name] = int(result.genes["hit"].sum())
            for line in hit_lines(name, result):
                say(line)
        log = run_log(
            fit,
            diagnostics,
            started,
            config=json.loads(config.model_dump_json()),
            dropped=data.dropped.to_dict("records"),
            hits=summary,
        )
        write_log(log, out, paths[1])
        out.commit()
    remove_checkpoint(checkpoint)  # the run is finished
    say(f"wrote {len(paths)} files to {out_dir}")
    return {"genes": data.n_genes, "hits": sum(summary.values())}


#: Columns of the many-screens summary (``output/summary.tsv``).
SUMMARY_COLUMNS = ["screen", "status", "genes", "hits", "seconds", "error"]


def screen_configs(config: AnalysisConfig) -> list[tuple[str, AnalysisConfig]]:
    """Each screen's own config: its counts (and sheet), output in ``output/<name>/``."""
    out, seen = [], set()
    for i, entry in enumerate(config.screens or []):
        name = entry.name or Path(entry.counts).name.split(".")[0] or f"screen{i + 1}"
        if name in seen or name.startswith(".") or any(x in name for x in "/\\\0"):
            raise ScreenFormulaError(
                f"screens.{i}: {name!r} cannot name its own output folder (give it a "
                "distinct name:)"
            )
        seen.add(name)
        one = config.model_copy(
            update={
                "counts": entry.counts,
                "samples": entry.samples or config.samples,
                "screens": None,
                "output": config.output / name,
            }
        )
        out.append((name, one))
    return out


def run_screens(config: AnalysisConfig, args: argparse.Namespace, say: Any) -> int:
    """Fit every screen of ``config`` on one executor; one failure does not stop the others.

    Writes ``output/summary.tsv`` (screen, status, genes, hits, seconds, error) and prints
    it; exit status 1 when a screen failed (each failure is one line in the table).
    """
    from screenformula.inference.progress import Bar, stage_line
    from screenformula.io.atomic import write_text_atomic

    screens = screen_configs(config)
    if args.check:
        for name, one in screens:
            say(f"== {name}")
            check_one(one, args, say)
        return 0
    rows = []
    with dask_client(config.scheduler) as client:
        with Bar(len(screens), "screens", enabled=not args.quiet) as bar:
            for k, (name, one) in enumerate(screens):
                stage_line(f"screen {k + 1}/{len(screens)}: {name}", not args.quiet)
                start = time.perf_counter()
                row = {"screen": name, "status": "ok", "genes": None, "hits": None}
                try:
                    row.update(fit_one(one, args, say, client))
                except Exception as err:  # noqa: BLE001 - reported in the summary
                    row.update(status="failed", error=_error_line(err))
                row["seconds"] = round(time.perf_counter() - start, 1)
                rows.append(row)
                stage_line(
                    f"screen {k + 1}/{len(screens)}: {name}: {row['status']} in "
                    f"{row['seconds']:g} s" + (f": {row['error']}" if row.get("error") else ""),
                    not args.quiet,
                )
                bar.advance()
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    config.output.mkdir(parents=True, exist_ok=True)
    summary = config.output / "summary.tsv"
    write_text_atomic(summary, table.to_csv(sep="\t", index=False))
    say(table.astype(object).where(table.notna(), "").to_string(index=False))
    failed = int((table["status"] != "ok").sum())
    if failed:
        print(
            f"screenformula: {failed} of {len(table)} screens failed (see {summary})",
            file=sys.stderr,
            flush=True,
        )
        return 1
    say(f"wrote {summary}")
    return 0


def _error_line(err: BaseException) -> str:
    """One line for a failed screen: a user error's own line, else the internal error."""
    from screenformula.io.advice import AdvisedDataError

    if isinstance(err, AdvisedDataError):
        return err.worded(WORDING)
    first = str(err).splitlines()[0] if str(err) else ""
    if isinstance(err, ScreenFormulaError):
        return first or type(err).__name__
    if isinstance(err, OSError):
        return f"{err.strerror or type(err).__name__}: {err.filename or first}"
    return f"internal error: {type(err).__name__}: {first}"


def _stage1(config: AnalysisConfig, model: ScreenModel, path: Path) -> dict[str, Any]:
    """``fit`` keywords of ``fit: {stage1_draws: N}`` (an error when the method has no stage 1)."""
    try:
        return stage1_options(model, config.fit.method, config.fit.stage1_draws, "fit.stage1_draws")
    except ScreenFormulaError as err:
        raise ScreenFormulaError(f"{path}: {err}") from None


def _contrast_name(c: ContrastConfig, i: int) -> str:
    if c.name:
        return c.name
    if c.a and c.b:
        return f"{c.factor}_{c.a}_vs_{c.b}"
    return f"{c.factor}_vs_{c.ref}" if c.ref else f"{c.factor}_{i + 1}"
