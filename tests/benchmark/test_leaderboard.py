"""The leaderboard from a hand-built results table whose right answers are known."""
import pandas as pd

from benchmark.leaderboard import write_leaderboard
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
    assert "separates variants beyond noise" in text
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
