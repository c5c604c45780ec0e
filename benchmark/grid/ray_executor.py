"""Running grid cells as Ray tasks: on this machine, or spread over a Ray cluster (SPEC section 9,
`--executor ray`). The contract is `benchmark.grid.isolation.run_jobs`'s: jobs in, (job, Outcome) out
as they finish, the driver alone writes results; what goes wrong becomes a one-line reason
("timed out after 5 s", "Ray worker died ...", "ValueError: ... (file.py:12)").

- Each job is one Ray task (`num_cpus`/`num_gpus` per task; one torch thread per CPU).
- Large objects shared by many jobs (the datasets: every variant × setting of a (dataset, seed)
  carries the same `Dataset`) go into the object store once: the job is pickled here with every
  `Dataset` in it replaced by an index into the task's ObjectRef arguments, which Ray resolves
  in the worker (a copy per node instead of one per task).
- The time limit counts from the moment a task starts in its worker, not from submission: a
  task queued behind other work on a busy cluster is not timed out. The task is a streaming
  generator whose first item says "started". Past the limit, `ray.cancel(force=True)` kills it.
- No task is retried: a worker that dies (a crash, os._exit, SIGKILL, out of memory) is an
  error, as a child process that dies is with the local executor.
- A task that has not started within START_TIMEOUT although the cluster had room for it means
  this process's connection has stopped submitting (see `_StartWatch`): the cells not started yet
  are errors at once, to be resumed by a new run, instead of a wait without end.
- Starting Ray: the cluster at `address`, else a new local instance (`ray.init()`), quietly.
  Ray missing, an unreachable address or a refused token is a UserError (exit 2) naming the fix,
  raised before the first job is drawn, so nothing has been written.
"""
import io
import logging
import os
import pickle
import socket
import sys
import time
from typing import Any, Iterable, Iterator

from benchmark.data import Dataset
from benchmark.errors import UserError, short_error
from benchmark.grid.isolation import Job, Outcome

STARTED = "started"  # the first item every task yields
PROBE_SECONDS = 5.0  # how long an unreachable address may take to say so
RAY_LOGGER = logging.getLogger("benchmark.ray")  # where Ray's own notices go (silent by default)


# ----- connecting -----
def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install -e '.[ray]'") from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None):
    """Ray, initialised: the cluster at `address` ("HOST:PORT" of its head, or "auto": the one
    started on this node), else a new local instance with `num_cpus` (None: every core). A
    process already connected keeps its connection."""
    ray = import_ray()
    if address not in (None, "auto"):
        _probe(address)
    if ray.is_initialized():
        return ray
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address is None:  # "local": a new instance, never a cluster someone else started here
        address, options["num_cpus"] = "local", num_cpus
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        raise UserError(_connection_problem(address, err)) from None
    _quiet_worker_death_notices(ray)
    return ray


def _probe(address: str) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at `address`."""
    if "://" in address:  # Ray Client: no streaming tasks, which the time limits rely on
        raise UserError(f"--ray-address {address}: Ray Client (ray://) is not supported; run the benchmark "
                        "on a node of the cluster and give its head's HOST:PORT (as `ray start --head` prints)")
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=PROBE_SECONDS).close()
    except ValueError:
        raise UserError(f"--ray-address {address}: expected HOST:PORT (e.g. 10.0.0.1:6379) or 'auto'") from None
    except OSError as err:
        reason = err.strerror or f"no answer within {PROBE_SECONDS:g} s"
        raise UserError(f"cannot reach the Ray cluster at {address}: {reason.lower()}; start one with "
                        "`ray start --head` (it prints the address) or fix --ray-address") from None


def _connection_problem(address: str | None, err: BaseException) -> str:
    causes = []
    while err is not None:
        causes.append(err)
        err = err.__cause__ or err.__context__
    if any("AuthenticationError" in type(e).__name__ or "InvalidAuthToken" in str(e) for e in causes):
        return (f"the Ray cluster at {address} asks for its token: export RAY_AUTH_MODE=token, with the "
                "cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN, and run again")
    where = "a local Ray instance" if address == "local" else f"the Ray cluster at {address}"
    first = str(causes[0]).strip().splitlines()
    return f"cannot start or reach {where}: {first[0] if first else type(causes[0]).__name__}"


def _quiet_worker_death_notices(ray) -> None:
    """Ray prints "(raylet) A worker died or was killed ..." on the driver's stdout for every
    crashed or cancelled task; the results already say so, one line per cell. Its notices go to
    a logger instead. (A private hook: if a Ray version moves it, the notices just show again.)"""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "benchmark_quiet", False):
        return

    def to_logger(data, *args, **kwargs):
        if data.get("pid") == "raylet":
            for line in data.get("lines", []):
                RAY_LOGGER.info("%s", line)
        else:
            original(data, *args, **kwargs)

    to_logger.benchmark_quiet = True
    worker.print_to_stdstream = to_logger


def describe(ray) -> str:
    resources = ray.cluster_resources()
    return f"{int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs"


# ----- shipping a job -----
class _SharingPickler:
    """Pickles jobs, putting every instance of `shared_types` into the object store once and
    leaving in its place an index into the job's list of ObjectRefs (the task's arguments)."""

    def __init__(self, ray, shared_types: tuple[type, ...]):
        self.ray = ray
        self.shared_types = shared_types
        self.stored: dict[int, tuple[Any, Any]] = {}  # id -> (object, ref): holding the object keeps its id unique
        sharing = self

        class Pickler(ray.cloudpickle.Pickler):  # cloudpickle: functions and classes as Ray ships them
            def __init__(self, file, refs: list):
                super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
                self.refs, self.index = refs, {}

            def persistent_id(self, obj):
                return sharing.index_of(obj, self) if isinstance(obj, sharing.shared_types) else None

        self.pickler = Pickler

    def index_of(self, obj, pickler) -> int:
        key = id(obj)
        if key not in self.stored:
            self.stored[key] = (obj, self.ray.put(obj))
        if key not in pickler.index:
            pickler.index[key] = len(pickler.refs)
            pickler.refs.append(self.stored[key][1])
        return pickler.index[key]

    def dumps(self, value) -> tuple[bytes, list]:
        buffer, refs = io.BytesIO(), []
        self.pickler(buffer, refs).dump(value)
        return buffer.getvalue(), refs


class _SharedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, shared: tuple):
        super().__init__(io.BytesIO(data))
        self.shared = shared

    def persistent_load(self, index):
        return self.shared[index]


def _task(payload: bytes, driver_cwd: str, driver_path: list[str], threads: int, *shared):
    """The Ray task (a streaming generator): "started", then ("value", fn(*args)) or ("raised",
    reason). Relative paths (--out, FILE.py:Class) and imports mean what they meant on the driver
    where its directories exist (always on this machine; on a cluster with a shared filesystem)."""
    yield STARTED
    import torch
    from threadpoolctl import threadpool_limits

    if os.path.isdir(driver_cwd):
        os.chdir(driver_cwd)
    sys.path.extend(p for p in driver_path if p not in sys.path and os.path.isdir(p))
    # The task's CPUs, for torch and for BLAS/OpenMP (numpy, scipy: loaded ones here, later ones
    # through OMP_NUM_THREADS, which Ray sets): thread counts change float sums in the last digits.
    torch.set_num_threads(threads)
    threadpool_limits(threads)
    try:
        fn, args = _SharedUnpickler(payload, shared).load()
        message = ("value", fn(*args))
    except BaseException as err:  # noqa: BLE001 - even SystemExit: the driver gets a reason
        message = ("raised", short_error(err))
    yield message


# ----- the reasons -----
def _failure(ray, err: BaseException) -> str:
    exceptions = ray.exceptions
    if isinstance(err, getattr(exceptions, "OutOfMemoryError", ())):
        return "Ray worker killed: its node ran out of memory"
    if isinstance(err, exceptions.WorkerCrashedError):
        return "Ray worker died before returning its results (a crash, a kill or os._exit)"
    if isinstance(err, getattr(exceptions, "NodeDiedError", ())):
        return "the Ray node running this cell died"
    if isinstance(err, exceptions.TaskCancelledError):
        return "the Ray task was cancelled"
    if isinstance(err, exceptions.RayTaskError):  # e.g. a result that cannot be serialized
        cause = getattr(err, "cause", None) or err
        lines = str(cause).strip().splitlines() or [""]
        return f"could not send the result back: {type(cause).__name__}: {lines[-1]}"
    lines = str(err).strip().splitlines()
    return f"Ray: {type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


START_TIMEOUT = 120.0  # seconds a task may wait to start while the cluster has room for it
ROOM_GRACE = 10.0  # seconds between the two looks at the cluster's room before a task counts as lost


class _Task:
    def __init__(self, job: Job, stream):
        self.job = job
        self.stream = stream  # the ObjectRefGenerator
        self.start_by = time.monotonic() + START_TIMEOUT  # then: queued behind other work, or lost
        self.deadline: float | None = None  # set once the task has started

    def next_item(self, ray) -> Outcome | None:
        """The outcome once the task has finished, None when it has only started."""
        try:
            item = ray.get(next(self.stream))
        except StopIteration:
            return Outcome(error="the Ray task ended without a result")
        except Exception as err:  # noqa: BLE001 - every Ray failure is a reason
            return Outcome(error=_failure(ray, err))
        if item == STARTED:
            return None
        kind, payload = item
        return Outcome(value=payload) if kind == "value" else Outcome(error=payload)


# ----- the executor -----
def run_jobs_ray(jobs: Iterable[Job], *, timeout: float, address: str | None = None,
                 num_cpus_per_job: float = 1, num_gpus_per_job: float = 0, parallel: int | None = None,
                 num_cpus: int | None = None, shared_types: tuple[type, ...] = (Dataset,),
                 progress: bool = False) -> Iterator[tuple[Job, Outcome]]:
    """Run every job as a Ray task, each within `timeout` seconds from its start; yield (job,
    outcome) as they finish. At most `parallel` tasks are submitted at a time (None: as many as
    the cluster has room for, twice over, so that a freed slot never waits for the driver);
    jobs are drawn lazily. `num_cpus` sizes a new local instance (None: every core). Connects
    here, before returning: a UserError comes before any job is drawn. Closing the generator
    cancels the tasks still running."""
    ray = connect(address, num_cpus=num_cpus)
    needs = {"CPU": num_cpus_per_job, "GPU": num_gpus_per_job}
    slots = _slots(ray, needs, address)
    if progress:
        print(f"Ray: {describe(ray)} at {address or 'a local instance'}", file=sys.stderr)
    remote = ray.remote(_task).options(num_cpus=num_cpus_per_job, num_gpus=num_gpus_per_job, max_retries=0,
                                       retry_exceptions=False, num_returns="streaming")
    window = parallel or 2 * slots
    return _run(ray, jobs, remote, timeout, window, max(1, int(num_cpus_per_job)), shared_types, needs)


def _slots(ray, needs: dict[str, float], address: str | None) -> int:
    """How many tasks the cluster can run at once, each taking `needs` ({"CPU": n, "GPU": m});
    none at all is a UserError (a task would wait forever)."""
    resources = ray.cluster_resources()
    counts = [int(resources.get(kind, 0) // need) for kind, need in needs.items() if need > 0]
    slots = min(counts) if counts else int(resources.get("CPU", 1))
    if slots < 1:
        where = f"the Ray cluster at {address}" if address else "the local Ray instance"
        raise UserError(f"{where} has {describe(ray)}; a cell needs {needs['CPU']:g} CPU and "
                        f"{needs['GPU']:g} GPU: add nodes that have them, or use --device cpu")
    return slots


class _StartWatch:
    """Tells a task this driver has lost from one queued behind other work. Seen on one node after
    the driver process forked (the local executor, in the tests): the driver stops requesting
    workers, the raylet idles with every CPU free, and a new driver process runs the same tasks
    at once (gRPC across a fork, ray-project/ray#59661). A task is lost when it has waited
    START_TIMEOUT and the cluster showed room for it at two looks ROOM_GRACE apart (a slot
    freed a moment ago may not have been leased yet)."""

    def __init__(self, ray, needs: dict[str, float]):
        self.ray, self.needs = ray, needs
        self.room_since: float | None = None

    def has_room(self) -> bool:
        free = self.ray.available_resources()
        return all(free.get(kind, 0) >= need for kind, need in self.needs.items() if need > 0)

    @staticmethod
    def reason() -> str:
        return (f"Ray did not start the task within {START_TIMEOUT:g} s although the cluster had room: this "
                "process's Ray connection stopped submitting tasks (a fork after ray.init is a known cause); "
                "rerun to resume")

    def lost(self, unstarted: list[_Task], now: float) -> bool:
        """Whether the tasks not started yet are lost; if not, each waiting one's next look."""
        if not unstarted:
            self.room_since = None
            return False
        waiting = [task for task in unstarted if now >= task.start_by]
        if not waiting:
            return False
        if not self.has_room():  # queued behind other work: waiting is right
            self.room_since = None
            look_again = now + START_TIMEOUT
        else:
            self.room_since = now if self.room_since is None else self.room_since
            if now - self.room_since >= ROOM_GRACE:
                return True
            look_again = self.room_since + ROOM_GRACE
        for task in waiting:
            task.start_by = look_again
        return False


def _run(ray, jobs, remote, timeout: float, window: int, threads: int, shared_types,
         needs: dict[str, float]) -> Iterator[tuple[Job, Outcome]]:
    pickler = _SharingPickler(ray, shared_types)
    driver_cwd, driver_path = os.getcwd(), [p for p in sys.path if p]
    pending = iter(jobs)
    running: dict[Any, _Task] = {}  # stream -> task
    watch = _StartWatch(ray, needs)

    def submit(job: Job) -> _Task:
        payload, refs = pickler.dumps((job.fn, job.args))
        return _Task(job, remote.remote(payload, driver_cwd, driver_path, threads, *refs))

    def end(stream, error: str) -> tuple[Job, Outcome]:
        """Cancel a running task: its job and the error outcome to yield."""
        task = running.pop(stream)
        ray.cancel(stream, force=True)
        return task.job, Outcome(error=error)

    try:
        while True:
            while len(running) < window:
                job = next(pending, None)
                if job is None:
                    break
                task = submit(job)
                running[task.stream] = task
            if not running:
                return
            deadlines = [t.start_by if t.deadline is None else t.deadline for t in running.values()]
            wait = max(0.0, min(deadlines) - time.monotonic())
            ready, _ = ray.wait(list(running), num_returns=1, timeout=wait)
            for stream in ready:
                task = running[stream]
                outcome = task.next_item(ray)
                if outcome is None:
                    task.deadline = time.monotonic() + timeout * task.job.cells
                else:
                    del running[stream]
                    yield task.job, outcome
            now = time.monotonic()
            for stream, task in list(running.items()):
                if task.deadline is not None and now >= task.deadline:
                    yield end(stream, f"timed out after {timeout * task.job.cells:g} s")
            if not watch.lost([t for t in running.values() if t.deadline is None], now):
                continue
            for stream, task in list(running.items()):
                if task.deadline is None:
                    yield end(stream, watch.reason())
            for job in pending:  # they would be lost too: errors now, not hours of waiting
                yield job, Outcome(error=watch.reason())
    finally:
        for stream in running:
            ray.cancel(stream, force=True)
