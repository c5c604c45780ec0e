"""Task 3, `atom_entropy`: how localised and how colour-pure the learned atoms are (Tensor-SAE's
claim of "low-entropy spatial atoms and clean colour factors").

For every alive atom a_k (C×H×W; alive = its latent is non-zero on at least one test sample):
E_k(h, w) = Σ_c |a_k[c, h, w]|, p = E / ΣE, H_k = −Σ p log2 p (0·log 0 = 0). A one-pixel atom
has 0 bits, a uniform one log2(H·W). `entropy_norm` = H / log2(H·W) puts both image sizes on
[0, 1]. `color_purity` (colour data only): the largest |cosine| between the atom's colour vector
(the leading left singular vector of a_k reshaped C×(H·W)) and the red, green, blue and grey
axes (grey = (1,1,1)/√3); 1 for a pure red, green, blue or grey atom, √(2/3) for yellow.
Omitted for single-channel data. `alive_atoms`: how many atoms the means are over.

Atoms come from `model.atoms()` (the decoder's impulse response unless the variant has an
explicit dictionary), so every variant, including nonlinear decoders, is measured the same way.
"""
import math
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")  # no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402

from benchmark.registry import TASKS  # noqa: E402
from benchmark.task import Task  # noqa: E402

from tasks._activity import artifact_file, firing_order, saved_cells  # noqa: E402
from tasks._common import encode_all  # noqa: E402

# Unit colour axes: an atom whose colour vector lies on one of them is colour-pure.
COLOUR_AXES = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
COLOUR_AXES = COLOUR_AXES / COLOUR_AXES.norm(dim=1, keepdim=True)
GALLERY_ATOMS = 12  # the most frequently active atoms shown per variant
ARTIFACT_SUFFIX = ".pt"


def atom_entropy_bits(atoms: torch.Tensor) -> torch.Tensor:
    """(K, C, H, W) -> (K,): entropy in bits of each atom's spatial energy distribution.

    Atoms with zero energy have no distribution (NaN); callers drop them first."""
    energy = atoms.detach().double().abs().sum(1).flatten(1)
    p = energy / energy.sum(1, keepdim=True)
    return -torch.special.xlogy(p, p).sum(1) / math.log(2)  # xlogy(0, 0) = 0


def color_purity(atoms: torch.Tensor) -> torch.Tensor:
    """(K, 3, H, W) -> (K,): largest |cosine| of each atom's colour vector with R, G, B, grey."""
    matrix = atoms.detach().double().flatten(2)  # (K, C, H·W)
    colour = torch.linalg.svd(matrix, full_matrices=False).U[:, :, 0]  # unit norm, sign arbitrary
    return (colour @ COLOUR_AXES.double().T).abs().max(1).values


def atom_metrics(atoms: torch.Tensor) -> dict[str, float]:
    """Mean entropy (bits and normalised) and, for 3-channel atoms, mean colour purity."""
    height, width = atoms.shape[-2:]
    bits = atom_entropy_bits(atoms)
    metrics = {
        "entropy_bits": float(bits.mean()),
        "entropy_norm": float((bits / math.log2(height * width)).mean()),
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


@TASKS.register("atom_entropy")
class AtomEntropy(Task):
    description = "Spatial entropy and colour purity of the alive atoms (lower entropy = more localised)"
    metrics = {"entropy_bits": False, "entropy_norm": False, "color_purity": True, "alive_atoms": True}
    headline = "entropy_bits"

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
            raise ValueError("no alive atoms: every latent is zero on the whole test split")
        metrics = atom_metrics(atoms[usable])
        metrics["alive_atoms"] = float(usable.sum())
        self._save_gallery(config, dataset.name, atoms, order[usable[order]][:GALLERY_ATOMS])
        return metrics

    def _save_gallery(self, config, dataset_name, atoms, top):
        path = artifact_file(config, self.name, dataset_name, ARTIFACT_SUFFIX)
        if path is not None:  # float16 is plenty for a picture and keeps the files small
            torch.save({"atoms": atoms[top].half(), "latents": top}, path)

    def plots(self, results, plot_dir):
        rows = results[(results["task"] == self.name) & (results["status"] == "ok")]
        figures = []
        for dataset_name, variants in sorted(saved_cells(plot_dir, self.name, ARTIFACT_SUFFIX).items()):
            scored = rows[rows["dataset"] == dataset_name]
            bits = scored[scored["metric"] == "entropy_bits"].groupby("variant")["value"].mean()
            shown = {v: seeds for v, seeds in variants.items() if v in bits.index}
            if shown:
                path = Path(plot_dir) / f"atom_gallery_{dataset_name}.png"
                self._gallery_figure(dataset_name, shown, bits, path)
                figures.append((f"Most frequently active atoms on {dataset_name}", path))
        return figures

    @staticmethod
    def _gallery_figure(dataset_name, variants, bits, path):
        grids = {variant: atom_grid(torch.load(seeds[min(seeds)])["atoms"].float())  # lowest seed
                 for variant, seeds in sorted(variants.items())}
        height, width = next(iter(grids.values())).shape[1:]
        # About one screen pixel per grid pixel: sharp, and the file stays small.
        fig, axes = plt.subplots(len(grids), 1, squeeze=False,
                                 figsize=(max(5.0, width / 100 + 0.2), len(grids) * (height / 100 + 0.22) + 0.3))
        for ax, (variant, grid) in zip(axes[:, 0], grids.items()):
            ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(f"{variant}: {bits[variant]:.2f} bits (mean over alive atoms)", fontsize=8, loc="left")
            ax.axis("off")
        fig.suptitle(f"Atom gallery, {dataset_name} (zero = grey, each atom scaled to its max)", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
