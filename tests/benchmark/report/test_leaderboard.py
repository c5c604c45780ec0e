"""The leaderboard from a hand-built results table whose right answers are known."""
import pandas as pd
import pytest

from benchmark.report.leaderboard import write_leaderboard
from benchmark.results import ResultsFile, RunInfo, make_rows

INFO = RunInfo("r", "c", "tiny-board", "cpu", "2")


def write(path, variant, seed, setting, l0, metrics, task="reconstruction", status="ok", converged=True):
    directions = {"r2": True, "mse": False}
    ResultsFile(path).write(make_rows(INFO, task=task, dataset="digits8", variant=variant, seed=seed, setting=setting,
                                      l0=l0, converged=converged, steps=100,
                                      config_hash=f"{task}{variant}{seed}{setting}", metrics=metrics,
                                      directions=directions, status=status, message="boom"))


def build(tmp_path):
    path = tmp_path / "results.csv"
    for seed in (0, 1, 2):
        jitter = 0.002 * seed
        write(path, "topk", seed, "k=8", 8, {"r2": 0.60 + jitter, "mse": 0.4})
        write(path, "topk", seed, "k=32", 32, {"r2": 0.90 + jitter, "mse": 0.1})  # 0.75 at L0 16
        write(path, "relu", seed, "l1=0.1", 10, {"r2": 0.50 + jitter, "mse": 0.5}, converged=False)
        write(path, "relu", seed, "l1=0.01", 40, {"r2": 0.70 + jitter, "mse": 0.3}, converged=False)
        write(path, "pca", seed, "k=16", 16, {"r2": 0.70 + jitter, "mse": 0.3})
        write(path, "mp", seed, "k=64", 64, {"r2": 0.99, "mse": 0.01})  # never reaches 16
    write(path, "jumprelu", 0, "default", float("nan"), {}, status="error")
    return path


def summary_row(text, name):
    return next(line for line in text.splitlines() if line.startswith(f"| {name} |"))


def test_summary_reads_every_model_at_the_headline_l0_with_controls_and_noise_ranks(tmp_path):
    text = write_leaderboard(build(tmp_path), tmp_path / "board.md", tmp_path / "plots").read_text()
    # topk: halfway in log L0 between 0.60 and 0.90 -> 0.75 (+ seed jitter), beats pca's 0.70 beyond noise.
    assert summary_row(text, "topk").startswith("| topk | **0.752 ± 0.002** #1 ✓")
    # relu: 0.5 + 0.2·log(16/10)/log(4) = 0.5678 (+ jitter), unconverged (†), below the control.
    relu = summary_row(text, "relu")
    assert "0.5698 ± 0.002 †" in relu and "✓" not in relu and "#3" in relu
    assert "| pca (control) | 0.702 ± 0.002 #2 |" in text
    assert "| mp | n/r |" in text  # its sweep never reaches L0 16: not extrapolated
    assert "paired test over 3 seeds separates 1 of 1 variant pairs" in text
    # Each variant's paired difference to the best control, with its interval.
    assert "| topk | **0.752 ± 0.002** ✓ | **0.25 ± 0** | +0.05 [0.05, 0.05] vs pca |" in text
    assert "jumprelu [default] (error): boom" in text
    assert "overall" not in text.split("## reconstruction")[0].lower().replace("no overall rank", "")


def test_a_task_where_variants_tie_within_noise_says_so(tmp_path):
    path = tmp_path / "results.csv"
    for seed in (0, 1, 2):
        noise = 0.05 * (seed - 1)
        write(path, "topk", seed, "k=16", 16, {"r2": 0.80 + noise, "mse": 0.2})
        write(path, "relu", seed, "l1=1", 16, {"r2": 0.81 - noise, "mse": 0.2})
    text = write_leaderboard(path, tmp_path / "board.md", tmp_path / "plots").read_text()
    assert "does not separate any two variants beyond noise" in text
    assert "#1" in summary_row(text, "topk") and "#1" in summary_row(text, "relu")  # a shared rank


def test_the_board_has_frontier_plots_tables_per_target_and_a_convergence_section(tmp_path):
    text = write_leaderboard(build(tmp_path), tmp_path / "board.md", tmp_path / "plots").read_text()
    assert "![r2 against L0 on digits8](plots/frontier_reconstruction_digits8.png)" in text
    assert (tmp_path / "plots" / "frontier_reconstruction_digits8.png").stat().st_size > 0
    for target in ("8", "16", "32"):
        assert f"#### L0 = {target}\n" in text
    assert "## Convergence" in text and "relu | l1=0.01, l1=0.1" in text


def test_rows_of_an_older_suite_version_are_not_mixed_in(tmp_path):
    path = build(tmp_path)
    frame = pd.read_csv(path, keep_default_na=False)
    old = frame[frame["variant"] == "topk"].assign(suite_version="0.1.0", variant="ghost", config_hash="old")
    pd.concat([frame, old]).to_csv(path, index=False)
    text = write_leaderboard(path, tmp_path / "board.md", tmp_path / "plots").read_text()
    assert "ghost" not in text and "rows of older suite versions or of earlier runs" in text


def test_a_cell_re_run_under_a_new_configuration_shows_only_its_latest_rows(tmp_path):
    """The old run's rows stay in the CSV (another config_hash) but are never interpolated beside
    the new ones: topk's k=32 point moves from r2 0.90 to 0.80, so L0 16 reads 0.70, not a mix."""
    path = build(tmp_path)
    rerun = RunInfo("r2", "c", "tiny-board", "cpu", "2")
    for seed in (0, 1, 2):
        ResultsFile(path).write(make_rows(rerun, task="reconstruction", dataset="digits8", variant="topk", seed=seed,
                                          setting="k=32", l0=32, converged=True, steps=100, config_hash=f"new{seed}",
                                          metrics={"r2": 0.80 + 0.002 * seed, "mse": 0.2},
                                          directions={"r2": True, "mse": False}))
    text = write_leaderboard(path, tmp_path / "board.md", tmp_path / "plots").read_text()
    assert summary_row(text, "topk").startswith("| topk | **0.702 ± 0.002**")
    assert "of earlier runs of the same cells are not shown" in text


# ----- the budget check (2x training, results-2x.csv beside results.csv) -----
def budget_line(text):
    return next(line for line in text.splitlines() if line.startswith("- `reconstruction`"))


def budget_section(text):
    return text.split("## Budget check (2x training)")[1].split("\n## ")[0]


def budget_row(text):
    return next(line for line in budget_section(text).splitlines() if line.startswith("| `reconstruction` |"))


def write_2x(path, values, seeds=(0, 1, 2), converged=True):
    """A 2x file whose headline models read `values[variant]` (+ seed jitter) at L0 16 exactly."""
    for variant, value in values.items():
        for seed in seeds:
            write(path, variant, seed, "k=16", 16, {"r2": value + 0.002 * seed, "mse": 1 - value}, converged=converged)


def test_without_a_2x_file_the_board_says_there_is_no_budget_check(tmp_path):
    text = write_leaderboard(build(tmp_path), tmp_path / "board.md", tmp_path / "plots").read_text()
    assert budget_line(text).endswith("; no 2x budget check in this run")
    assert "no 2x budget check in this run" in budget_section(text)


def test_a_2x_file_without_rows_for_the_headline_is_no_budget_check(tmp_path):
    path = build(tmp_path)
    write(tmp_path / "results-2x.csv", "topk", 0, "k=16", 16, {"r2": 0.9, "mse": 0.1}, task="sparsity")
    text = write_leaderboard(path, tmp_path / "board.md", tmp_path / "plots").read_text()
    assert budget_line(text).endswith("; no 2x budget check in this run")
    assert budget_row(text).endswith("| no 2x budget check in this run |")


def test_identical_results_at_2x_are_stable(tmp_path):
    path = build(tmp_path)
    (tmp_path / "results-2x.csv").write_text(path.read_text())
    text = write_leaderboard(path, tmp_path / "board.md", tmp_path / "plots").read_text()
    assert budget_line(text).endswith("; stable at 2x budget")
    # topk first and beating pca at both budgets; τ over topk, relu and pca (mp never reaches 16).
    assert budget_row(text) == ("| `reconstruction` | digits8 | 16 | topk | topk | topk | topk | 1.00 (3) | +0 (topk) "
                                "| 3 | stable at 2x budget |")


def test_a_flip_at_2x_is_named_in_the_summary_and_the_budget_table(tmp_path):
    path = build(tmp_path)
    write_2x(tmp_path / "results-2x.csv", {"topk": 0.70, "relu": 0.80, "pca": 0.60})
    text = write_leaderboard(path, tmp_path / "board.md", tmp_path / "plots").read_text()
    line = budget_line(text)
    assert "**not stable at 2x budget:** tied first topk → relu" in line
    assert "beats controls topk → relu, topk" in line
    row = budget_row(text)
    # 1x order topk > pca > relu, 2x relu > topk > pca: one concordant pair of three, τ = -1/3.
    assert "| topk | relu | topk | relu, topk | -0.33 (3) |" in row and "not stable at 2x budget" in row
    # Both show the comparisons that decided the changes, each lead with the paired test's p.
    for text_with_margins in (line, row):
        assert "[relu over pca (control): " in text_with_margins
        assert "relu over topk: " in text_with_margins
        assert "at 2x, beyond noise at p < 0.05]" in text_with_margins


def test_a_2x_file_with_one_seed_says_its_spread_is_the_1x_one(tmp_path):
    path = build(tmp_path)
    write_2x(tmp_path / "results-2x.csv", {"topk": 0.75, "relu": 0.57, "pca": 0.70}, seeds=(0,))
    text = write_leaderboard(path, tmp_path / "board.md", tmp_path / "plots").read_text()
    assert budget_line(text).endswith("; stable at 2x budget (seed 0; one seed at 2x: each pair's spread taken from 1x)")
    assert "| 1 of 3 (seed 0; spread from 1x) | stable at 2x budget |" in budget_row(text)


def test_2x_rows_enter_no_other_table_figure_or_the_convergence_section(tmp_path, monkeypatch):
    import benchmark.report.plots

    plotted = []
    real_plot = benchmark.report.plots.frontier_plot

    def spy(results, *args, **kwargs):
        plotted.append(set(results["variant"]))
        return real_plot(results, *args, **kwargs)

    monkeypatch.setattr(benchmark.report.plots, "frontier_plot", spy)
    path = build(tmp_path)
    without = write_leaderboard(path, tmp_path / "board.md", tmp_path / "plots").read_text()
    # Different values, an extra variant and unconverged models, all of which would show anywhere else.
    write_2x(tmp_path / "results-2x.csv", {"topk": 0.95, "relu": 0.40, "pca": 0.30, "ghost": 0.99},
             converged=False)
    with_2x = write_leaderboard(path, tmp_path / "board.md", tmp_path / "plots").read_text()
    assert "ghost" in budget_section(with_2x)
    assert all("ghost" not in variants for variants in plotted)

    def strip(text):
        head, rest = text.split("## Budget check (2x training)")
        rest = rest[rest.index("\n## "):]
        lines = [line.split("; no 2x budget check")[0].split("; stable at 2x")[0].split("; **not stable")[0]
                 for line in (head + rest).splitlines()]
        return "\n".join(lines)

    assert strip(with_2x) == strip(without)
    assert "ghost" not in strip(with_2x)


# ----- the summary's twin and null-control verdicts -----
def _entry(name, values, kind="variant"):
    from benchmark.report.matched import Entry
    by_seed = {str(seed): v for seed, v in enumerate(values)}
    return Entry(name, sum(values) / max(len(values), 1), 0.0, len(values), 3, True, kind, by_seed)


def test_the_summary_names_who_beats_the_twin_and_the_null_and_skips_models_that_missed_the_l0():
    from benchmark.report.leaderboard import null_text, twin_text
    entries = [_entry("topk", [0.50, 0.52, 0.55]), _entry("topk-untrained", [0.10, 0.11, 0.12], "twin"),
               _entry("relu", [0.12, 0.11, 0.13]), _entry("relu-untrained", [0.11, 0.12, 0.12], "twin"),
               _entry("conv", []), _entry("conv-untrained", [0.0, 0.1, 0.2], "twin"),
               _entry("random-dict", [0.15, 0.14, 0.15], "control")]
    assert twin_text(entries, True) == "; beats its untrained twin: topk; **does not: relu**"  # conv: n/r
    assert null_text(entries, True) == "; beats random-dict: topk; **does not: relu**"
    assert null_text(entries[:2] + entries[-1:], True) == "; every variant beats random-dict"
    assert null_text(entries[:2], True) == ""  # no null control: nothing to say


def test_each_table_reads_the_entries_matched_entries_finds_in_the_whole_table(tmp_path):
    # The board splits its rows by (task, dataset, metric) once; every table must still see what
    # the whole results table gives for it, and nothing of another task or metric.
    from benchmark.report.leaderboard import Leaderboard
    from benchmark.report.matched import matched_entries
    from benchmark.results import read_results

    path = build(tmp_path)
    for seed in (0, 1, 2):
        write(path, "topk", seed, "k=8", 8, {"r2": 0.1 + 0.01 * seed}, task="sparsity")
        write(path, "topk", seed, "k=32", 32, {"r2": 0.2}, task="sparsity")
    results = read_results(path)
    board = Leaderboard(results, "tiny-board", tmp_path / "board.md", tmp_path / "plots")
    checked = 0
    for task, metric in [("reconstruction", "r2"), ("reconstruction", "mse"), ("sparsity", "r2")]:
        for target in (8.0, 16.0, 32.0):
            assert board.entries(task, "digits8", metric, target) == matched_entries(results, task, "digits8", metric, target)
            checked += 1
    sparsity = {e.variant: e for e in board.entries("sparsity", "digits8", "r2", 8.0)}
    assert set(sparsity) == {"topk"} and sparsity["topk"].mean == pytest.approx(0.11)
    assert board.entries("sparsity", "digits8", "mse", 8.0) == [] and checked == 9
