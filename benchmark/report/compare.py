"""`python -m benchmark compare BASE.csv NEW.csv`: what moved between two results files, and
whether anything regressed (SPEC section 8). CI runs the smoke preset and compares it with
`results/baselines/smoke.csv`.

Rows are matched by (task, dataset, variant, metric) and averaged over seeds; in a schema-2 file
the variant includes its sparsity setting (`topk [k=16]`; not the single `default` one), so each model of a sweep is compared
with itself. Only a move in the
metric's bad direction (`higher_is_better`) can be a regression, and only beyond the tolerance:

    tolerance = max(k · std over BASE's seeds, rel_tol · |BASE mean|, abs_tol)

(the std term only when BASE has two seeds or more). Cost descriptors such as `params` and
`flops_per_sample` have directions too (lower is better) and are treated the same way. A cell
(task, dataset, variant) whose status gets worse (ok → skipped → error) is a regression too.

Exit code: 1 on a regression (and on a missing row with --fail-on-missing), 0 otherwise, 2 on bad
input (a missing file, not a results CSV, several presets without --preset).
"""
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.errors import UserError
from benchmark.results import latest_runs

REQUIRED_COLUMNS = ["preset", "task", "dataset", "variant", "seed", "metric", "value", "higher_is_better", "status"]
CELL = ["task", "dataset", "variant"]
STATUS_RANK = {"error": 0, "skipped": 1, "ok": 2}
# Changes, in table order. `improved` and `regression` are moves beyond the tolerance; `worse` and
# `better` are moves within it (float noise, listed only with --all); status changes of a cell are
# `regression` or `improved`.
ORDER = ["regression", "missing", "improved", "new", "worse", "better"]
WITHIN_TOLERANCE = ["worse", "better"]


@dataclass(frozen=True)
class Tolerance:
    rel: float = 0.01
    abs: float = 1e-6
    k: float = 3.0

    def of(self, base_mean: float, base_std: float, base_seeds: int) -> float:
        floor = max(self.rel * abs(base_mean), self.abs)
        return max(self.k * base_std, floor) if base_seeds >= 2 else floor

    def describe(self) -> str:
        return (f"max({self.k:g}·std over BASE seeds when it has several, {self.rel:g}·|BASE|, {self.abs:g})")


# ----- reading -----
def load_results(path: Path, preset: str | None, role: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{role} {path} does not exist")
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values={"value": ["", "nan", "NaN"]})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"{role} {path} is not a results CSV ({type(err).__name__})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{role} {path} is not a results CSV: no column(s) {', '.join(missing)}")
    if frame.empty:
        raise UserError(f"{role} {path} has no rows")
    presets = sorted(set(frame["preset"].astype(str)))
    if preset is not None:
        frame = frame[frame["preset"].astype(str) == preset]
        if frame.empty:
            raise UserError(f"{role} {path} has no rows of preset {preset!r} (it has: {', '.join(presets)})")
    elif len(presets) > 1:
        raise UserError(f"{role} {path} holds several presets ({', '.join(presets)}): choose one with --preset")
    frame = latest_runs(frame).copy()  # a re-run cell counts once, as last written
    if "setting" in frame.columns:  # one sweep setting at a time
        swept = ~frame["setting"].astype(str).isin(["default", ""])
        frame.loc[swept, "variant"] = frame.loc[swept, "variant"].astype(str) + " [" + frame.loc[swept, "setting"].astype(str) + "]"
    frame["higher_is_better"] = frame["higher_is_better"].astype(str).str.lower() == "true"
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame


def cell_status(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (task, dataset, variant): `error` if any seed errored, else `ok` if any row is ok, else
    `skipped`; with the first non-empty message."""
    def summarise(group: pd.DataFrame) -> pd.Series:
        statuses = set(group["status"])
        status = "error" if "error" in statuses else "ok" if "ok" in statuses else "skipped"
        messages = [m for m in group.loc[group["status"] == status, "message"] if m] if "message" in group else []
        return pd.Series({"status": status, "message": messages[0] if messages else ""})

    return frame.groupby(CELL)[[c for c in ("status", "message") if c in frame.columns]].apply(summarise)


def metric_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """mean, std (0 for one seed) and seed count of every ok metric."""
    ok = frame[(frame["status"] == "ok") & (frame["metric"] != "")]
    table = ok.groupby(CELL + ["metric"]).agg(mean=("value", "mean"), std=("value", "std"),
                                              seeds=("value", "size"), higher=("higher_is_better", "first"))
    table["std"] = table["std"].fillna(0.0)
    return table


# ----- comparing -----
def compare_frames(base: pd.DataFrame, new: pd.DataFrame, tolerance: Tolerance) -> tuple[pd.DataFrame, int]:
    """(one row per change: change, task, dataset, variant, metric, base, new, delta, tolerance,
    note; the number of metrics compared and found equal, which are not listed)."""
    changes, unchanged = [], 0
    base_cells, new_cells = cell_status(base), cell_status(new)
    comparable = []
    for cell in base_cells.index.union(new_cells.index):
        before = base_cells.loc[cell] if cell in base_cells.index else None
        after = new_cells.loc[cell] if cell in new_cells.index else None
        if before is None or after is None:
            change = "new" if before is None else "missing"
            changes.append(_row(change, cell, "(cell)", _status(before), _status(after),
                                note=after["message"] if after is not None else ""))
        elif before["status"] != after["status"]:
            worse = STATUS_RANK[after["status"]] < STATUS_RANK[before["status"]]
            changes.append(_row("regression" if worse else "improved", cell, "(status)", before["status"],
                                after["status"], note=after["message"] if worse else ""))
        elif before["status"] == "ok":
            comparable.append(cell)
    base_stats, new_stats = metric_stats(base), metric_stats(new)
    for cell in comparable:
        base_metrics = _metrics_of(base_stats, cell)
        new_metrics = _metrics_of(new_stats, cell)
        for metric in base_metrics.index.union(new_metrics.index):
            if metric not in new_metrics.index:
                changes.append(_row("missing", cell, metric, base_metrics.loc[metric, "mean"], None))
            elif metric not in base_metrics.index:
                changes.append(_row("new", cell, metric, None, new_metrics.loc[metric, "mean"]))
            else:
                change = _metric_change(base_metrics.loc[metric], new_metrics.loc[metric], tolerance, cell, metric)
                if change is None:
                    unchanged += 1
                else:
                    changes.append(change)
    table = pd.DataFrame(changes, columns=["change", *CELL, "metric", "base", "new", "delta", "tolerance", "note"])
    table["order"] = table["change"].map(ORDER.index)
    return table.sort_values(["order", *CELL, "metric"]).drop(columns="order").reset_index(drop=True), unchanged


def _metrics_of(stats: pd.DataFrame, cell: tuple) -> pd.DataFrame:
    try:
        return stats.loc[cell]
    except KeyError:
        return stats.iloc[0:0].droplevel(CELL)


def _status(row) -> str | None:
    return None if row is None else row["status"]


def _row(change, cell, metric, base, new, delta=None, tolerance=None, note=""):
    return dict(change=change, task=cell[0], dataset=cell[1], variant=cell[2], metric=metric,
                base=base, new=new, delta=delta, tolerance=tolerance, note=note)


def _metric_change(before: pd.Series, after: pd.Series, tolerance: Tolerance, cell, metric) -> dict | None:
    delta = float(after["mean"]) - float(before["mean"])
    if delta == 0 or (math.isnan(delta) and math.isnan(before["mean"]) and math.isnan(after["mean"])):
        return None
    tol = tolerance.of(float(before["mean"]), float(before["std"]), int(before["seeds"]))
    worse = delta < 0 if bool(before["higher"]) else delta > 0
    if math.isnan(delta):
        change = "regression"
    elif abs(delta) <= tol:
        change = "worse" if worse else "better"
    else:
        change = "regression" if worse else "improved"
    return _row(change, cell, metric, before["mean"], after["mean"], delta, tol,
                note="higher is better" if before["higher"] else "lower is better")


# ----- output -----
def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def render(table: pd.DataFrame) -> str:
    header = ["change", "task", "dataset", "variant", "metric", "base", "new", "Δ", "tolerance", "note"]
    rows = [[r.change, r.task, r.dataset, r.variant, r.metric, _fmt(r.base), _fmt(r.new), _fmt(r.delta),
             _fmt(r.tolerance), str(r.note)[:100]] for r in table.itertuples()]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


# ----- CLI -----
def add_compare(sub):
    p = sub.add_parser("compare", help="compare two results CSVs; exit 1 on a regression",
                       description="Match BASE and NEW rows by (task, dataset, variant, metric), average "
                       "over seeds, and list what moved. A regression is a move in the metric's bad "
                       "direction beyond max(K·std over BASE's seeds, REL_TOL·|BASE|, ABS_TOL), or a cell "
                       "whose status got worse (ok → skipped → error). Lists regressions, missing and "
                       "new rows, and improvements beyond tolerance (--all: also the moves within it). "
                       "Exit 1 on a regression, 0 otherwise, 2 on bad input.")
    p.add_argument("base", type=Path, metavar="BASE.csv", help="the reference results")
    p.add_argument("new", type=Path, metavar="NEW.csv", help="the results to check")
    p.add_argument("--rel-tol", type=float, default=Tolerance.rel, help=f"relative tolerance (default {Tolerance.rel})")
    p.add_argument("--abs-tol", type=float, default=Tolerance.abs, help=f"absolute tolerance (default {Tolerance.abs})")
    p.add_argument("--k", type=float, default=Tolerance.k, help=f"tolerance in BASE standard deviations over seeds, "
                   f"when BASE has several seeds (default {Tolerance.k})")
    p.add_argument("--preset", help="compare only this preset's rows (needed when a file holds several)")
    p.add_argument("--fail-on-missing", action="store_true", help="exit 1 also when a row of BASE is missing from NEW")
    p.add_argument("--all", action="store_true", help="also list the moves within tolerance (worse, better)")
    p.set_defaults(handler=cmd_compare)


def cmd_compare(args) -> int:
    if min(args.rel_tol, args.abs_tol, args.k) < 0:
        raise UserError("--rel-tol, --abs-tol and --k must not be negative")
    base = load_results(args.base, args.preset, "BASE")
    new = load_results(args.new, args.preset, "NEW")
    tolerance = Tolerance(args.rel_tol, args.abs_tol, args.k)
    table, unchanged = compare_frames(base, new, tolerance)
    counts = table["change"].value_counts()
    shown = table if args.all else table[~table["change"].isin(WITHIN_TOLERANCE)]
    if not shown.empty:
        print(render(shown))
        print()
    beyond = ", ".join(f"{int(counts.get(c, 0))} {c}" for c in ORDER if c not in WITHIN_TOLERANCE)
    within = ", ".join(f"{int(counts.get(c, 0))} {c}" for c in WITHIN_TOLERANCE)
    print(f"compare {args.base} → {args.new}: {beyond}; within tolerance: {within}; {unchanged} unchanged. "
          f"Tolerance: {tolerance.describe()}")
    failed = counts.get("regression", 0) > 0 or (args.fail_on_missing and counts.get("missing", 0) > 0)
    if failed:
        print("FAILED: " + ("regression(s) beyond tolerance" if counts.get("regression", 0) else "missing row(s)"))
    return 1 if failed else 0

