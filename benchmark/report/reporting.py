"""What `run` and `eval` share once the grid is planned: run it (and the budget check), redraw
the leaderboard, report the counts and every failed cell, and choose the exit code."""
import sys
from pathlib import Path

DEFAULT_OUT = Path("results")


def leaderboard_path(out_dir: Path, explicit: Path | None) -> Path:
    """leaderboard.md beside results/ for the published run; inside --out for any other."""
    if explicit is not None:
        return explicit
    return Path("leaderboard.md") if Path(out_dir) == DEFAULT_OUT else Path(out_dir) / "leaderboard.md"


def run_and_report(runner, leaderboard: Path, budget_runner=None, preset=None) -> int:
    """Run the grid (then, if given, the budget check's longer re-training of the headlines),
    regenerate the leaderboard, print the counts and every failed cell; the exit code is 1
    when any cell errored (`run` and `eval` alike). `preset`: the run's preset, which the
    leaderboard reads its headlines from (a preset file's or an activations file's cannot be
    loaded by name)."""
    from benchmark.report.leaderboard import write_leaderboard

    runner.budget_runner = budget_runner  # the grid trains the check's longer models as forks of its own
    summary = runner.run()
    if budget_runner is not None:
        print(f"budget check: re-training each task's headline at {budget_runner.options.length:g}x", file=sys.stderr)
        extra = budget_runner.run()
        summary.errors += extra.errors
    board = write_leaderboard(runner.results.path, leaderboard, runner.out_dir / "plots", preset_config=preset)
    c = summary.counts
    print(f"{c['ok']} metrics ok, {c['skipped']} skipped, {c['error']} errors, "
          f"{c['resumed']} task cells already finished; results in {runner.results.path}, leaderboard in {board}")
    for line in summary.errors:
        print(f"error: {line}", file=sys.stderr)
    return 1 if summary.errors else 0
