"""A reader of MAGeCK's gene_summary.txt / sgrna_summary.txt, from MAGeCK's documented format.

It follows the MAGeCK wiki ("Output file specification", sourceforge.net/p/mageck/wiki/output)
and what MAGeCKFlute-style readers assume: tab-separated text, one header line, no comment
lines, the documented columns first and in order; gene_summary: ``id`` (text), ``num``
(integer), then per direction ``score``, ``p-value``, ``fdr`` (numbers in [0, 1]), ``rank``
(integer, 1..n over the genes), ``goodsgrna`` (integer), ``lfc`` (number); sgrna_summary:
``control_count`` / ``treatment_count`` (normalised counts joined by "/"), means, ``LFC``,
variances, ``score``, ``p.low``, ``p.high``, ``p.twosided``, ``FDR`` and
``high_in_treatment`` (True/False). It never imports the writer's column lists; the tests
check it first on MAGeCK's own output (bundled).
"""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

GENE_HEADER = (
    "id num neg|score neg|p-value neg|fdr neg|rank neg|goodsgrna neg|lfc "
    "pos|score pos|p-value pos|fdr pos|rank pos|goodsgrna pos|lfc"
).split()
SGRNA_HEADER = (
    "sgrna Gene control_count treatment_count control_mean treat_mean LFC control_var "
    "adj_var score p.low p.high p.twosided FDR high_in_treatment"
).split()
PROBABILITY = ("score", "p-value", "fdr")


def _open(path: Path):
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def _number(text: str) -> float:
    value = float(text)  # raises on anything that is not a number ("NA" handled by callers)
    assert not math.isnan(value)
    return value


def read_gene_summary(path: Path) -> list[dict]:
    """Parse a MAGeCK gene_summary.txt; assert the documented layout and types."""
    with _open(path) as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    header, body = rows[0], rows[1:]
    assert header[: len(GENE_HEADER)] == GENE_HEADER
    assert len(set(header)) == len(header)
    out = []
    for line in body:
        assert len(line) == len(header)
        rec = dict(zip(header, line, strict=True))
        assert rec["id"] and not rec["id"].startswith("#")
        rec["num"] = int(rec["num"])
        for side in ("neg", "pos"):
            for what in PROBABILITY:
                value = _number(rec[f"{side}|{what}"])
                assert 0.0 <= value <= 1.0
                rec[f"{side}|{what}"] = value
            rec[f"{side}|rank"] = int(rec[f"{side}|rank"])
            good = rec[f"{side}|goodsgrna"]
            rec[f"{side}|goodsgrna"] = None if good == "NA" else int(good)
            rec[f"{side}|lfc"] = _number(rec[f"{side}|lfc"])
        out.append(rec)
    for side in ("neg", "pos"):
        assert sorted(r[f"{side}|rank"] for r in out) == list(range(1, len(out) + 1))
    return out


def read_sgrna_summary(path: Path) -> list[dict]:
    """Parse a MAGeCK sgrna_summary.txt; assert the documented layout and types."""
    with _open(path) as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    header, body = rows[0], rows[1:]
    assert header[: len(SGRNA_HEADER)] == SGRNA_HEADER
    out = []
    for line in body:
        assert len(line) == len(header)
        rec = dict(zip(header, line, strict=True))
        for column in ("control_count", "treatment_count"):
            rec[column] = [float(v) for v in rec[column].split("/")]
            assert all(v >= 0 for v in rec[column])
        for column in ("control_mean", "treat_mean", "LFC", "control_var", "score"):
            rec[column] = _number(rec[column])
        rec["adj_var"] = None if rec["adj_var"] == "NA" else _number(rec["adj_var"])
        for column in ("p.low", "p.high", "p.twosided", "FDR"):
            rec[column] = _number(rec[column])
            assert 0.0 <= rec[column] <= 1.0
        assert rec["high_in_treatment"] in ("True", "False")
        rec["high_in_treatment"] = rec["high_in_treatment"] == "True"
        out.append(rec)
    return out
