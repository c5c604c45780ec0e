"""Every cell runs in a child process with a time limit: an exception, a crash, a NaN or a hang is
an `error` row with its reason, and the rest of the grid runs on."""
import faulthandler
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.cli import main
from benchmark.config import load_preset
from benchmark.grid.isolation import Job, run_jobs, start_method
from benchmark.grid.runner import RunOptions, Runner
from tests.benchmark._processes import is_dead
from tests.benchmark._submissions import broken, run, values, write_preset


# ----- the child-process runner on its own -----
@pytest.mark.parametrize("device, ray_connected, method", [("cpu", None, "fork"), ("cpu", False, "fork"),
                                                           ("cpu", True, "spawn"), ("cuda", None, "spawn")])
def test_children_fork_on_cpu_unless_this_process_is_connected_to_ray(monkeypatch, device, ray_connected, method):
    """None: Ray never imported. Connected: a fork would stop this driver's Ray tasks."""
    fake = None if ray_connected is None else type("FakeRay", (), {"is_initialized": staticmethod(lambda: ray_connected)})
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert start_method(device) == method


def add(a, b):
    return a + b


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def raise_value_error():
    raise ValueError("bad input")


def kill_self(sig):
    faulthandler.disable()  # pytest's handler would print the child's stack on SIGSEGV
    os.kill(os.getpid(), sig)


def exit_with(code):
    os._exit(code)


def outcomes(jobs, **kw):
    return {job.key: outcome for job, outcome in run_jobs(jobs, method="fork", **kw)}


def test_each_way_a_child_can_end_is_one_outcome():
    jobs = [Job("value", add, (2, 3)), Job("raises", raise_value_error, ()),
            Job("segfault", kill_self, (signal.SIGSEGV,)), Job("killed", kill_self, (signal.SIGKILL,)),
            Job("exits", exit_with, (3,)), Job("hangs", sleep_then, (60, None))]
    start = time.monotonic()
    got = outcomes(jobs, timeout=1.0, parallel=3)
    assert time.monotonic() - start < 10  # the hang was cut at its limit, not waited for
    assert got["value"].value == 5 and got["value"].error is None
    assert got["raises"].error.startswith("ValueError: bad input (test_isolation.py:")
    assert got["segfault"].error == "child process died with signal 11 (SIGSEGV)"
    assert got["killed"].error == "child process died with signal 9 (SIGKILL)"
    assert got["exits"].error == "child process exited with code 3 before returning its results"
    assert got["hangs"].error == "timed out after 1 s"


def test_parallel_jobs_overlap_and_all_come_back():
    start = time.monotonic()
    got = outcomes([Job(i, sleep_then, (0.5, i)) for i in range(4)], timeout=30, parallel=4)
    assert sorted(o.value for o in got.values()) == [0, 1, 2, 3]
    assert time.monotonic() - start < 1.9  # four half-second jobs, at once


def import_module(name):
    __import__(name)


def test_the_parent_imports_what_a_forked_child_imported(tmp_path, monkeypatch):
    """So that the next children inherit it instead of importing it again (torch.optim imports
    torch._dynamo on the first optimizer: 1-2 s per child otherwise)."""
    (tmp_path / "lazily_imported_xyz.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazily_imported_xyz", raising=False)
    got = outcomes([Job("import", import_module, ("lazily_imported_xyz",))], timeout=30)
    assert got["import"].error is None
    assert "lazily_imported_xyz" in sys.modules
    sys.modules.pop("lazily_imported_xyz")


def send_pid_and_sleep(conn):
    conn.send(os.getpid())
    time.sleep(60)


def parent_of_a_sleeper(conn):
    torch.set_num_threads(1)  # a forked child of pytest: keep it off OpenMP's pool
    list(run_jobs([Job(0, send_pid_and_sleep, (conn,))], timeout=60, method="fork"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux only (prctl, /proc)")
def test_children_die_when_their_parent_is_killed():
    """`kill -9` of a run leaves no cell training on as an orphan."""
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    parent = multiprocessing.get_context("fork").Process(target=parent_of_a_sleeper, args=(send,))
    parent.start()
    assert receive.poll(30)
    child = receive.recv()
    assert not is_dead(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.join()
    deadline = time.monotonic() + 5
    while not is_dead(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert is_dead(child)


# ----- the grid -----
RUNTIME_FAILURES = {
    "variants.py:HangsInTraining": "timed out after 8 s; raise --cell-timeout",
    "variants.py:CrashesInTraining": "child process died with signal 11 (SIGSEGV)",
    "variants.py:ExitsInTraining": "child process exited with code 3 before returning its results",
    "variants.py:NaNInTraining": "training: TrainingDiverged: training loss became nan by step ",
    "variants.py:FailsInEvaluation": "evaluation: ValueError: no inference mode (variants.py:",
}


def test_failing_cells_become_error_rows_and_the_grid_runs_on(tmp_path, capsys):
    out = tmp_path / "out"
    names = [broken(n.split(":")[1]) for n in RUNTIME_FAILURES]
    # Healthy cells take under a second: 8 s leaves headroom on a loaded machine.
    code = run(out, write_preset(tmp_path), "--variant", "relu", *names, "topk", "--cell-timeout", "8", "--jobs", "2")
    assert code == 1
    frame = pd.read_csv(out / "results.csv", keep_default_na=False)
    for name in ["relu", "topk"]:  # before and after the failures in the grid's order
        rows = frame[frame["variant"] == name]
        assert set(rows["status"]) == {"ok"} and len(rows) > 3
    for name, reason in RUNTIME_FAILURES.items():
        rows = frame[frame["variant"] == name]
        assert len(rows) == 1 and rows["status"].iloc[0] == "error", name
        assert all(reason in message for message in rows["message"]), (name, set(rows["message"]))
    err = capsys.readouterr().err
    assert err.count("error: ") == len(RUNTIME_FAILURES)  # the summary names every failed cell
    assert "error: sparsity / digits8 / variants.py:HangsInTraining [default] / seed 0: timed out after 8 s" in err


def test_a_child_gives_the_same_numbers_as_the_parent(tmp_path):
    """Isolation changes where a cell runs, not what it computes: 'fork', 'spawn' (the CUDA
    path, exercised here on the CPU: the child imports the submitted file afresh) and in-process
    runs agree (the in-process run with one CPU thread, like the children)."""
    preset = load_preset(str(write_preset(tmp_path)))
    frames = {}
    for mode in ["fork", "spawn", "in-process"]:
        out = tmp_path / mode
        options = RunOptions(preset=preset, variants=[broken("Tiny")], out_dir=out, progress=False,
                             isolate=mode != "in-process", start_method=None if mode == "in-process" else mode)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            summary = Runner(options).run()
        finally:
            torch.set_num_threads(threads)
        assert summary.counts["error"] == 0 and summary.counts["ok"] >= 5
        frames[mode] = values(out / "results.csv")
    pd.testing.assert_series_equal(frames["fork"], frames["spawn"])
    pd.testing.assert_series_equal(frames["fork"], frames["in-process"])


def test_a_contract_check_that_hangs_is_cut_at_the_time_limit(tmp_path, capsys):
    source = tmp_path / "slow.py"
    source.write_text("from torch import nn\n\nclass Slow(nn.Module):\n"
                      "    def __init__(self, shape, n):\n        super().__init__()\n"
                      "        while True:\n            pass\n\n"
                      "    def encode(self, x): ...\n    def decode(self, c): ...\n    def loss(self, x, y, c): ...\n")
    out = tmp_path / "out"
    code = run(out, write_preset(tmp_path), "--variant", f"{source}:Slow", "--cell-timeout", "1")
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert err.strip() == "error: slow.py:Slow: the contract check did not finish: timed out after 1 s"


@pytest.mark.parametrize("flag", ["--cell-timeout=0", "--cell-timeout=-3", "--jobs=0"])
def test_bad_limits_are_refused(tmp_path, capsys, flag):
    try:
        code = main(["run", "--variant", "relu", "--preset", str(write_preset(tmp_path)), "--out",
                     str(tmp_path / "out"), flag])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2 and not (tmp_path / "out").exists()
