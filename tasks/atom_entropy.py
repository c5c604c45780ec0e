"""Task 3, `atom_entropy`: how localised and how colour-pure the learned atoms are (Tensor-SAE's
claim of "low-entropy spatial atoms and clean colour factors").

For every alive atom a_k (C×H×W; alive = its latent is non-zero on at least one test sample):
p_k(h, w) ∝ Σ_c a_k[c, h, w]² (the atom's energy at each pixel), H_k = −Σ p log2 p (0·log 0 = 0).
A one-pixel atom has 0 bits, a uniform one log2(H·W).
- `entropy_bits`: mean H_k; `entropy_norm`: mean H_k / log2(H·W), on [0, 1] for any image size.
- `entropy_vs_random`: mean H_k divided by the expected H of a random Gaussian atom of the same
  shape. That expectation is estimated once per shape from RANDOM_ATOMS = 4096 atoms with i.i.d.
  N(0, 1) entries drawn from a fixed seed (the norm does not matter: p is scale-free). A
  fixed, large draw rather than one of the alive count: the reference is then the same number
  for every model, and its sampling error is far below any difference worth reporting (< 0.1%;
  tested). < 1: more localised than chance; a frozen random dictionary scores ≈ 1. Random atoms
  are far from uniform (their energy is χ²-distributed per pixel: on 8×8×3, ≈ 0.93 of
  log2(H·W)), which is why `entropy_norm` alone hides how little a dense atom differs from noise.
- `color_purity` (3-channel data only): the largest |cosine| between the atom's colour vector
  (the leading left singular vector of a_k reshaped C×(H·W)) and the red, green, blue and grey
  axes (grey = (1,1,1)/√3); 1 for a pure red, green, blue or grey atom, √(2/3) for yellow.
- `alive_atoms`: how many atoms the means are over.

Atoms come from `model.atoms()` (the decoder's impulse response unless the variant has an
explicit dictionary), so every variant, controls and nonlinear decoders included, is measured
the same way.

Whitened data (`whitened_patches`): atoms are measured as they are, in whitened space, as
classic sparse coding reports them (Olshausen & Field's and Bell & Sejnowski's localised,
oriented filters are whitened-space atoms). It is the space the dictionary was learned in, and
ZCA keeps each dimension on its pixel, so "where is the energy" still means "where in the
crop". Unwhitening multiplies every atom by Σ^½, a low-pass filter of the images' own
correlations: it would spread every atom, random ones included, by the same blur, measuring
the photographs as much as the dictionary. `color_purity` is then measured on whitened colour
axes as well (ZCA decorrelates the channels, so a pure-red pixel edit is not a pure-red
whitened atom): read it as a diagnostic there.

Gallery: the GALLERY_ATOMS most frequently active atoms of one model per variant and control
(the setting `benchmark.report.matched.headline_settings` picks, the lowest seed).
"""
import math
from functools import lru_cache
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")  # no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402

from benchmark.registry import TASKS  # noqa: E402
from benchmark.task import NotScorable, Task  # noqa: E402

from tasks._activity import artifact_file, artifact_root, firing_order  # noqa: E402
from tasks._common import encode_all  # noqa: E402

# Unit colour axes: an atom whose colour vector lies on one of them is colour-pure.
COLOUR_AXES = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
COLOUR_AXES = COLOUR_AXES / COLOUR_AXES.norm(dim=1, keepdim=True)
GALLERY_ATOMS = 12  # the most frequently active atoms shown per variant
RANDOM_ATOMS = 4096  # draws behind the random-atom entropy reference
RANDOM_SEED = 0
ARTIFACT_SUFFIX = ".pt"


def atom_entropy_bits(atoms: torch.Tensor) -> torch.Tensor:
    """(K, C, H, W) -> (K,): entropy in bits of each atom's squared-energy distribution over pixels.

    Atoms with zero energy have no distribution (NaN); callers drop them first."""
    energy = atoms.detach().double().square().sum(1).flatten(1)
    p = energy / energy.sum(1, keepdim=True)
    return -torch.special.xlogy(p, p).sum(1) / math.log(2)  # xlogy(0, 0) = 0


@lru_cache(maxsize=16)
def random_atom_entropy(shape: tuple[int, ...]) -> float:
    """Mean entropy in bits of RANDOM_ATOMS Gaussian atoms of `shape` (C, H, W), fixed seed."""
    generator = torch.Generator().manual_seed(RANDOM_SEED)
    total, chunk = 0.0, 512  # chunks: 4096 atoms of 3×32×32 at once would be 100 MB in float64
    for start in range(0, RANDOM_ATOMS, chunk):
        n = min(chunk, RANDOM_ATOMS - start)
        total += float(atom_entropy_bits(torch.randn(n, *shape, generator=generator)).sum())
    return total / RANDOM_ATOMS


def color_purity(atoms: torch.Tensor) -> torch.Tensor:
    """(K, 3, H, W) -> (K,): largest |cosine| of each atom's colour vector with R, G, B, grey."""
    matrix = atoms.detach().double().flatten(2)  # (K, C, H·W)
    colour = torch.linalg.svd(matrix, full_matrices=False).U[:, :, 0]  # unit norm, sign arbitrary
    return (colour @ COLOUR_AXES.double().T).abs().max(1).values


def atom_metrics(atoms: torch.Tensor) -> dict[str, float]:
    """Mean entropy (bits, normalised, against random atoms) and, for 3-channel atoms, mean
    colour purity."""
    height, width = atoms.shape[-2:]
    bits = atom_entropy_bits(atoms)
    metrics = {
        "entropy_bits": float(bits.mean()),
        "entropy_norm": float((bits / math.log2(height * width)).mean()),
        "entropy_vs_random": float(bits.mean()) / random_atom_entropy(tuple(atoms.shape[1:])),
    }
    if atoms.shape[1] == 3:
        metrics["color_purity"] = float(color_purity(atoms).mean())
    return metrics


def display_atoms(atoms: torch.Tensor) -> torch.Tensor:
    """Each atom rescaled on its own so that zero is mid-grey and its largest |value| reaches
    black or white: shape, sign and colour stay visible whatever the atom's norm."""
    scale = atoms.abs().flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1, 1)
    return (0.5 + 0.5 * atoms / scale).clamp(0, 1)


def atom_grid(atoms: torch.Tensor) -> torch.Tensor:
    """One row of displayed atoms, enlarged by whole pixels to about 32 pixels per atom."""
    from torchvision.utils import make_grid  # lazily: importing torchvision costs seconds

    zoom = max(1, 32 // atoms.shape[-1])
    atoms = display_atoms(atoms).repeat_interleave(zoom, -1).repeat_interleave(zoom, -2)
    return make_grid(atoms, nrow=GALLERY_ATOMS, padding=1, pad_value=1.0)


def cell_label(config: dict) -> dict:
    """What identifies a cell's artifact whatever its file name: model, seed, sparsity setting."""
    return {"variant": config.get("model_name", "model"), "seed": int(config.get("seed", 0)),
            "setting": config.get("setting")}


def headline_artifacts(results, plot_dir, task: str, suffix: str, read_label) -> dict[str, dict[str, Path]]:
    """{dataset: {variant: artifact}}: per dataset, one artifact per variant (and control), the
    lowest seed at the setting `benchmark.report.matched.headline_settings` picks for it.
    `read_label(path)` returns the `cell_label` saved in the artifact (file names are the
    runner's business; the label inside is this task's)."""
    from benchmark.report.matched import headline_settings  # the lead's matched-L0 module

    chosen: dict[str, dict[str, Path]] = {}
    for folder in sorted(p for p in (artifact_root(plot_dir) / task).glob("*") if p.is_dir()):
        settings = headline_settings(results, task, folder.name)
        best: dict[str, tuple[int, Path]] = {}
        for path in sorted(folder.glob(f"*{suffix}")):
            label = read_label(path)
            variant = label["variant"]
            if variant in settings and label.get("setting") == settings[variant]:
                if variant not in best or label["seed"] < best[variant][0]:
                    best[variant] = (label["seed"], path)
        if best:
            chosen[folder.name] = {variant: path for variant, (_, path) in sorted(best.items())}
    return chosen


@TASKS.register("atom_entropy")
class AtomEntropy(Task):
    description = "Spatial entropy (squared energy) and colour purity of the alive atoms, against random atoms"
    metrics = {"entropy_bits": False, "entropy_norm": False, "entropy_vs_random": False,
               "color_purity": True, "alive_atoms": True}
    headline = "entropy_vs_random"

    def dataset_skip_reason(self, dataset):
        if not dataset.is_image:
            shape = "x".join(map(str, dataset.input_shape))
            return f"atom_entropy needs images (C×H×W); {dataset.name} holds {shape} vectors"
        return None

    @torch.no_grad()
    def evaluate(self, trained, dataset, config):
        model = trained.model
        codes = encode_all(model, dataset.test, dataset.test_concepts)
        counts, order = (t.cpu() for t in firing_order(codes))
        atoms = model.atoms().float().cpu().reshape(model.n_latents, *dataset.input_shape)
        # An alive latent whose atom is exactly zero changes nothing: it has no spatial
        # distribution to measure, so it is left out with the dead ones.
        usable = (counts > 0) & (atoms.flatten(1).abs().sum(1) > 0)
        if not bool(usable.any()):
            raise NotScorable("no alive atoms: every latent is zero on the whole test split")
        metrics = atom_metrics(atoms[usable])
        metrics["alive_atoms"] = float(usable.sum())
        self._save_gallery(config, dataset.name, atoms, order[usable[order]][:GALLERY_ATOMS], metrics)
        return metrics

    def _save_gallery(self, config, dataset_name, atoms, top, metrics):
        path = artifact_file(config, self.name, dataset_name, ARTIFACT_SUFFIX)
        if path is not None:  # float16 is plenty for a picture and keeps the files small
            torch.save({"atoms": atoms[top].half(), "latents": top, "label": cell_label(config),
                        "entropy_vs_random": metrics["entropy_vs_random"]}, path)

    def plots(self, results, plot_dir):
        read_label = lambda path: torch.load(path)["label"]  # noqa: E731
        figures = []
        for dataset_name, shown in headline_artifacts(results, plot_dir, self.name, ARTIFACT_SUFFIX, read_label).items():
            path = Path(plot_dir) / f"atom_gallery_{dataset_name}.png"
            self._gallery_figure(dataset_name, shown, path)
            figures.append((f"Most frequently active atoms on {dataset_name} (one model per variant, "
                            "at its headline sparsity setting)", path))
        return figures

    @staticmethod
    def _gallery_figure(dataset_name, shown, path):
        from benchmark.report.matched import is_control_name

        saved = {variant: torch.load(p) for variant, p in shown.items()}
        grids = {variant: atom_grid(blob["atoms"].float()) for variant, blob in saved.items()}
        height = max(g.shape[1] for g in grids.values())
        width = max(g.shape[2] for g in grids.values())
        # About one screen pixel per grid pixel: sharp, and the file stays small.
        fig, axes = plt.subplots(len(grids), 1, squeeze=False,
                                 figsize=(max(5.0, width / 100 + 0.2), len(grids) * (height / 100 + 0.22) + 0.3))
        for ax, (variant, grid) in zip(axes[:, 0], grids.items()):
            label = saved[variant]["label"]
            setting = f", {label['setting']}" if label.get("setting") else ""
            ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
            kind = " (control)" if is_control_name(variant) else ""
            ax.set_title(f"{variant}{kind}{setting}, seed {label['seed']}: entropy "
                         f"{saved[variant]['entropy_vs_random']:.3f} × random atoms'", fontsize=8, loc="left")
            ax.axis("off")
        fig.suptitle(f"Atom gallery, {dataset_name} (zero = grey, each atom scaled to its max)", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
