import pytest
import math

import pandas as pd

from benchmark.results import COLUMNS, ResultsFile, RunInfo, content_hash, make_rows, read_results

INFO = RunInfo("run-1", "abc123", "tiny", "cpu", "2.x")


def rows(config_hash, value=1.0, status="ok"):
    metrics = {"r2": value, "mse": 2 * value}
    return make_rows(INFO, task="reconstruction", dataset="digits8", variant="relu", seed=0,
                     config_hash=config_hash, metrics=metrics, directions={"r2": True, "mse": False},
                     status=status, message="" if status == "ok" else "why")


def test_rows_follow_the_schema_in_order(tmp_path):
    results = ResultsFile(tmp_path / "results.csv")
    results.write(rows("h1"))
    frame = pd.read_csv(tmp_path / "results.csv")
    assert list(frame.columns) == COLUMNS
    assert frame.set_index("metric")["higher_is_better"].to_dict() == {"r2": True, "mse": False}


def test_writing_a_config_hash_again_replaces_its_rows(tmp_path):
    results = ResultsFile(tmp_path / "results.csv")
    results.write(rows("h1", 1.0))
    results.write(rows("h2", 5.0))
    results.write(rows("h1", 3.0))
    frame = read_results(tmp_path / "results.csv")
    assert len(frame) == 4
    assert sorted(frame.loc[frame["config_hash"] == "h1", "value"]) == [3.0, 6.0]


def test_error_cells_are_not_finished_and_carry_their_message(tmp_path):
    results = ResultsFile(tmp_path / "results.csv")
    results.write(rows("ok-cell"))
    results.write(rows("bad-cell", status="error"))
    results.write(rows("skip-cell", status="skipped"))
    assert results.finished_hashes() == {"ok-cell", "skip-cell"}
    frame = read_results(tmp_path / "results.csv")
    bad = frame[frame["config_hash"] == "bad-cell"].iloc[0]
    assert bad["message"] == "why" and math.isnan(bad["value"]) and bad["metric"] == ""


def test_the_write_leaves_no_temporary_file(tmp_path):
    ResultsFile(tmp_path / "results.csv").write(rows("h1"))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["results.csv"]


def test_content_hash_ignores_key_order_and_sees_values():
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_two_runs_started_together_get_different_ids():
    assert RunInfo.new("p", "cpu").run_id != RunInfo.new("p", "cpu").run_id


def test_a_version_1_file_is_migrated_when_read(tmp_path):
    """Schema 1 had no setting, l0, converged or steps: the migration fills the setting with
    "default", the L0 from the cell's own sparsity row, and marks convergence as unknown."""
    from benchmark.results import read_results

    v1_columns = ["schema_version", "run_id", "timestamp_utc", "git_commit", "suite_version", "preset", "device",
                  "torch_version", "task", "dataset", "variant", "seed", "metric", "value", "higher_is_better",
                  "status", "message", "config_hash"]
    common = [1, "r", "t", "c", "0.1.0", "default", "cpu", "2"]
    rows = [common + ["reconstruction", "digits8", "topk", 0, "r2", 0.8, True, "ok", "", "h1"],
            common + ["sparsity", "digits8", "topk", 0, "l0", 8.0, False, "ok", "", "h2"],
            common + ["reconstruction", "digits8", "relu", 0, "r2", 0.7, True, "ok", "", "h3"]]
    path = tmp_path / "results.csv"
    pd.DataFrame(rows, columns=v1_columns).to_csv(path, index=False)
    frame = read_results(path)
    assert list(frame.columns) == COLUMNS and set(frame["schema_version"]) == {4}
    assert set(frame["eval_seed"]) == {0}
    topk = frame[frame["variant"] == "topk"]
    assert set(topk["l0"]) == {8.0} and set(topk["setting"]) == {"default"}
    assert frame.loc[frame["variant"] == "relu", "l0"].isna().all()  # no sparsity row: unknown
    assert not frame["converged"].any()


def test_a_version_3_file_gets_evaluation_seed_0(tmp_path):
    from benchmark.results import make_rows, read_results

    rows = make_rows(RunInfo("r", "c", "p", "cpu", "2"), task="reconstruction", dataset="d", variant="topk",
                     seed=1, config_hash="h", l0=8.0, metrics={"r2": 0.5}, directions={"r2": True})
    path = tmp_path / "results.csv"
    pd.DataFrame(rows).drop(columns="eval_seed").assign(schema_version=3).to_csv(path, index=False)
    frame = read_results(path)
    assert list(frame.columns) == COLUMNS and frame["eval_seed"].tolist() == [0]
    assert frame["schema_version"].tolist() == [4] and frame["value"].tolist() == [0.5]


def test_a_file_of_an_unknown_schema_version_is_refused_with_one_line(tmp_path):
    from benchmark.errors import UserError
    from benchmark.results import read_results

    path = tmp_path / "results.csv"
    pd.DataFrame({"schema_version": [7], "task": ["x"]}).to_csv(path, index=False)
    with pytest.raises(UserError, match="schema version") as err:
        read_results(path)
    assert "\n" not in str(err.value)


def test_a_header_without_rows_is_an_empty_results_file(tmp_path):
    # e.g. results-2x.csv emptied by hand to regenerate it: the next run writes into it.
    from benchmark.errors import UserError

    path = tmp_path / "results.csv"
    path.write_text(",".join(COLUMNS) + "\n")
    assert read_results(path).empty and list(read_results(path).columns) == COLUMNS
    ResultsFile(path).write(rows("h1", 3.0))
    assert read_results(path)["value"].tolist() == [3.0, 6.0]
    path.write_text(",".join(c for c in COLUMNS if c != "value") + "\n")  # a column missing: refused
    with pytest.raises(UserError, match="schema version"):
        read_results(path)


def test_git_commit_is_marked_dirty_by_code_changes_but_not_by_results(tmp_path):
    import subprocess

    from benchmark.results import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert git_commit(tmp_path) == "unknown"  # not a repository
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results.csv").write_text("a\n")
    (tmp_path / "leaderboard.md").write_text("# board\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    clean = git_commit(tmp_path)
    assert clean != "unknown" and not clean.endswith("-dirty")
    (tmp_path / "results" / "results.csv").write_text("b\n")  # a run rewrote the published results
    (tmp_path / "leaderboard.md").write_text("# new board\n")
    assert git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == f"{clean}-dirty"


def reference_rows(config_hash, value=1.0):
    """Rows without an L0 or steps (a reference method's), beside the models' ints and floats."""
    return make_rows(INFO, task="reconstruction", dataset="digits8", variant="pca-ref", seed=1,
                     config_hash=config_hash, metrics={"r2": value}, directions={"r2": True}, eval_seed=2)


def test_a_writer_adding_new_cells_writes_the_file_a_full_rewrite_would(tmp_path):
    # New cells are appended to the text this writer last wrote; a replaced cell, or a file some
    # other writer changed since, is read and rewritten whole. Both must give the same file.
    batches = [rows("h1", 1.0), reference_rows("r1"), rows("bad", status="error"), rows("h2", 2.5),
               rows("h1", 3.0), reference_rows("r2", 0.1)]
    fast, slow = ResultsFile(tmp_path / "fast.csv"), ResultsFile(tmp_path / "slow.csv")
    for batch in batches:
        fast.write(batch)
        slow.write(batch)
        slow._written = None  # forget: every write parses and formats the whole file
    assert (tmp_path / "fast.csv").read_text() == (tmp_path / "slow.csv").read_text()
    frame = read_results(tmp_path / "fast.csv")
    assert len(frame) == 7 and sorted(frame.loc[frame["config_hash"] == "h1", "value"]) == [3.0, 6.0]


def test_a_second_writer_on_the_same_file_loses_no_rows(tmp_path):
    first, second = ResultsFile(tmp_path / "results.csv"), ResultsFile(tmp_path / "results.csv")
    first.write(rows("a"))
    second.write(rows("b"))  # first's memory of the file is stale now
    first.write(rows("c"))
    second.write(rows("a", 7.0))
    frame = read_results(tmp_path / "results.csv")
    assert sorted(frame["config_hash"]) == ["a", "a", "b", "b", "c", "c"]
    assert sorted(frame.loc[frame["config_hash"] == "a", "value"]) == [7.0, 14.0]


def test_a_pickled_writer_travels_without_the_text_it_remembers(tmp_path):
    # Runners (and their ResultsFile) are pickled with every job sent to a Ray task or a
    # spawned child: the remembered text must not travel with them.
    import pickle

    results = ResultsFile(tmp_path / "results.csv")
    for i in range(50):
        results.write(rows(f"h{i}", float(i)))
    copy = pickle.loads(pickle.dumps(results))
    assert len(pickle.dumps(results)) < 1000 < (tmp_path / "results.csv").stat().st_size
    copy.write(rows("h50", 50.0))  # the copy still writes correctly, from the file
    results.write(rows("h51", 51.0))  # and the original sees the copy's write
    assert len(read_results(tmp_path / "results.csv")) == 2 * 52
