"""The principal components of the training split, shared by `pca` and `pca-topk`."""
import torch
from sklearn.decomposition import PCA


def fit_pca(x: torch.Tensor, n_components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (d,), components (n_components, d)) of the rows of x, by scikit-learn's PCA."""
    flat = x.flatten(1).double().cpu().numpy()
    pca = PCA(n_components=n_components, svd_solver="full").fit(flat)
    as_tensor = lambda a: torch.tensor(a, dtype=x.dtype, device=x.device)  # noqa: E731
    return as_tensor(pca.mean_), as_tensor(pca.components_)
