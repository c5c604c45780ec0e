"""The `eval` and `export` commands and `list --foreign` (registered in benchmark/cli.py)."""
from pathlib import Path

from benchmark.config import load_preset, preset_names
from benchmark.errors import UserError

DEFAULT_OUT = Path("results")


# ----- eval -----
def add_eval(sub):
    p = sub.add_parser("eval", help="score trained SAEs from elsewhere (SAELens, sparsify, dictionary_learning)",
                       description="Load trained SAE checkpoints (each one's format told by its files), check their "
                       "input dimension against the data, and score them on every task of the preset that runs on "
                       "it, without training: on a dataset of the preset (--dataset), or on your own activations "
                       "file (--activations), beside the controls fitted on it. Checkpoints of one format, "
                       "architecture and width form a family, read as one sweep at the target L0s; a checkpoint "
                       "alone is compared with the controls at its own L0. Finished cells are skipped unless "
                       "--force (a changed checkpoint is a new model).")
    p.add_argument("--checkpoint", type=Path, nargs="+", required=True, metavar="DIR",
                   help="SAELens (cfg.json + sae_weights.safetensors), sparsify (cfg.json + sae.safetensors) or "
                   "dictionary_learning (ae.pt + config.json) folders, or a folder holding such folders")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset", metavar="NAME", help="a dataset of the preset (see `list`)")
    data.add_argument("--activations", type=Path, metavar="FILE", help="your activations, [N, d]: .npy, "
                      ".safetensors or .pt (split into train and test by the seed; see the README)")
    p.add_argument("--labels", type=Path, metavar="FILE", help="with --activations: a CSV of binary attributes, one "
                   "row per activation row (and an optional `group` column), for sparse_probing")
    p.add_argument("--l0-targets", type=float, nargs="+", metavar="L0", help="with --activations: the target L0s "
                   "(default: the preset's; a checkpoint alone adds its own)")
    p.add_argument("--task", nargs="+", metavar="NAME", help="task name(s) (default: every task of the preset "
                   "that runs on the data)")
    p.add_argument("--preset", default="default", help=f"one of {', '.join(preset_names())}, or a YAML file (default: default)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help="data seeds (default: the preset's)")
    p.add_argument("--out", type=Path, help="results folder (default: results; with --activations, "
                   "results/activations-<file stem>)")
    p.add_argument("--force", action="store_true", help="recompute cells already in results.csv")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--data-root", type=Path, help="where downloadable datasets live")
    p.add_argument("--download", action="store_true", help="download a missing dataset into --data-root")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--in-process", action="store_true", help="score in this process (for debuggers)")
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args) -> int:
    from benchmark.datasets import build_dataset
    from benchmark.interop import check_input_dim
    from benchmark.interop.own_data import (activations_preset, checkpoint_folders, checkpoint_specs,
                                            dataset_name, own_l0_targets, test_rows_for, with_targets)
    from benchmark.report.reporting import leaderboard_path, run_and_report
    from benchmark.grid.runner import RunOptions, Runner
    from benchmark.submission import resolve_variant

    if args.activations is None and (args.labels or args.l0_targets):
        raise UserError("--labels and --l0-targets go with --activations")
    preset = load_preset(args.preset)
    if args.activations is not None:
        preset = activations_preset(preset, args.activations, args.labels, args.l0_targets)
        args.dataset = dataset_name(args.activations)
        out = args.out or DEFAULT_OUT / f"activations-{args.dataset}"
    else:
        out = args.out or DEFAULT_OUT
    if args.dataset not in preset.datasets:
        raise UserError(f"dataset {args.dataset!r} is not in preset {preset.name!r}; its datasets: "
                        f"{', '.join(preset.datasets)}")
    tasks = args.task or [t for t in preset.tasks if args.dataset in preset.task_datasets(t)]
    if not tasks:
        raise UserError(f"no task of preset {preset.name!r} runs on dataset {args.dataset!r}; pick another dataset")
    specs = checkpoint_specs(checkpoint_folders(args.checkpoint))  # format, tensors, shapes: one line each
    classes = [resolve_variant(spec) for spec in specs]
    if args.activations is not None:  # the test split's dense codes of the widest SAE within a budget
        preset = test_rows_for(preset, args.dataset, max(cls.checkpoint.d_sae for cls in classes))
    seed = (args.seeds or preset.seeds_for(args.dataset))[0]
    dataset = build_dataset(args.dataset, preset.dataset_build_config(args.dataset), args.data_root,
                            args.download, seed=seed)
    for cls in classes:
        for member, ckpt in (getattr(cls, "members", None) or {cls.name: cls.checkpoint}).items():
            check_input_dim(ckpt, member, args.dataset, dataset.input_shape)
    own_data = args.activations is not None
    if own_data:  # each checkpoint alone is read at its own L0, beside the controls
        preset = with_targets(preset, own_l0_targets(classes, dataset))
    options = RunOptions(preset=preset, variants=specs, tasks=tasks, seeds=args.seeds, datasets=[args.dataset],
                         controls=own_data, device=args.device, out_dir=out, data_root=args.data_root,
                         download=args.download, force=args.force, progress=not args.no_progress,
                         isolate=not args.in_process)
    runner = Runner(options)
    if own_data:
        runner.datasets[args.dataset, seed] = dataset  # built once: the file is scanned once
    for cls in classes:
        print(f"{cls.name}: {cls.__doc__.split(': ', 1)[1]}")
    return run_and_report(runner, leaderboard_path(out, None), preset=preset)


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
    from benchmark.grid.runner import RunOptions, Runner
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
