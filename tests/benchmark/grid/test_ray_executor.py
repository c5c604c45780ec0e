"""`--executor ray`: every cell a Ray task on one local Ray instance with 2 CPUs (started once
for the file). The same numbers as the local executor; a task that raises, crashes, exits or
hangs is an error outcome (an `error` row) while the rest runs on; a killed driver leaves a
whole results.csv that the next run resumes; Ray missing or unreachable is one line, exit 2,
nothing written."""
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.cli import main
from benchmark.data import Dataset
from benchmark.errors import UserError
from benchmark.grid.isolation import Job, run_in_process, start_method
from benchmark.results import COLUMNS, read_results
from tests.benchmark._processes import is_dead
from tests.benchmark._submissions import broken, run, run_argv, write_preset

ray = pytest.importorskip("ray")
from benchmark.grid.ray_executor import connect, run_jobs_ray  # noqa: E402 - after the skip

# Workers unpickle this file's job functions by value: they need not import the test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT = Path(__file__).resolve().parents[3]
IDENTITY = ["task", "dataset", "variant", "setting", "seed", "metric"]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance with 2 CPUs for the whole file; its address (HOST:PORT)."""
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    auth_mode = os.environ.get("RAY_AUTH_MODE")  # ray.init sets it for this process and its children
    connect(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    if auth_mode is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = auth_mode


# ----- the executor on its own -----
def add(a, b):
    return a + b


def total(dataset, offset):
    return float(dataset.train.sum()) + offset


def raise_value_error():
    raise ValueError("bad input")


def kill_self(sig):
    os.kill(os.getpid(), sig)


def exit_with(code):
    os._exit(code)


def unpicklable():
    return threading.Lock()


def hang(pid_file):
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)


def outcomes(jobs, **kw):
    return {job.key: outcome for job, outcome in run_jobs_ray(jobs, **kw)}


def test_values_are_those_of_the_local_executor_and_a_shared_dataset_is_stored_once(cluster, monkeypatch):
    dataset = Dataset("toy", torch.arange(12.0).view(4, 3), torch.zeros(2, 3), {"seed": 0})
    jobs = [Job(i, total, (dataset, i)) for i in range(4)] + [Job("add", add, (2, 3))]
    puts, real_put = [], ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(value) or real_put(value, **kw))
    got = outcomes(jobs, timeout=30)
    expected = {job.key: outcome for job, outcome in run_in_process(jobs)}
    assert got == expected and got[3].value == 66.0 + 3
    assert len(puts) == 1 and puts[0] is dataset  # once, for the four jobs that carry it


def test_each_way_a_task_can_end_is_one_outcome(cluster, tmp_path):
    pid_file = tmp_path / "hang.pid"
    jobs = [Job("value", add, (2, 3)), Job("raises", raise_value_error, ()),
            Job("segfault", kill_self, (signal.SIGSEGV,)), Job("killed", kill_self, (signal.SIGKILL,)),
            Job("exits", exit_with, (3,)), Job("hangs", hang, (str(pid_file),)),
            Job("unpicklable", unpicklable, ()), Job("after", add, (1, 1))]
    start = time.monotonic()
    got = outcomes(jobs, timeout=2.0)
    assert time.monotonic() - start < 30  # the hang was cut at its limit, not waited for
    assert got["value"].value == 5 and got["after"].value == 2
    assert got["raises"].error.startswith("ValueError: bad input (test_ray_executor.py:")
    died = "Ray worker died before returning its results (a crash, a kill or os._exit)"
    assert got["segfault"].error == got["killed"].error == got["exits"].error == died
    assert got["hangs"].error == "timed out after 2 s"
    assert got["unpicklable"].error == "could not send the result back: TypeError: cannot pickle '_thread.lock' object"
    hung = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while not is_dead(hung) and time.monotonic() < deadline:  # killed, not left computing
        time.sleep(0.05)
    assert is_dead(hung)


def test_a_cell_that_no_node_can_run_is_refused_before_any_job_is_drawn(cluster):
    def jobs():
        raise AssertionError("drawn")
        yield

    with pytest.raises(UserError, match="has 2 CPUs, 0 GPUs; a cell needs 1 CPU and 1 GPU"):
        run_jobs_ray(jobs(), timeout=1, num_gpus_per_job=1)


def test_a_process_connected_to_ray_starts_its_local_children_by_spawn_not_fork(cluster):
    """A fork after ray.init broke this driver in the full test suite: it stopped requesting
    workers (gRPC in a forked process, ray-project/ray#59661)."""
    assert start_method("cpu") == "spawn"


# ----- the grid through the CLI -----
def values(path: Path) -> pd.Series:
    frame = read_results(path)
    return frame.set_index([c for c in IDENTITY if c in frame.columns])["value"].sort_index()


def run_local(argv: list[str]) -> None:
    """The CLI with the local executor in a new process: its children fork from a process that
    has never connected to Ray (as a user's run does), at fork's speed."""
    subprocess.run([sys.executable, "-m", "benchmark", *argv], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The tiny preset's values with the local executor (child processes): relu and topk, 3 seeds."""
    directory = tmp_path_factory.mktemp("local")
    preset = write_preset(directory, seeds=(0, 1, 2))
    run_local(run_argv(directory / "out", preset, "--variant", "relu", "topk"))
    return preset, values(directory / "out" / "results.csv")


def test_the_grid_on_ray_has_the_local_values_and_failing_cells_become_error_rows(cluster, local_reference,
                                                                                   tmp_path, capsys):
    preset, reference = local_reference
    failing = {"variants.py:HangsInTraining": "timed out after 15 s; raise --cell-timeout",
               "variants.py:CrashesInTraining": "Ray worker died before returning its results"}
    names = [broken(name.split(":")[1]) for name in failing]
    code = run(tmp_path / "ray", preset, "--seeds", "0", "--variant", "relu", *names, "topk", "--executor", "ray",
               "--cell-timeout", "15")
    assert code == 1
    frame = read_results(tmp_path / "ray" / "results.csv")
    for name, reason in failing.items():
        rows = frame[frame["variant"] == name]
        assert len(rows) >= 1 and set(rows["status"]) == {"error"}, name
        assert all(reason in message for message in rows["message"]), (name, set(rows["message"]))
    healthy = values(tmp_path / "ray" / "results.csv").drop(list(failing), level="variant")
    pd.testing.assert_series_equal(healthy, reference.xs(0, level="seed", drop_level=False))
    out = capsys.readouterr().out
    assert "worker died" not in out  # Ray's own notices stay off the driver's stdout


def cli_process(out: Path, preset: Path, address: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "benchmark",
            *run_argv(out, preset, "--variant", "relu", "topk", "--executor", "ray", "--ray-address", address)]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_mid_run(tmp_path: Path, preset: Path, address: str) -> Path:
    """SIGKILL a driver at a random moment after its first rows landed; its output folder."""
    for attempt, longest_delay in enumerate([0.4, 0.1, 0.0]):
        out = tmp_path / f"killed{attempt}"
        driver = cli_process(out, preset, address)
        deadline = time.monotonic() + 60
        while not ((out / "results.csv").exists() and (out / "results.csv").stat().st_size > 0):
            assert driver.poll() is None, "the run ended before writing anything"
            assert time.monotonic() < deadline, "no rows within the time limit"
            time.sleep(0.005)
        time.sleep(random.uniform(0.0, longest_delay))
        driver.send_signal(signal.SIGKILL)
        if driver.wait() == -signal.SIGKILL:
            return out
    pytest.fail("the run always finished before it could be killed")


def test_a_killed_driver_leaves_a_whole_csv_and_the_next_run_resumes(cluster, local_reference, tmp_path, capsys):
    preset, reference = local_reference  # 6 cells
    out = kill_mid_run(tmp_path, preset, cluster)
    partial = read_results(out / "results.csv")  # whole: it parses, with every column
    assert list(partial.columns) == COLUMNS and len(partial) >= 1
    done = values(out / "results.csv")
    assert not done.index.duplicated().any()
    pd.testing.assert_series_equal(done, reference.loc[done.index])

    capsys.readouterr()
    assert run(out, preset, "--variant", "relu", "topk", "--executor", "ray", "--ray-address", cluster) == 0
    finished = int(capsys.readouterr().out.split(" task cells already finished")[0].rsplit(", ", 1)[1])
    assert finished == partial["config_hash"].nunique()  # resumed: nothing finished was recomputed
    pd.testing.assert_series_equal(values(out / "results.csv"), reference)


# ----- bad input: one line, exit 2, nothing written -----
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the socket is closed


def refused(tmp_path, capsys, *args) -> str:
    out = tmp_path / "out"
    code = run(out, write_preset(tmp_path), "--variant", "relu", *args)
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_an_unreachable_cluster_is_one_line_naming_the_fix(tmp_path, capsys):
    port = closed_port()
    start = time.monotonic()
    err = refused(tmp_path, capsys, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}")
    assert err == (f"error: cannot reach the Ray cluster at 127.0.0.1:{port}: connection refused; start one "
                   "with `ray start --head` (it prints the address) or fix --ray-address")
    assert time.monotonic() - start < 20  # not Ray's minute of retries


@pytest.mark.parametrize("address, message", [("headnode", "expected HOST:PORT"),
                                               ("ray://headnode:10001", "Ray Client (ray://) is not supported")])
def test_a_malformed_address_is_one_line(tmp_path, capsys, address, message):
    err = refused(tmp_path, capsys, "--executor", "ray", "--ray-address", address)
    assert err.startswith(f"error: --ray-address {address}: {message}")


def test_ray_missing_is_one_line_naming_the_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    err = refused(tmp_path, capsys, "--executor", "ray")
    assert err == "error: --executor ray needs Ray: pip install -e '.[ray]'"


def test_an_address_without_the_ray_executor_is_refused(tmp_path, capsys):
    assert refused(tmp_path, capsys, "--ray-address", "127.0.0.1:6379") == "error: --ray-address needs --executor ray"


def test_the_smoke_preset_on_ray_gives_exactly_the_local_executors_values(cluster, tmp_path):
    """The whole smoke preset (every variant, control, task and sweep setting) on the local Ray
    instance with 2 CPUs and with the local executor: identical values, L0s and statuses."""
    frames = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        argv = ["run", "--all", "--preset", "smoke", "--out", str(out), "--no-progress", "--executor", executor]
        if executor == "ray":
            assert main([*argv, "--ray-address", cluster]) == 0
        else:
            run_local(argv)
        frame = read_results(out / "results.csv")
        frames[executor] = frame.set_index(IDENTITY)[["value", "l0", "status"]].sort_index()
    assert len(frames["local"]) > 1000
    pd.testing.assert_frame_equal(frames["local"], frames["ray"])


class SilentRay:
    """A cluster that never starts what it is given; free CPUs only after `busy_checks` checks."""
    import cloudpickle

    def __init__(self, busy_checks: int):
        self.busy_checks, self.checks, self.submitted, self.cancelled = busy_checks, 0, [], []

    def wait(self, refs, num_returns, timeout):
        time.sleep(timeout)
        return [], refs

    def available_resources(self):
        self.checks += 1
        return {"CPU": 0.0 if self.checks <= self.busy_checks else 2.0}

    def cancel(self, ref, force):
        self.cancelled.append(ref)

    def put(self, value):
        return value

    def remote(self, *args):
        self.submitted.append(object())
        return self.submitted[-1]


@pytest.mark.parametrize("busy_checks", [0, 2])
def test_tasks_that_never_start_on_a_cluster_with_room_end_the_run_as_errors_at_once(monkeypatch, busy_checks):
    """Seen in the full test suite: a driver that had forked stopped submitting; its tasks never
    started and the run waited without end. Now, once a task has waited START_TIMEOUT while the
    cluster had room, it and every cell not yet started are errors at once (a rerun resumes
    them). While the cluster is busy, waiting is right: no error, no resubmission."""
    from benchmark.grid import ray_executor
    monkeypatch.setattr(ray_executor, "START_TIMEOUT", 0.05)
    monkeypatch.setattr(ray_executor, "ROOM_GRACE", 0.05)
    silent = SilentRay(busy_checks)
    jobs = [Job(f"cell{i}", print, ()) for i in range(3)]
    got = list(ray_executor._run(silent, jobs, silent, timeout=60, window=1, threads=1, shared_types=(),
                                 needs={"CPU": 1, "GPU": 0}))
    assert [job.key for job, _ in got] == ["cell0", "cell1", "cell2"]
    assert all(outcome.error.startswith("Ray did not start the task within 0.05 s although the cluster had room")
               for _, outcome in got)
    assert len(silent.submitted) == 1 and silent.cancelled == silent.submitted  # the rest never submitted
    assert silent.checks == busy_checks + 2  # room seen twice, ROOM_GRACE apart


def test_a_slot_freed_a_moment_ago_is_not_a_lost_task(monkeypatch):
    """A long cell ends, its CPU is free for the instant before Ray leases it to the queued task:
    one look at the room must not end the run. The task starts before the second look."""
    from benchmark.grid import ray_executor
    monkeypatch.setattr(ray_executor, "START_TIMEOUT", 0.05)
    watch = ray_executor._StartWatch(SilentRay(busy_checks=0), {"CPU": 1, "GPU": 0})
    queued = ray_executor._Task(Job("cell", print, ()), stream=None)
    now = queued.start_by
    assert not watch.lost([queued], now) and queued.start_by == now + ray_executor.ROOM_GRACE
    assert not watch.lost([], now + 1)  # it started
    assert not watch.lost([queued], now + 100)  # a later wait is judged afresh, not against the old look
    assert watch.lost([queued], now + 100 + ray_executor.ROOM_GRACE)
