"""`compare BASE NEW`: direction-aware, tolerance from the spread over seeds (or a stated
default), status changes, new and missing rows, exit codes 0 / 1 / 2."""
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.report.compare import Tolerance
from benchmark.results import COLUMNS, RunInfo, make_rows

INFO = RunInfo("run", "abc", "smoke", "cpu", "2.x")
DIRECTIONS = {"r2": True, "mse": False, "params": False}


def cell(variant="relu", seed=0, task="reconstruction", status="ok", message="", **metrics):
    if status != "ok":
        return make_rows(INFO, task=task, dataset="digits8", variant=variant, seed=seed, config_hash=f"{variant}{seed}",
                         status=status, message=message)
    return make_rows(INFO, task=task, dataset="digits8", variant=variant, seed=seed, config_hash=f"{variant}{seed}",
                     metrics=metrics, directions=DIRECTIONS)


BASE = [*cell(r2=0.80, mse=0.10, params=1000), *cell("topk", r2=0.70, mse=0.20, params=1000)]


def write(path, rows):
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return str(path)


def compare(tmp_path, capsys, base, new, *flags):
    code = main(["compare", write(tmp_path / "base.csv", base), write(tmp_path / "new.csv", new), *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()[2:] if line and not line.startswith(("compare ", "FAILED"))]


def test_identical_files_pass(tmp_path, capsys):
    code, out, _ = compare(tmp_path, capsys, BASE, BASE)
    assert code == 0 and "0 regression" in out and "6 unchanged" in out


def test_an_injected_regression_fails_and_is_named(tmp_path, capsys):
    new = [*cell(r2=0.70, mse=0.10, params=1000), *cell("topk", r2=0.70, mse=0.20, params=1000)]
    code, out, _ = compare(tmp_path, capsys, BASE, new)
    assert code == 1
    assert table_rows(out) == [["regression", "reconstruction", "digits8", "relu", "r2", "0.8", "0.7", "-0.1",
                                "0.008", "higher", "is", "better"]]
    assert "1 regression" in out and "FAILED" in out


@pytest.mark.parametrize("metric, worse", [("r2", 0.79), ("mse", 0.11), ("params", 1100)])
def test_only_the_bad_direction_beyond_tolerance_is_a_regression(tmp_path, capsys, metric, worse):
    values = {"r2": 0.80, "mse": 0.10, "params": 1000}
    better = {"r2": 0.81, "mse": 0.09, "params": 900}[metric]
    worse_new = [*cell(**dict(values, **{metric: worse})), *cell("topk", r2=0.70, mse=0.20, params=1000)]
    better_new = [*cell(**dict(values, **{metric: better})), *cell("topk", r2=0.70, mse=0.20, params=1000)]
    code, out, _ = compare(tmp_path, capsys, BASE, worse_new)
    assert code == 1 and table_rows(out)[0][:5] == ["regression", "reconstruction", "digits8", "relu", metric]
    code, out, _ = compare(tmp_path, capsys, BASE, better_new)
    assert code == 0 and table_rows(out)[0][:5] == ["improved", "reconstruction", "digits8", "relu", metric]


def test_a_move_within_the_default_tolerance_passes(tmp_path, capsys):
    new = [*cell(r2=0.80 * (1 - 0.009), mse=0.10, params=1000), *cell("topk", r2=0.70, mse=0.20, params=1000)]
    code, out, _ = compare(tmp_path, capsys, BASE, new)
    assert code == 0 and "1 worse" in out and table_rows(out) == []  # listed only with --all
    code, out, _ = compare(tmp_path, capsys, BASE, new, "--all")
    assert table_rows(out)[0][:5] == ["worse", "reconstruction", "digits8", "relu", "r2"]
    code, out, _ = compare(tmp_path, capsys, BASE, new, "--rel-tol", "0.001")
    assert code == 1


def test_the_tolerance_follows_the_spread_over_base_seeds(tmp_path, capsys):
    base = [*cell(seed=0, r2=0.70), *cell(seed=1, r2=0.80), *cell(seed=2, r2=0.90)]  # mean 0.8, std 0.1
    within = [*cell(seed=0, r2=0.55)]  # 2.5 std below the mean: inside 3 std
    beyond = [*cell(seed=0, r2=0.45)]  # 3.5 std below
    assert compare(tmp_path, capsys, base, within)[0] == 0
    code, out, _ = compare(tmp_path, capsys, base, beyond)
    assert code == 1 and table_rows(out)[0][8] == "0.3"  # the tolerance: 3 · 0.1
    assert compare(tmp_path, capsys, base, beyond, "--k", "4")[0] == 0
    assert Tolerance().of(0.8, 0.1, 3) == pytest.approx(0.3) and Tolerance().of(0.8, 0.1, 1) == pytest.approx(0.008)


def test_a_cell_that_now_errors_is_a_regression_and_one_that_recovers_is_not(tmp_path, capsys):
    broken = [*cell(r2=0.80, mse=0.10, params=1000), *cell("topk", status="error", message="training: boom")]
    code, out, _ = compare(tmp_path, capsys, BASE, broken)
    assert code == 1
    assert table_rows(out)[0][:7] == ["regression", "reconstruction", "digits8", "topk", "(status)", "ok", "error"]
    assert "training: boom" in out
    code, out, _ = compare(tmp_path, capsys, broken, BASE)
    assert code == 0 and table_rows(out)[0][:7] == ["improved", "reconstruction", "digits8", "topk", "(status)",
                                                     "error", "ok"]


def test_new_and_missing_rows(tmp_path, capsys):
    new = [*cell(r2=0.80, mse=0.10), *cell("mp", r2=0.5, mse=0.3, params=10)]  # relu lost `params`; topk gone
    code, out, _ = compare(tmp_path, capsys, BASE, new)
    assert code == 0 and "2 missing" in out and "1 new" in out
    changes = {(row[0], row[3], row[4]) for row in table_rows(out)}
    assert changes == {("missing", "relu", "params"), ("missing", "topk", "(cell)"), ("new", "mp", "(cell)")}
    assert compare(tmp_path, capsys, BASE, new, "--fail-on-missing")[0] == 1


def test_bad_input_is_exit_2_with_one_line(tmp_path, capsys):
    good = write(tmp_path / "good.csv", BASE)
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty.csv").write_text(",".join(COLUMNS) + "\n")
    mixed = [*BASE, *make_rows(RunInfo("r", "c", "default", "cpu", "t"), task="reconstruction", dataset="digits8",
                                variant="relu", seed=0, config_hash="x", metrics={"r2": 0.5}, directions=DIRECTIONS)]
    write(tmp_path / "mixed.csv", mixed)
    cases = [(tmp_path / "absent.csv", "does not exist"),
             (tmp_path / "notes.csv", "is not a results CSV: no column"),
             (tmp_path / "empty.csv", "has no rows"),
             (tmp_path / "mixed.csv", "holds several presets (default, smoke)")]
    for path, message in cases:
        assert main(["compare", good, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert main(["compare", good, str(tmp_path / "mixed.csv"), "--preset", "smoke"]) == 0


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--help"])
    assert exit_.value.code == 0 and "regression" in capsys.readouterr().out


def test_each_sweep_setting_is_compared_with_itself(tmp_path, capsys):
    """Two settings of one variant must not be averaged together: a regression of one setting
    shows even when the other improves by as much."""
    def swept(setting, r2):
        return make_rows(INFO, task="reconstruction", dataset="digits8", variant="topk", seed=0, setting=setting,
                         l0=4.0, config_hash=f"topk{setting}", metrics={"r2": r2}, directions=DIRECTIONS)
    base = [*swept("k=4", 0.5), *swept("k=16", 0.9)]
    new = [*swept("k=4", 0.6), *swept("k=16", 0.8)]
    code, out, _ = compare(tmp_path, capsys, base, new)
    assert code == 1
    rows = table_rows(out)
    assert ["regression", "reconstruction", "digits8", "topk", "[k=16]", "r2"] == rows[0][:6]


def test_a_cell_re_run_in_the_same_file_counts_once_as_last_written(tmp_path, capsys):
    """An earlier run's error row and its other value stay in NEW, but only the last run's rows
    are compared: the cell is ok and its r2 unchanged, not an error or a mix."""
    earlier = RunInfo("earlier", "abc", "smoke", "cpu", "2.x")
    stale = [*make_rows(earlier, task="reconstruction", dataset="digits8", variant="topk", seed=0, config_hash="old",
                        status="error", message="training: boom"),
             *make_rows(earlier, task="reconstruction", dataset="digits8", variant="relu", seed=0, config_hash="old",
                        metrics={"r2": 0.1, "mse": 0.9, "params": 1000}, directions=DIRECTIONS)]
    code, out, _ = compare(tmp_path, capsys, BASE, [*stale, *BASE])
    assert code == 0 and "1 regression" not in out and "6 unchanged" in out
