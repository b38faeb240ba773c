"""Real public screens bundled with screenformula, each loaded in one call.

Bundled (gzip-compressed, byte-identical to their sources; provenance and licences in
``datasets/data/SOURCES.md``):

- the MAGeCK leukemia demo (HL60 / KBM7, initial vs final; BSD-3),
  :func:`load_mageck_leukemia` and :func:`mageck_reference_output`;
- the HAP1 TKOv3 genome-wide dropout screen of the BAGEL2 tutorial (T0 + 3 x day 18; MIT),
  :func:`load_hap1_tkov3`;
- Hart et al.'s core-essential (CEGv2) and non-essential (NEGv1) human genes (MIT),
  :func:`load_reference_genes`.

:func:`path` gives the file of any of them, for the command line and for readers.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from screenformula._constants import CONDITION, POOL
from screenformula.errors import ScreenDataError
from screenformula.io.screen_data import ScreenData

__all__ = [
    "DATASETS",
    "HAP1_CONTROL_GENES",
    "load_hap1_tkov3",
    "load_mageck_leukemia",
    "load_reference_genes",
    "mageck_reference_output",
    "path",
]

#: Short name -> bundled file name (all under ``screenformula/datasets/data``).
DATASETS: dict[str, str] = {
    "mageck_leukemia_sample": "mageck_leukemia_sample.txt.gz",
    "mageck_leukemia_full": "mageck_leukemia_full.csv.gz",
    "mageck_control_sgrna": "mageck_control_sgrna.txt.gz",
    "mageck_control_gene": "mageck_control_gene.txt.gz",
    "mageck_demo1_gene_summary": "mageck_demo1.gene_summary.txt.gz",
    "mageck_demo1_sgrna_summary": "mageck_demo1.sgrna_summary.txt.gz",
    "mageck_demo1_log": "mageck_demo1.log.gz",
    "hap1_tkov3": "hap1_tkov3_reads.txt.gz",
    "cegv2": "CEGv2.txt.gz",
    "negv1": "NEGv1.txt.gz",
    "sources": "SOURCES.md",
}

#: Gene labels of the HAP1 TKOv3 table that are control guides (non-human targets).
HAP1_CONTROL_GENES: tuple[str, ...] = ("EGFP", "LacZ", "luciferase")

_DATA = "data"


def path(name: str) -> Path:
    """Return the path of a bundled file.

    Parameters
    ----------
    name : str
        A short name from :data:`DATASETS` (e.g. ``"hap1_tkov3"``,
        ``"mageck_leukemia_sample"``, ``"cegv2"``) or a bundled file name
        (e.g. ``"CEGv2.txt.gz"``).

    Returns
    -------
    Path
        The file inside the installed package (gzip-compressed tables can be read directly
        by pandas and by :func:`screenformula.read_counts`).

    Raises
    ------
    ScreenDataError
        If no bundled file has that name.
    """
    filename = DATASETS.get(name, name)
    resource = files(__name__).joinpath(_DATA, filename)
    if not resource.is_file():
        known = ", ".join(sorted(DATASETS))
        raise ScreenDataError(f"no bundled dataset {name!r}: choose one of {known}")
    return Path(str(resource))


def _integer_counts(values: pd.DataFrame, source: str) -> np.ndarray:
    """Round a table of counts to int64, checking that it held whole numbers."""
    raw = values.to_numpy(dtype=float)
    if not np.all(np.isfinite(raw)):
        raise ScreenDataError(f"{source}: missing or non-finite counts")
    rounded = np.rint(raw)
    if np.any(np.abs(raw - rounded) > 1e-6):
        raise ScreenDataError(f"{source}: counts are not whole numbers")
    return rounded.astype(np.int64)


def _read_lines(name: str) -> list[str]:
    """Non-empty stripped lines of a small bundled text file."""
    series = pd.read_csv(path(name), header=None, sep="\t", dtype=str).iloc[:, 0]
    return [s.strip() for s in series.dropna() if s.strip()]


def load_mageck_leukemia(
    which: Literal["sample", "full"] = "sample",
    *,
    initial_as_pool: bool = True,
    size_factors: str = "median",
) -> ScreenData:
    """Load the MAGeCK demo screen: HL60 and KBM7 cells, initial and final time points.

    Parameters
    ----------
    which : {"sample", "full"}
        ``"sample"``: MAGeCK's demo1 ``sample.txt``, 999 sgRNAs of 100 genes (10 per gene);
        ``"full"``: demo3's ``leukemia.new.csv``, 9,999 sgRNAs of 1,000 genes.
    initial_as_pool : bool, default True
        Mark the two ``initial`` samples as pool (T0) samples. With False they are ordinary
        screen samples, so ``condition`` (reference level ``"initial"``) can be the treatment,
        as MAGeCK's ``-t *.final -c *.initial`` comparison treats them.
    size_factors : str, default "median"
        Size-factor method passed to :class:`ScreenData`.

    Returns
    -------
    ScreenData
        Samples ``HL60.initial, KBM7.initial, HL60.final, KBM7.final`` with sample-sheet
        columns ``condition`` (categorical, levels ``initial``, ``final``), ``cell_line``
        (``HL60`` / ``KBM7``) and ``pool``. The 10 AHNAK sgRNAs (MAGeCK demo5's negative
        controls) are flagged as controls.
    """
    if which == "sample":
        name = "mageck_leukemia_sample"
        table = pd.read_csv(path(name), sep="\t")
    elif which == "full":
        name = "mageck_leukemia_full"
        table = pd.read_csv(path(name))
    else:
        raise ScreenDataError(f"which must be 'sample' or 'full', not {which!r}")
    source = DATASETS[name]
    sample_names = [str(c) for c in table.columns[2:]]
    counts = _integer_counts(table.iloc[:, 2:], source)
    condition = [s.split(".", 1)[1] for s in sample_names]
    sheet = pd.DataFrame(
        {
            CONDITION: pd.Categorical(condition, categories=["initial", "final"]),
            "cell_line": [s.split(".", 1)[0] for s in sample_names],
            POOL: [initial_as_pool and c == "initial" for c in condition],
        },
        index=pd.Index(sample_names),
    )
    control_ids = set(_read_lines("mageck_control_sgrna"))
    sgrnas = table.iloc[:, 0].astype(str).to_numpy()
    return ScreenData(
        counts,
        sgrnas,
        table.iloc[:, 1].astype(str).to_numpy(),
        sheet,
        controls=np.isin(sgrnas, list(control_ids)),
        size_factors=size_factors,
        source=source,
    )


def load_hap1_tkov3(*, t0_as_pool: bool = True, size_factors: str = "median") -> ScreenData:
    """Load the HAP1 TKOv3 genome-wide knockout dropout screen (BAGEL2 tutorial counts).

    Parameters
    ----------
    t0_as_pool : bool, default True
        Mark ``HAP1_T0`` as the pool (T0) sample. With False it is an ordinary screen sample
        and ``condition`` (reference level ``"T0"``) can be the treatment.
    size_factors : str, default "median"
        Size-factor method passed to :class:`ScreenData`.

    Returns
    -------
    ScreenData
        71,090 sgRNAs (18,056 gene labels) x 4 samples: ``HAP1_T0`` (condition ``"T0"``,
        replicate ``"T0"``, the pool) and ``HAP1_T18A..C`` (condition ``"T18"``, replicate
        ``"A"``, ``"B"``, ``"C"``). ``condition`` is categorical with levels ``T0``, ``T18``.
        Guides of the EGFP, LacZ and luciferase labels (142) are flagged as controls.
    """
    source = DATASETS["hap1_tkov3"]
    table = pd.read_csv(path("hap1_tkov3"), sep="\t")
    sample_names = [str(c) for c in table.columns[2:]]
    counts = _integer_counts(table.iloc[:, 2:], source)
    timepoint = [s.removeprefix("HAP1_") for s in sample_names]  # T0, T18A, T18B, T18C
    condition = ["T0" if t == "T0" else t[:-1] for t in timepoint]
    replicate = ["T0" if t == "T0" else t[-1] for t in timepoint]
    sheet = pd.DataFrame(
        {
            CONDITION: pd.Categorical(condition, categories=["T0", "T18"]),
            "replicate": replicate,
            POOL: [t0_as_pool and c == "T0" for c in condition],
        },
        index=pd.Index(sample_names),
    )
    genes = table.iloc[:, 1].astype(str).to_numpy()
    return ScreenData(
        counts,
        table.iloc[:, 0].astype(str).to_numpy(),
        genes,
        sheet,
        controls=np.isin(genes, list(HAP1_CONTROL_GENES)),
        size_factors=size_factors,
        source=source,
    )


def load_reference_genes() -> dict[str, list[str]]:
    """Hart et al.'s human reference gene sets for dropout-screen benchmarks.

    Returns
    -------
    dict
        ``"essential"``: the 684 core-essential genes of CEGv2; ``"nonessential"``: the 927
        non-essential genes of NEGv1 (gene symbols, file order).
    """
    out: dict[str, list[str]] = {}
    for key, name in (("essential", "cegv2"), ("nonessential", "negv1")):
        table = pd.read_csv(path(name), sep="\t", dtype=str)
        out[key] = [g.strip() for g in table["GENE"].dropna() if g.strip()]
    return out


def mageck_reference_output(which: Literal["gene", "sgrna"] = "gene") -> pd.DataFrame:
    """MAGeCK's own output on the leukemia demo (``sample.txt``), for side-by-side checks.

    Produced by MAGeCK v0.5.9.2: ``mageck test -k sample.txt -t HL60.final,KBM7.final
    -c HL60.initial,KBM7.initial -n demo --norm-method control --control-gene control_gene.txt``.

    Parameters
    ----------
    which : {"gene", "sgrna"}
        ``"gene"``: ``demo.gene_summary.txt`` (99 genes; columns ``id, num, neg|score,
        neg|p-value, neg|fdr, neg|rank, neg|goodsgrna, neg|lfc, pos|...``);
        ``"sgrna"``: ``demo.sgrna_summary.txt`` (one row per sgRNA).

    Returns
    -------
    DataFrame
        The table as MAGeCK wrote it.
    """
    if which == "gene":
        return pd.read_csv(path("mageck_demo1_gene_summary"), sep="\t")
    if which == "sgrna":
        return pd.read_csv(path("mageck_demo1_sgrna_summary"), sep="\t")
    raise ScreenDataError(f"which must be 'gene' or 'sgrna', not {which!r}")
