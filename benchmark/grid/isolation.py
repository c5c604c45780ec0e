"""Running grid cells in child processes, so that a variant that crashes, hangs or leaks cannot
take the run down with it (SPEC section 10).

Each job is `fn(*args)` in its own process, with a wall-clock limit. The child sends back what
`fn` returned through a pipe; the parent alone writes results. What can go wrong becomes a
one-line reason instead of a result: "timed out after 5 s", "child process died with signal 11
(SIGSEGV)", "child process exited with code 3 before returning its results".

Start method: 'fork' on CPU (cheap: the parent's datasets are inherited copy-on-write), 'spawn'
when the device is CUDA (a CUDA context does not survive a fork). Children compute with one CPU
thread: GNU OpenMP (PyTorch's CPU thread pool) deadlocks in a forked child once the parent has
used it, and one thread per process is also what `jobs` > 1 wants. Children are killed if the
parent dies (Linux), so a `kill -9` of the run leaves no orphan training on.

A forked child starts from the parent's memory, so what the parent has not imported, every
child imports again: e.g. torch.optim imports torch._dynamo (and sympy) on the first optimizer
built, 1-2 s. The parent therefore imports whatever its forked children imported, once, and
later children inherit it.
"""
import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable, Iterator

import threadpoolctl
import torch

from benchmark.errors import short_error

PR_SET_PDEATHSIG = 1  # prctl option: the signal the kernel sends a child when its parent dies


@dataclass
class Job:
    key: Any  # anything the caller needs to recognise the outcome
    fn: Callable  # module-level (picklable) under 'spawn'
    args: tuple
    cells: int = 1  # grid cells the job holds (a stacked sweep holds several): its time limit scales


@dataclass
class Outcome:
    value: Any = None
    error: str | None = None  # why there is no value


def start_method(device: str) -> str:
    """'fork' (the children start at once) unless the device is CUDA or this process is
    connected to Ray: a fork after ray.init stopped the driver in our tests from submitting any
    task (gRPC's threads do not survive a fork, ray-project/ray#59661)."""
    return "spawn" if str(device).startswith("cuda") or _connected_to_ray() else "fork"


def _connected_to_ray() -> bool:
    ray = sys.modules.get("ray")  # never imported here: a process without Ray pays nothing
    return ray is not None and ray.is_initialized()


def _die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: orphans finish their cell and exit
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _child_main(conn, fn, args, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(1)
    # One thread for the BLAS libraries too (numpy's and scipy's, used by scikit-learn in the
    # tasks): otherwise each child runs a full-size thread pool, oversubscribing the cores, and
    # float sums depend on the thread count (the Ray executor pins them the same way).
    os.environ["OMP_NUM_THREADS"] = "1"
    threadpoolctl.threadpool_limits(1)
    modules_before = set(sys.modules)
    try:
        message = ("value", fn(*args))
    except BaseException as err:  # noqa: BLE001 - even SystemExit: the parent gets a reason
        message = ("raised", short_error(err))
    imported = [name for name in sys.modules if name not in modules_before]
    try:
        conn.send((*message, imported))
    except Exception as err:  # e.g. a value that cannot be pickled
        conn.send(("raised", f"could not send the result back: {short_error(err)}", imported))
    finally:
        conn.close()


def _import_in_parent(names: list[str]) -> None:
    """Import what a forked child imported, so that the next children inherit it."""
    for name in names:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 - e.g. a module generated in the child's temp dir
                pass


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = f" ({signal.Signals(-exitcode).name})"
        except ValueError:
            name = ""
        return f"child process died with signal {-exitcode}{name}"
    return f"child process exited with code {exitcode} before returning its results"


class _Running:
    def __init__(self, job: Job, context, timeout: float):
        self.job = job
        self.timeout = timeout
        self.conn, child_conn = context.Pipe(duplex=False)
        self.process = context.Process(target=_child_main, args=(child_conn, job.fn, job.args, os.getpid()),
                                       name="cell")
        self.process.start()
        child_conn.close()  # the child holds the only writer: EOF here means it is gone
        self.deadline = time.monotonic() + timeout
        self.imported: list[str] = []  # modules the child imported

    def collect(self) -> Outcome:
        """The outcome once `conn` is readable (a message, or EOF when the child died)."""
        try:
            kind, payload, self.imported = self.conn.recv()
        except (EOFError, OSError):
            self.process.join()
            return Outcome(error=_death_reason(self.process.exitcode))
        self.process.join()
        return Outcome(value=payload) if kind == "value" else Outcome(error=payload)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def run_jobs(jobs: Iterable[Job], *, timeout: float, method: str, parallel: int = 1) -> Iterator[tuple[Job, Outcome]]:
    """Run every job in a child process, at most `parallel` at a time, each within `timeout`
    seconds; yield (job, outcome) as they finish. Jobs are drawn lazily from `jobs`. Closing
    the generator (or an exception in the caller) kills the children still running."""
    context = multiprocessing.get_context(method)
    pending = iter(jobs)
    running: list[_Running] = []
    try:
        while True:
            while len(running) < parallel:
                job = next(pending, None)
                if job is None:
                    break
                running.append(_Running(job, context, timeout * job.cells))
            if not running:
                return
            wait([r.conn for r in running], timeout=max(0.0, min(r.deadline for r in running) - time.monotonic()))
            now = time.monotonic()
            for r in list(running):
                if r.conn.poll():
                    running.remove(r)
                    outcome = r.collect()
                    if method == "fork":
                        _import_in_parent(r.imported)
                    yield r.job, outcome
                elif now >= r.deadline:
                    running.remove(r)
                    r.kill()
                    yield r.job, Outcome(error=f"timed out after {r.timeout:g} s")
    finally:
        for r in running:
            r.kill()


def run_in_process(jobs: Iterable[Job]) -> Iterator[tuple[Job, Outcome]]:
    """The same contract without isolation (for debugging: breakpoints, profilers). No time
    limit; an exception still becomes an outcome, a crash ends the run."""
    for job in jobs:
        try:
            yield job, Outcome(value=job.fn(*job.args))
        except Exception as err:
            yield job, Outcome(error=short_error(err))
