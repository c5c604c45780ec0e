"""results.csv (SPEC section 7): long format, one row per metric, written atomically.

Schema 2 adds `setting` (the sparsity setting) and `l0` (the model's achieved test L0) after
`seed`, and `converged` and `steps` (its training) after `config_hash`; schema 3 adds `step_cap`
(the cap on its constant-rate steps) after `steps`; schema 4 adds `eval_seed` (the evaluation
seed of tasks whose evaluation draws randomness; 0 everywhere else) at the end. Files of
versions 1 to 3 are migrated when read (`migrate_v1`, `migrate_v2`, `migrate_v3`); a file of an
unknown version is refused.

Every write rewrites the file through a temporary file and an atomic rename, under an exclusive
lock, so a run killed at any moment (even with SIGKILL) leaves either the old or the new file,
never a torn one. The rows of one (task, dataset, variant, seed) share a `config_hash`; writing
them again replaces the old ones, so a re-run with `--force` does not double rows.
"""
import fcntl
import hashlib
import json
import os
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from benchmark import SCHEMA_VERSION, SUITE_VERSION
from benchmark.errors import UserError

COLUMNS = [
    "schema_version", "run_id", "timestamp_utc", "git_commit", "suite_version", "preset",
    "device", "torch_version", "task", "dataset", "variant", "seed", "setting", "l0", "metric", "value",
    "higher_is_better", "status", "message", "config_hash", "converged", "steps", "step_cap", "eval_seed",
]
V1_SETTING = "default"  # the one setting every version-1 model had
FINISHED = ("ok", "skipped")  # an `error` cell is retried by the next run


def content_hash(obj) -> str:
    """A stable short hash of a JSON-serialisable object (dict keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit(repo: Path | None = None) -> str:
    """The checkout's short commit, with "-dirty" when tracked files other than results and
    documents differ from it: results made by uncommitted code must not claim a commit that did
    not make them (a run rewriting results/ is not a code change)."""
    repo = Path(repo) if repo is not None else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=repo, timeout=5).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                  ":(exclude)results", ":(exclude)*.md"],
                                 capture_output=True, text=True, cwd=repo, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return f"{head}-dirty" if changed else head


@dataclass(frozen=True)
class RunInfo:
    """The columns shared by every row of one run."""

    run_id: str
    git_commit: str
    preset: str
    device: str
    torch_version: str

    @classmethod
    def new(cls, preset: str, device: str) -> "RunInfo":
        import torch

        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        # The random part keeps two runs started in the same second by one process apart.
        return cls(f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}", git_commit(), preset, device, torch.__version__)


def make_rows(info: RunInfo, *, task: str, dataset: str, variant: str, seed: int,
              config_hash: str, setting: str = V1_SETTING, l0: float = float("nan"),
              converged: bool | None = None, steps: int | None = None, step_cap: int | None = None,
              metrics: dict[str, float] | None = None, directions: dict[str, bool] | None = None,
              status: str = "ok", message: str = "", eval_seed: int = 0) -> list[dict]:
    """One row per metric; a skipped or error cell is one row with an empty metric. `converged`
    and `steps` are empty where no model was trained (references, failed cells)."""
    common = dict(
        schema_version=SCHEMA_VERSION, run_id=info.run_id,
        timestamp_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        git_commit=info.git_commit, suite_version=SUITE_VERSION, preset=info.preset,
        device=info.device, torch_version=info.torch_version, task=task, dataset=dataset,
        variant=variant, seed=seed, setting=setting, l0=float(l0), status=status, message=message,
        config_hash=config_hash, converged="" if converged is None else bool(converged),
        steps="" if steps is None else int(steps), step_cap="" if step_cap is None else int(step_cap),
        eval_seed=int(eval_seed),
    )
    if status != "ok":
        return [dict(common, metric="", value=float("nan"), higher_is_better="")]
    return [
        dict(common, metric=name, value=float(value), higher_is_better=bool(directions[name]))
        for name, value in metrics.items()
    ]


def migrate_v1(frame: pd.DataFrame) -> pd.DataFrame:
    """Schema 1 -> 2. Version 1 trained one model per (variant, dataset, seed): its setting is
    "default" and its L0 is what its `sparsity` row measured on the same cell (empty where the
    cell had none). Whether it converged was never measured: `converged` False, `steps` empty.
    The rows keep their suite_version, so the leaderboard never mixes them with newer ones."""
    frame = frame.copy()
    measured = frame[(frame["task"] == "sparsity") & (frame["metric"] == "l0") & (frame["status"] == "ok")]
    l0 = measured.groupby(["dataset", "variant", "seed"])["value"].mean()
    keys = pd.MultiIndex.from_frame(frame[["dataset", "variant", "seed"]])
    frame["l0"] = l0.reindex(keys).to_numpy()
    frame["setting"] = V1_SETTING
    frame["converged"] = False
    frame["steps"] = ""
    return migrate_v2(frame)


def migrate_v2(frame: pd.DataFrame) -> pd.DataFrame:
    """Schema 2 -> 3: the step cap was never recorded (training ran a fixed number of epochs)."""
    frame = frame.copy()
    frame["step_cap"] = ""
    return migrate_v3(frame)


def migrate_v3(frame: pd.DataFrame) -> pd.DataFrame:
    """Schema 3 -> 4: every evaluation was the task's one draw, evaluation seed 0."""
    frame = frame.copy()
    frame["eval_seed"] = 0
    frame["schema_version"] = SCHEMA_VERSION
    return frame[COLUMNS]


RUN_CELL = ["task", "dataset", "variant", "setting", "seed"]  # what one run writes once


def latest_runs(results: pd.DataFrame) -> pd.DataFrame:
    """Each cell's rows from the last run that wrote it (file order is write order). A cell
    re-run under a changed configuration (a new config_hash) leaves its old rows in the CSV; no
    reader may average or interpolate them beside the new ones. A frame without run ids (a
    foreign file) is returned as it is."""
    if results.empty or "run_id" not in results.columns:
        return results
    keys = [c for c in RUN_CELL if c in results.columns]
    last_run = results.groupby(keys, dropna=False)["run_id"].transform("last")
    return results[results["run_id"] == last_run]


def read_results(path: Path) -> pd.DataFrame:
    """results.csv in the current schema (a version-1 file is migrated; any other version, or a
    file that is not a results file, is refused with one line)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.read_csv(path, keep_default_na=False, na_values={"value": ["", "nan", "NaN"], "l0": ["", "nan", "NaN"]},
                        # these as written ("True", "1536", "" for a reference row): read in chunks, a
                        # large file would otherwise mix bools, floats and strings in one column
                        dtype={"setting": str, "message": str, "config_hash": str, "converged": str, "steps": str,
                               "step_cap": str, "higher_is_better": str})
    if "schema_version" not in frame.columns:
        raise UserError(f"{path} is not a results file (no schema_version column)")
    if frame.empty and not set(COLUMNS) - set(frame.columns):  # the header alone: a file with no rows yet
        return pd.DataFrame(columns=COLUMNS)
    versions = set(pd.to_numeric(frame["schema_version"], errors="coerce"))
    if versions == {1}:
        return migrate_v1(frame)
    if versions == {2}:
        return migrate_v2(frame)
    if versions == {3}:
        return migrate_v3(frame)
    if versions != {SCHEMA_VERSION} or set(COLUMNS) - set(frame.columns):
        raise UserError(f"{path} has schema version(s) {sorted(map(str, versions))}; this suite reads "
                        f"versions 1 to {SCHEMA_VERSION}: move the file away or re-run into a new --out")
    return frame


@dataclass(frozen=True)
class _Written:
    """What a ResultsFile last wrote: the file's identity after the write, its text, its hashes."""

    signature: tuple
    text: str
    hashes: frozenset


class ResultsFile:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._written: _Written | None = None

    def __getstate__(self):
        # A copy sent to a child process or a Ray task forgets the text it would carry (megabytes
        # on a long run, pickled with every job): it is only a cache of the file.
        return dict(self.__dict__, _written=None)

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def finished_hashes(self) -> set[str]:
        frame = read_results(self.path)
        return set(frame.loc[frame["status"].isin(FINISHED), "config_hash"])

    def _remove_stale_temporaries(self) -> None:
        """Temporary files left by a writer killed before its rename. Only a lock holder writes
        one, and we hold the lock: any that exists is stale (never read: it is not results.csv)."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)

    def write(self, rows: list[dict]) -> None:
        """Replace the rows of every config_hash in `rows`, atomically (a whole new file renamed
        over the old one)."""
        if not rows:
            return
        replaced = {row["config_hash"] for row in rows}
        new = pd.DataFrame(rows, columns=COLUMNS)
        with self._locked():
            self._remove_stale_temporaries()
            known = self._written if self._written and self._written.signature == self._signature() else None
            if known is not None and not replaced & known.hashes:
                # New cells only, on the file as this writer left it: its text plus theirs, without
                # parsing and formatting every earlier row again (that made a run's writes
                # quadratic in its rows).
                text, hashes = known.text + new.to_csv(index=False, header=False), known.hashes | replaced
            else:
                frame = read_results(self.path)
                frame = frame[~frame["config_hash"].isin(replaced)]
                frame = new if frame.empty else pd.concat([frame, new], ignore_index=True)
                text, hashes = frame.to_csv(index=False), frozenset(frame["config_hash"].astype(str))
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with open(tmp, "w", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            self._written = _Written(self._signature(), text, hashes)

    def _signature(self) -> tuple | None:
        """The file's identity: every write renames a new file over it (a new inode), so another
        writer's change shows here."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns
