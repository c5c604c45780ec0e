"""The leaderboard from a hand-built results table whose right answers are known."""
import pandas as pd

from benchmark.leaderboard import Leaderboard, write_leaderboard
from benchmark.plots import pareto_front
from benchmark.results import ResultsFile, RunInfo, make_rows

DIRECTIONS = {"r2": True, "mse": False, "l0": False, "entropy_bits": False}


def write(path, variant, seed, task, metrics, status="ok"):
    info = RunInfo("r", "c", "tiny-board", "cpu", "2")
    ResultsFile(path).write(make_rows(info, task=task, dataset="digits8", variant=variant, seed=seed,
                                      config_hash=f"{task}{variant}{seed}", metrics=metrics,
                                      directions=DIRECTIONS, status=status, message="boom"))


def build(tmp_path):
    path = tmp_path / "results.csv"
    for seed, (a, b) in enumerate([(0.8, 0.5), (0.6, 0.7)]):
        write(path, "relu", seed, "reconstruction", {"r2": a, "mse": 1 - a})
        write(path, "topk", seed, "reconstruction", {"r2": b, "mse": 1 - b})
        write(path, "relu", seed, "sparsity", {"l0": 10 + seed})
        write(path, "topk", seed, "sparsity", {"l0": 4.0})
    write(path, "mp", 0, "reconstruction", {}, status="error")
    return path


def test_summary_has_mean_std_bold_best_and_rank(tmp_path):
    path = build(tmp_path)
    text = write_leaderboard(path, tmp_path / "board.md", tmp_path / "plots").read_text()
    # relu r2: mean 0.7, std 0.1414 (sample std over seeds); topk 0.6: relu is best on r2.
    assert "| relu | **0.7 ± 0.14** | 10.5 ± 0.71 | 1 |" in text
    assert "| topk | 0.6 ± 0.14 | **4 ± 0** | 1 |" in text
    assert "| mp | error |" in text and "mp (error): boom" in text
    assert "Preset `tiny-board`" in text


def test_overall_rank_orders_by_mean_rank(tmp_path):
    path = build(tmp_path)
    write(path, "mp", 0, "reconstruction", {"r2": 0.1, "mse": 0.9})
    write(path, "mp", 0, "sparsity", {"l0": 50.0})
    results = pd.read_csv(path, keep_default_na=False, na_values={"value": [""]})
    summary = Leaderboard(results, "tiny-board", tmp_path / "b.md", tmp_path / "plots").summary()
    assert summary.strip().splitlines()[-1].startswith("| mp |") and summary.strip().endswith("| 3 |")


def test_pareto_front_keeps_only_undominated_points():
    points = pd.DataFrame({"cost": [1, 2, 3, 4], "r2": [0.5, 0.4, 0.9, 0.8]})
    assert pareto_front(points, "cost", "r2")["cost"].tolist() == [1, 3]


def test_a_variant_scored_on_too_few_columns_gets_no_overall_rank(tmp_path):
    path = build(tmp_path)
    for seed in (0, 1):  # a third column: 2 of 3 columns are needed for a rank
        write(path, "relu", seed, "atom_entropy", {"entropy_bits": 9.0})
        write(path, "topk", seed, "atom_entropy", {"entropy_bits": 8.0})
    write(path, "special.py:Special", 0, "reconstruction", {"r2": 0.99, "mse": 0.01})  # best r2, nothing else
    results = pd.read_csv(path, keep_default_na=False, na_values={"value": [""]})
    summary = Leaderboard(results, "tiny-board", tmp_path / "b.md", tmp_path / "plots").summary()
    rows = {line.split(" | ")[0].strip("| "): line for line in summary.splitlines()[4:]}
    assert "**0.99**" in rows["special.py:Special"] and rows["special.py:Special"].endswith("|  |")
    assert rows["topk"].endswith("| 1 |") and rows["relu"].endswith("| 2 |")
    assert list(rows)[-1] == "special.py:Special"
