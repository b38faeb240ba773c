"""The command line's own examples run: ``fit --help``'s config and the README's commands."""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
from _paths import ROOT

import screenformula as sf
from screenformula.cli import build_parser, main
from screenformula.cli.config import EXAMPLE, EXAMPLE_SHEET

SAVED_FIT = ROOT / "tests" / "data" / "fit_format1_ed30f57.nc"
#: Values for the README's placeholders (``--draws N``).
PLACEHOLDERS = {"N": "3", "S": "1", "FILE": "ids.txt", "D": "0.5", "Q": "0.05"}


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def write_help_example(capsys, folder: Path) -> Path:
    """The files ``fit --help`` describes, with counts of a small simulated screen."""
    text = help_text(capsys, "fit")
    assert EXAMPLE in text and EXAMPLE_SHEET in text  # what runs here is what is printed
    samples = re.search(r"one count column per sample \(([^)]*)\)", text).group(1).split()
    sheet = pd.read_csv(io.StringIO(EXAMPLE_SHEET), sep=r"\s+")
    assert list(sheet["sample"]) == samples
    data, _ = sf.simulate_screen(
        n_genes=12, n_sgrnas_per_gene=3, n_replicates=2, n_pool_samples=1, random_seed=4
    )
    frame = data.counts_frame()
    assert frame.shape[1] == 2 + len(samples)
    frame.columns = ["sgRNA", "Gene", *samples]
    frame.to_csv(folder / "counts.tsv", sep="\t", index=False)
    (folder / "samples.tsv").write_text(EXAMPLE_SHEET)
    config = folder / "analysis.yaml"
    config.write_text(EXAMPLE)
    return config


def test_the_help_example_config_passes_every_check(capsys, tmp_path):
    config = write_help_example(capsys, tmp_path)
    assert main(["fit", str(config), "--check"]) == 0
    out = capsys.readouterr().out
    assert "ready to fit (nothing was fitted or written)" in out
    assert "pool: joint (P0)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "analysis.yaml",
        "counts.tsv",
        "samples.tsv",
    ]


@pytest.mark.slow
def test_the_help_example_config_runs(capsys, tmp_path):
    config = write_help_example(capsys, tmp_path)
    fit_line = "fit: {method: nuts, draws: 1000, tune: 1000, chains: 4, seed: 1}"
    assert fit_line in EXAMPLE  # the only change: a short fit
    config.write_text(EXAMPLE.replace(fit_line, "fit: {draws: 60, tune: 60, chains: 1, seed: 1}"))
    capsys.readouterr()
    assert main(["fit", str(config), "--quiet"]) == 0, capsys.readouterr().err
    # the only warning is ours, in the config's own words (issue 16): no library's
    # "SomethingWarning: ..." a user of the command line could not act on
    err = capsys.readouterr().err
    assert "cannot be trusted" in err and "fit: {draws: 2000" in err
    assert not re.search(r"\w+Warning\b", err), err
    out = tmp_path / "results"
    assert {p.name for p in out.iterdir()} == {
        "fit.nc",
        "log.json",
        "condition_vs_control.genes.tsv",
        "condition_vs_control.volcano.png",
        "condition_vs_control.rank.png",
    }


def readme_commands() -> list[str]:
    """The ``screenformula`` lines of the README's "Command line" block, joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    lines = [line.split(" #", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("screenformula ")]


def parse(tokens: list[str]) -> None:
    """Parse as the command line would; a bad flag or value fails the test."""
    try:
        build_parser().parse_args(tokens)
    except SystemExit as stop:
        pytest.fail(f"the README's `screenformula {' '.join(tokens)}` does not parse ({stop})")


def test_every_readme_command_and_option_parses():
    commands = readme_commands()
    assert [c.split()[1] for c in commands] == ["test", "test", "fit", "fit", "contrast", "plot"]
    for command in commands:
        base = shlex.split(re.sub(r"\[[^\]]*\]", " ", command))[1:]
        parse(base)
        for group in re.findall(r"\[([^\]]*)\]", command):
            for alternative in group.split(" | "):
                flag, *value = alternative.split()
                choices = value[0].split("|") if value else [None]
                for choice in choices:
                    extra = [] if choice is None else [PLACEHOLDERS.get(choice, choice)]
                    parse([*base, flag, *extra])


def test_readme_contrast_and_plot_run_on_a_saved_fit(tmp_path, capsys):
    levels = {"drugA": "treated", "drugB": "control"}  # the saved fit's levels
    for command in readme_commands():
        tokens = shlex.split(command)[1:]
        if tokens[0] not in ("contrast", "plot"):
            continue
        tokens = [
            str(SAVED_FIT) if t.endswith(".fit.nc") else str(tmp_path / t) if "." in t else t
            for t in tokens
        ]
        tokens = [levels.get(t, t) for t in tokens]
        if tokens[0] == "contrast":
            i = tokens.index("-n") + 1
            tokens[i] = str(tmp_path / tokens[i])
        assert main([*tokens, "--quiet"]) == 0, capsys.readouterr().err
    assert (tmp_path / "volcano.png").stat().st_size > 1000
    assert (tmp_path / "out" / "a_vs_b.genes.tsv").exists()
