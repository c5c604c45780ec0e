"""Command line: `python -m benchmark {run,list,leaderboard,...} --help`."""
import argparse
import sys
from pathlib import Path

from benchmark.config import is_preset_file, load_preset, preset_names
from benchmark.errors import UserError
from benchmark.registry import DATASETS, TASKS, VARIANTS
from benchmark.perf.throughput import add_perf
from benchmark.report.compare import add_compare
from benchmark.interop.commands import add_eval, add_export, print_foreign
from benchmark.report.reporting import DEFAULT_OUT, leaderboard_path, run_and_report

def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


# ----- run -----
def add_run(sub):
    p = sub.add_parser("run", help="train and evaluate a grid of variants × tasks × seeds",
                       description="Train every selected variant on every dataset its tasks need "
                       "(once per seed), score it on every selected task, append to results.csv "
                       "and regenerate the leaderboard. Finished cells are skipped unless --force.")
    p.add_argument("--all", action="store_true", help="every registered variant and every task of the preset")
    p.add_argument("--variant", nargs="+", metavar="NAME", help="variant name(s) (see `list`), or an external "
                   "variant: path/to/file.py:Class or package.module:Class (checked against the contract first)")
    p.add_argument("--config", type=Path, metavar="FILE.yaml", help="hyperparameters of the external variant(s); "
                   "format in benchmark/submission.py and examples/my_variant.yaml")
    p.add_argument("--task", nargs="+", metavar="NAME", help="task name(s) (default: all of the preset)")
    p.add_argument("--preset", default="default", help=f"one of {', '.join(preset_names())}, or a path to a YAML file (default: default)")
    add_set_argument(p)
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds (default: the preset's)")
    p.add_argument("--dataset", nargs="+", metavar="NAME", help="only these datasets of the selected tasks "
                   "(default: every dataset the tasks list)")
    p.add_argument("--activations", type=Path, metavar="FILE", help="train and score on your own activations "
                   "([N, d] in .npy, .safetensors or .pt) instead of the preset's datasets (README: your activations)")
    p.add_argument("--labels", type=Path, metavar="FILE", help="with --activations: a CSV of binary attributes, one "
                   "row per activation row, for sparse_probing")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: cuda if available")
    p.add_argument("--data-root", type=Path, help="where downloadable datasets (cifar10, mnist) live (default: ./data)")
    p.add_argument("--download", action="store_true", help="download missing datasets into --data-root")
    p.add_argument("--force", action="store_true", help="recompute cells already in results.csv")
    p.add_argument("--out", type=Path, help="results folder: results.csv, plots/, cache/ (default: results; with "
                   "--activations, results/activations-<file stem>)")
    p.add_argument("--leaderboard", type=Path, help="leaderboard file to regenerate (default: leaderboard.md for results/, else OUT/leaderboard.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--cell-timeout", type=positive_float, metavar="SECONDS", help="time limit of one cell "
                   "(training + its tasks; default: the preset's cell_timeout, else 600); past it, an error row")
    p.add_argument("--jobs", type=int, metavar="N", help="cells run at the same time, one process and one "
                   "CPU thread each (default: one per available CPU core, at most 8; 1 on CUDA)")
    p.add_argument("--in-process", action="store_true", help="run cells in this process, not in time-limited "
                   "child processes (for debuggers and profilers; a crash then ends the run)")
    p.add_argument("--no-controls", action="store_true", help="leave out the preset's controls (pca, pca-topk, "
                   "random-dict, block-basis), which otherwise run beside the variants")
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="where cells run: local child "
                   "processes (default), or Ray tasks on this machine or a cluster (pip install -e '.[ray]')")
    p.add_argument("--no-twins", action="store_true", help="leave out the untrained twins (each trainable "
                   "variant initialised from the data, zero steps), which otherwise run beside the variants")
    p.add_argument("--no-stack", action="store_true", help="train every model alone instead of each sweep of a "
                   "stackable variant as one stacked model (same results within float rounding; slower)")
    p.add_argument("--no-budget-check", action="store_true", help="skip the re-training of each task's headline at "
                   "the preset's longer budget (results-2x.csv; the leaderboard then says no check was made)")
    p.add_argument("--ray-address", metavar="ADDR", help="with --executor ray: the cluster's HOST:PORT (printed "
                   "by `ray start --head`) or 'auto' (default: start a local Ray instance)")
    p.set_defaults(handler=cmd_run)


def add_set_argument(p) -> None:
    p.add_argument("--set", nargs="+", default=[], metavar="KEY.PATH=VALUE",
                   help="change the preset for this run, e.g. datasets.synth.train.batch_size=128 or "
                   "train.lr=0.004 (VALUE read as YAML); the rows carry the changed preset's own name")


def cmd_run(args) -> int:
    from benchmark.grid.runner import RunOptions, Runner, budget_check_options

    if not (args.all or args.variant or args.task):
        raise UserError("say what to run: --all, or --variant NAME and/or --task NAME")
    preset = load_preset(args.preset, args.set)
    out = args.out or DEFAULT_OUT
    if args.activations is not None:  # the preset's variants, controls and tasks on the file
        from benchmark.interop.own_data import activations_preset, dataset_name

        if args.dataset:
            raise UserError("--dataset and --activations exclude each other: the file is the only dataset")
        preset = activations_preset(preset, args.activations, args.labels)
        out = args.out or DEFAULT_OUT / f"activations-{dataset_name(args.activations)}"
    elif args.labels is not None:
        raise UserError("--labels goes with --activations")
    options = RunOptions(preset=preset, variants=args.variant, tasks=args.task, seeds=args.seeds, datasets=args.dataset,
                         device=args.device, out_dir=out, data_root=args.data_root,
                         download=args.download, force=args.force, progress=not args.no_progress,
                         variant_config=args.config, cell_timeout=args.cell_timeout,
                         isolate=not args.in_process, jobs=args.jobs, executor=args.executor,
                         controls=not args.no_controls, stack=not args.no_stack, twins=not args.no_twins,
                         ray_address=args.ray_address)
    if args.ray_address and args.executor != "ray":
        raise UserError("--ray-address needs --executor ray")
    budget = None if args.no_budget_check else budget_check_options(options)
    return run_and_report(Runner(options), leaderboard_path(out, args.leaderboard),
                          Runner(budget) if budget is not None else None, preset=preset)


# ----- list -----
def add_list(sub):
    p = sub.add_parser("list", help="list variants, tasks, datasets and presets",
                       description="List what is registered: variants, tasks (with metrics), datasets, presets.")
    p.add_argument("--foreign", action="store_true", help="also the foreign SAEs: overcomplete classes "
                   "(--variant overcomplete:CLASS) and the checkpoint formats eval reads")
    p.set_defaults(handler=cmd_list)


def first_line(obj) -> str:
    doc = obj.__doc__ or sys.modules[obj.__module__].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def cmd_list(args) -> int:
    print("variants:")
    for name in VARIANTS.names():
        cls = VARIANTS.get(name)
        needs = f" [requires {', '.join(sorted(cls.requires))}]" if cls.requires else ""
        print(f"  {name:12s}{needs} {first_line(cls)}")
    print("tasks:")
    for name in TASKS.names():
        task = TASKS.get(name)
        metrics = ", ".join(f"{m}{'↑' if up else '↓'}" for m, up in task.metrics.items())
        print(f"  {name:20s} headline {task.headline}; {metrics}")
    print("datasets:")
    for name in DATASETS.names():
        print(f"  {name}")
    print("presets:")
    for name in preset_names():
        print(f"  {name:8s} {load_preset(name).description}")
    if getattr(args, "foreign", False):
        print_foreign()
    return 0


# ----- leaderboard -----
def add_leaderboard(sub):
    p = sub.add_parser("leaderboard", help="regenerate leaderboard.md from results.csv",
                       description="Rewrite the leaderboard (tables and plots) from a results CSV.")
    p.add_argument("--results", type=Path, default=DEFAULT_OUT / "results.csv", help="default: results/results.csv")
    p.add_argument("--output", type=Path, help="default: leaderboard.md for results/results.csv, else beside the CSV")
    p.add_argument("--preset", help="which preset's rows: a name, or the YAML file they were run with (default: "
                   "the preset of the most recent row)")
    add_set_argument(p)
    p.set_defaults(handler=cmd_leaderboard)


def cmd_leaderboard(args) -> int:
    from benchmark.report.leaderboard import write_leaderboard

    out_dir = args.results.parent
    if args.set and args.preset is None:
        raise UserError("--set goes with --preset: the preset the rows were run with, and the same --set")
    own = args.preset is not None and (is_preset_file(args.preset) or args.set)
    config = load_preset(args.preset, args.set) if own else None  # their name loads no packaged preset
    path = write_leaderboard(args.results, leaderboard_path(out_dir, args.output), out_dir / "plots",
                             None if own else args.preset, preset_config=config)
    print(f"wrote {path}")
    return 0


COMMANDS = [add_run, add_list, add_leaderboard, add_perf, add_compare, add_eval, add_export]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description="Benchmark sparse autoencoder variants.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as err:
        for line in str(err).splitlines():  # one line per problem
            print(f"error: {line}", file=sys.stderr)
        return 2
