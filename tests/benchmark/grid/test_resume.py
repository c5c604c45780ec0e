"""A run killed at any moment (SIGKILL, no clean-up) leaves results.csv whole, and the next run
resumes where it stopped: no row lost, none doubled, the same values as an uninterrupted run."""
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.cli import main
from benchmark.results import COLUMNS, ResultsFile, RunInfo, make_rows, read_results
from tests.benchmark._submissions import KEY, run, run_argv, values, write_preset

VARIANTS = ["relu", "topk"]


def cli_in_child(argv):
    torch.set_num_threads(1)  # this child of pytest is forked: keep it off OpenMP's pool
    os._exit(main(argv))


def wait_for_rows(path: Path, process, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not (path.exists() and path.stat().st_size > 0):
        assert process.is_alive(), "the run ended before writing anything"
        assert time.monotonic() < deadline, "no rows within the time limit"
        time.sleep(0.005)


def kill_mid_run(tmp_path: Path, preset: Path, args: list[str]) -> Path:
    """SIGKILL a run at a random moment after its first rows landed; the output folder. A run
    that finished before the signal tests nothing: retry in a fresh folder with a shorter delay."""
    for attempt, longest_delay in enumerate([0.4, 0.1, 0.0]):
        out = tmp_path / f"killed{attempt}"
        argv = run_argv(out, preset, *args)
        cli = multiprocessing.get_context("fork").Process(target=cli_in_child, args=(argv,))
        cli.start()
        wait_for_rows(out / "results.csv", cli)
        time.sleep(random.uniform(0.0, longest_delay))
        os.kill(cli.pid, signal.SIGKILL)
        cli.join()
        if cli.exitcode == -signal.SIGKILL:
            return out
    pytest.fail("the run always finished before it could be killed")


def test_a_run_killed_at_a_random_moment_resumes_without_losing_or_doubling_rows(tmp_path, capsys):
    preset = write_preset(tmp_path, seeds=(0, 1, 2))  # 6 cells
    args = ["--variant", *VARIANTS]
    assert run(tmp_path / "reference", preset, *args) == 0
    reference = values(tmp_path / "reference" / "results.csv")

    out = kill_mid_run(tmp_path, preset, args)

    partial = read_results(out / "results.csv")  # whole: it parses, with every column
    assert list(partial.columns) == COLUMNS and len(partial) >= 1
    assert not partial.duplicated(KEY).any()
    done = values(out / "results.csv")
    pd.testing.assert_series_equal(done, reference.loc[done.index])

    capsys.readouterr()
    assert run(out, preset, *args) == 0
    finished = int(capsys.readouterr().out.split(" task cells already finished")[0].rsplit(", ", 1)[1])
    assert finished == partial["config_hash"].nunique()  # resumed: nothing finished was recomputed
    resumed = values(out / "results.csv")
    assert not resumed.index.duplicated().any()
    pd.testing.assert_series_equal(resumed, reference)
    assert not list(out.glob(".results.csv.*.tmp"))


def rows(config_hash, value):
    info = RunInfo("run", "abc", "tiny", "cpu", "2.x")
    return make_rows(info, task="sparsity", dataset="digits8", variant="relu", seed=0, config_hash=config_hash,
                     metrics={"l0": value}, directions={"l0": False})


def test_a_writer_killed_before_its_rename_leaves_the_old_file_and_a_temporary_the_next_write_removes(
        tmp_path, monkeypatch):
    results = ResultsFile(tmp_path / "results.csv")
    results.write(rows("a", 1.0))
    before = (tmp_path / "results.csv").read_bytes()

    def die(*_):
        raise KeyboardInterrupt  # the process "dies" between writing the temporary and renaming it

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", die)
        with pytest.raises(KeyboardInterrupt):
            results.write(rows("b", 2.0))
    assert (tmp_path / "results.csv").read_bytes() == before  # the old file, whole
    assert len(list(tmp_path.glob(".results.csv.*.tmp"))) == 1  # and the dead writer's temporary

    results.write(rows("c", 3.0))
    assert not list(tmp_path.glob(".results.csv.*.tmp"))
    assert sorted(read_results(tmp_path / "results.csv")["config_hash"]) == ["a", "c"]
