"""The `eval` and `export` commands and `list --foreign` (registered in benchmark/cli.py)."""
from pathlib import Path

from benchmark.config import load_preset, preset_names
from benchmark.errors import UserError

DEFAULT_OUT = Path("results")


# ----- eval -----
def add_eval(sub):
    p = sub.add_parser("eval", help="score a trained SAE from elsewhere (SAELens, sparsify, dictionary_learning)",
                       description="Load a trained SAE checkpoint (its format told by its files), check its input "
                       "dimension against the dataset, and score it on every task of the preset that runs on that "
                       "dataset, without training. Rows are named ckpt:<folder>; finished cells are skipped unless "
                       "--force (a changed checkpoint is a new model).")
    p.add_argument("--checkpoint", type=Path, required=True, metavar="DIR",
                   help="SAELens (cfg.json + sae_weights.safetensors), sparsify (cfg.json + sae.safetensors) or "
                   "dictionary_learning (ae.pt + config.json) folder")
    p.add_argument("--dataset", required=True, metavar="NAME", help="a dataset of the preset (see `list`)")
    p.add_argument("--task", nargs="+", metavar="NAME", help="task name(s) (default: every task of the preset "
                   "that runs on the dataset)")
    p.add_argument("--preset", default="default", help=f"one of {', '.join(preset_names())}, or a YAML file (default: default)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help="data seeds (default: the preset's)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: results)")
    p.add_argument("--force", action="store_true", help="recompute cells already in results.csv")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--data-root", type=Path, help="where downloadable datasets live")
    p.add_argument("--download", action="store_true", help="download a missing dataset into --data-root")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--in-process", action="store_true", help="score in this process (for debuggers)")
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args) -> int:
    from benchmark.reporting import leaderboard_path, run_and_report
    from benchmark.datasets import build_dataset
    from benchmark.interop import check_input_dim, checkpoint_class
    from benchmark.runner import RunOptions, Runner

    preset = load_preset(args.preset)
    if args.dataset not in preset.datasets:
        raise UserError(f"dataset {args.dataset!r} is not in preset {preset.name!r}; its datasets: "
                        f"{', '.join(preset.datasets)}")
    tasks = args.task or [t for t in preset.tasks if args.dataset in preset.task_datasets(t)]
    if not tasks:
        raise UserError(f"no task of preset {preset.name!r} runs on dataset {args.dataset!r}; pick another dataset")
    cls = checkpoint_class(args.checkpoint)  # format, tensors and shapes: one line each
    seed = (args.seeds or preset.seeds)[0]
    dataset = build_dataset(args.dataset, preset.dataset_build_config(args.dataset), args.data_root,
                            args.download, seed=seed)
    check_input_dim(cls.checkpoint, cls.name, args.dataset, dataset.input_shape)
    options = RunOptions(preset=preset, variants=[f"checkpoint:{args.checkpoint}"], tasks=tasks, seeds=args.seeds,
                         datasets=[args.dataset], controls=False, device=args.device, out_dir=args.out,
                         data_root=args.data_root, download=args.download, force=args.force,
                         progress=not args.no_progress, isolate=not args.in_process)
    runner = Runner(options)
    print(f"{cls.name}: {cls.checkpoint.describe()}")
    return run_and_report(runner, leaderboard_path(args.out, None))


# ----- export -----
def add_export(sub):
    p = sub.add_parser("export", help="write one of our trained models in the SAELens format",
                       description="Take one model of the grid (from the model cache of --out, or trained now) and "
                       "write it as a SAELens checkpoint (cfg.json + sae_weights.safetensors) into a new folder. "
                       "`eval --checkpoint DIR` reads it back with the same scores.")
    p.add_argument("--variant", required=True, metavar="NAME", help="a variant (relu, dense, topk, batchtopk, "
                   "jumprelu, matryoshka)")
    p.add_argument("--dataset", required=True, metavar="NAME")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="default: 0")
    p.add_argument("--setting", default="default", metavar="LABEL", help="the sparsity setting, e.g. k=16 "
                   "(as in results.csv; default: default, a variant without a sweep)")
    p.add_argument("--to", type=Path, required=True, metavar="DIR", help="new folder to write")
    p.add_argument("--preset", default="default", help="the preset the model was trained under (default: default)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder whose model cache to use "
                   "(default: results)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--data-root", type=Path)
    p.add_argument("--download", action="store_true")
    p.set_defaults(handler=cmd_export)


def cmd_export(args) -> int:
    from benchmark.interop.export import check_exportable, export_saelens, saelens_form
    from benchmark.runner import RunOptions, Runner
    from benchmark.submission import resolve_variant, variant_name

    preset = load_preset(args.preset)
    check_exportable(resolve_variant(args.variant), variant_name(args.variant))  # before any training
    if args.to.exists() and (not args.to.is_dir() or any(args.to.iterdir())):
        raise UserError(f"--to {args.to} already exists and is not an empty folder; choose a new folder")
    options = RunOptions(preset=preset, variants=[args.variant], datasets=[args.dataset], seeds=[args.seed],
                         controls=False, device=args.device, out_dir=args.out, data_root=args.data_root,
                         download=args.download, progress=False)
    runner = Runner(options)
    name = variant_name(args.variant)
    trained = runner.trained_model(name, args.dataset, args.seed, args.setting)
    saelens_form(trained.model)  # refuse what SAELens cannot express before anything is written
    provenance = {"variant": name, "dataset": args.dataset, "seed": args.seed, "setting": args.setting,
                  "preset": preset.name}
    folder = export_saelens(trained.model, args.to, provenance)
    print(f"wrote {folder / 'cfg.json'} and {folder / 'sae_weights.safetensors'} "
          f"({name}, {args.dataset}, seed {args.seed}, {args.setting})")
    return 0


# ----- list --foreign -----
def print_foreign() -> None:
    from benchmark.interop import EXPECTED
    from benchmark.interop.overcomplete import foreign_listing

    print("overcomplete classes (--variant overcomplete:CLASS; hyperparameters are the class's keywords, "
          "plus penalty, center, n_points, tied_init):")
    for spec, what in foreign_listing():
        print(f"  {spec:26s} {what}")
    print(f"checkpoints (--variant checkpoint:DIR, or eval --checkpoint DIR): {EXPECTED}")
