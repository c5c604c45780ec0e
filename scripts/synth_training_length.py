"""Does the `synth` ranking move with training length? One model per variant at the headline k
(6) on the default's SynthSAEBench world, seed 0, streamed (fresh samples every step, as the
`full` preset trains), at several step counts, scored by `ground_truth`.

    python scripts/synth_training_length.py [--steps 1536 6000] [--variants batchtopk matryoshka topk mp]

Prints a table of gt_f1, mcc, explained_variance per (variant, steps) and the seconds spent.
"""
import argparse
import time

import torch

from benchmark.config import load_preset
from benchmark.datasets import build_dataset
from benchmark.registry import VARIANTS
from benchmark.training.loop import TrainConfig, train_model
from tasks.ground_truth import ground_truth_metrics

DATASET = "synth"


def trained(preset, name: str, dataset, steps: int, setting: str):
    cls = VARIANTS.get(name)
    hparams = dict(preset.settings(name, DATASET)[setting])
    hparams.pop("match_params_of", None)
    n_latents, hparams = cls.configure(dataset, int(preset.datasets[DATASET]["n_latents"]), hparams)
    torch.manual_seed(0)
    model = cls(dataset.input_shape, n_latents, **hparams)
    train = preset.train_settings(name, DATASET)
    cfg = TrainConfig(batch_size=train["batch_size"], lr=train["lr"], max_steps=steps, min_steps=steps,
                      check_every=max(50, steps // 20), stream=True)
    return train_model(model, dataset, cfg, seed=0).model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1536, 6000])
    parser.add_argument("--variants", nargs="+", default=["batchtopk", "matryoshka", "topk", "mp"])
    parser.add_argument("--setting", default="k=6")
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = load_preset("default")
    dataset = build_dataset(DATASET, preset.dataset_build_config(DATASET), seed=0)
    print(f"{'variant':<11} {'steps':>6} {'gt_f1':>6} {'mcc':>6} {'ev':>6} {'l0':>6} {'s':>6}")
    for name in args.variants:
        for steps in args.steps:
            start = time.perf_counter()
            model = trained(preset, name, dataset, steps, args.setting).eval()
            scores = ground_truth_metrics(model, dataset.test, dataset.truth["test_codes"], dataset.truth["dictionary"])
            with torch.no_grad():
                l0 = float((model.encode(dataset.test) != 0).float().sum(1).mean())
            print(f"{name:<11} {steps:>6} {scores['gt_f1']:6.3f} {scores['mcc']:6.3f} "
                  f"{scores['explained_variance']:6.3f} {l0:6.2f} {time.perf_counter() - start:6.0f}", flush=True)


if __name__ == "__main__":
    main()
