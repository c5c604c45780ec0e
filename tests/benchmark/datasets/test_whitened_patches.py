"""whitened_patches: ZCA-whitened small crops of the bundled photographs."""
import pytest
import torch

from benchmark.datasets import build_dataset
from benchmark.datasets.patches32 import downscale, load_photo, photo_split, random_crops
from benchmark.datasets.whitened_patches import is_whitened, pixel_map, to_pixels, whiten, zca

SMALL = {"kind": "whitened_patches", "n_train": 3000, "n_test": 64, "size": 6}


@pytest.fixture(scope="module")
def data():
    return build_dataset("wp", {**SMALL, "seed": 5})


def covariance(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1).double()
    centred = flat - flat.mean(0)
    return centred.T @ centred / flat.shape[0]


def test_shapes_types_and_config(data):
    assert data.train.shape == (3000, 3, 6, 6) and data.test.shape == (64, 3, 6, 6)
    assert data.train.dtype == data.test.dtype == torch.float32
    assert data.is_image and is_whitened(data)
    assert data.config == {"kind": "whitened_patches", "size": 6, "n_train": 3000, "n_test": 64,
                           "short_side": 256, "epsilon": 0.01, "seed": 5}
    assert data.truth["whitening"].shape == data.truth["unwhitening"].shape == (108, 108)


def test_training_covariance_is_identity_on_the_kept_components(data):
    # Whitened covariance = U diag(λ / (λ + ε)) Uᵀ exactly: its eigenvalues are known.
    truth = data.truth
    lam, eps = truth["eigenvalues"].double(), truth["epsilon_abs"]
    whitened_eigs = torch.linalg.eigvalsh(covariance(data.train)).flip(0)
    torch.testing.assert_close(whitened_eigs, lam / (lam + eps), atol=1e-4, rtol=1e-3)
    kept = lam > 20 * eps  # components well above the regulariser: variance within 5% of 1
    assert kept.sum() >= 10 and bool(((whitened_eigs[kept] - 1).abs() < 0.05).all())
    # The regulariser matters: the weakest components are shrunk, not amplified to 1.
    assert whitened_eigs[-1] < 0.5
    assert data.train.flatten(1).mean(0).abs().max() < 1e-4  # centred on the training mean


def test_raw_crops_are_not_white():
    # The wrong input: unwhitened crops have a covariance far from the identity.
    g = torch.Generator().manual_seed(0)
    photos = [downscale(load_photo(p), 256) for p in photo_split(0)[0][:2]]
    crops = random_crops(photos, 2000, 6, g)
    eigs = torch.linalg.eigvalsh(covariance(crops))
    assert eigs.max() / eigs.min() > 1e3


def test_the_inverse_transform_recovers_the_crops(data):
    # Rebuild the crops as the builder draws them: training crops at the stream's first
    # positions, test crops from a generator seeded by the seed.
    train_names, test_names = photo_split(5)
    assert not set(train_names) & set(test_names)  # test crops from photographs never trained on
    train_photos = [downscale(load_photo(p), 256) for p in train_names]  # not the builder's cache
    test_photos = [downscale(load_photo(p), 256) for p in test_names]
    positions = next(data.stream.positions())[:3000]
    train = torch.stack([train_photos[p][:, y : y + 6, x : x + 6] for p, y, x in positions.tolist()]).clamp(0, 1)
    test = random_crops(test_photos, 64, 6, torch.Generator().manual_seed(5))
    torch.testing.assert_close(to_pixels(data.train, data.truth), train, atol=2e-5, rtol=0)
    torch.testing.assert_close(to_pixels(data.test, data.truth), test, atol=2e-5, rtol=0)
    # pixel_map: the same map; a difference (shift=False) gets W⁻¹ and no mean.
    delta = to_pixels(data.test, data.truth) - to_pixels(data.test[:1], data.truth)
    torch.testing.assert_close(pixel_map(data)(data.test - data.test[:1], shift=False), delta, atol=2e-5, rtol=0)


def test_test_split_uses_the_training_transform():
    # The test split's own ZCA would make its covariance white; the training split's does not.
    data = build_dataset("wp", {**SMALL, "n_test": 1000})
    own = zca(to_pixels(data.test, data.truth).flatten(1), 0.01)
    assert not torch.allclose(own["whitening"].float(), data.truth["whitening"], atol=1e-2)
    test_eigs = torch.linalg.eigvalsh(covariance(data.test))
    assert abs(float(test_eigs.max()) - 1) > 0.05 or abs(float(test_eigs.min()) - 1) > 0.5


def test_whiten_and_to_pixels_are_inverse_maps():
    x = torch.rand(500, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    stats = zca(x.flatten(1), 0.01)
    truth = {key: (v.float() if torch.is_tensor(v) else v) for key, v in stats.items()}
    torch.testing.assert_close(to_pixels(whiten(x, stats), truth), x, atol=1e-5, rtol=0)


def test_seeds_give_different_crops_and_the_same_seed_the_same():
    a = build_dataset("wp", {**SMALL, "n_train": 200, "seed": 0})
    b = build_dataset("wp", {**SMALL, "n_train": 200, "seed": 0})
    c = build_dataset("wp", {**SMALL, "n_train": 200, "seed": 1})
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.allclose(to_pixels(a.train, a.truth), to_pixels(c.train, c.truth))
    assert not torch.allclose(to_pixels(a.test, a.truth), to_pixels(c.test, c.truth))


def test_unwhitened_datasets_map_to_pixels_unchanged():
    plain = build_dataset("patches32", {"n_train": 4, "n_test": 2})
    assert not is_whitened(plain)
    assert pixel_map(plain)(plain.test) is plain.test
