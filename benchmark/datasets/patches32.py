"""`patches32`: 32×32 RGB crops of the colour photographs bundled with scikit-learn and
scikit-image, a stand-in for CIFAR-10 that needs no download.

Each photograph is first downscaled so its short side is `short_side` pixels, so that a crop
covers a sizeable part of a scene (as a CIFAR image does) rather than a flat patch of it.
Test crops come from photographs never used for training: the seed picks 3 of the 10 bundled
photographs for the test split, so the spread over seeds includes which scenes are held out.
"""
import skimage.data
import torch
from sklearn.datasets import load_sample_images

from benchmark.data import Dataset
from benchmark.registry import DATASETS

PHOTOS = ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "stereo_motorcycle",
          "china.jpg", "chelsea", "flower.jpg", "retina")
N_TEST_PHOTOS = 3


def photo_split(seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training photographs, test photographs): a seeded choice of N_TEST_PHOTOS held out."""
    order = torch.randperm(len(PHOTOS), generator=torch.Generator().manual_seed(seed)).tolist()
    test = {PHOTOS[i] for i in order[:N_TEST_PHOTOS]}
    return tuple(p for p in PHOTOS if p not in test), tuple(p for p in PHOTOS if p in test)


TRAIN_PHOTOS, TEST_PHOTOS = photo_split(0)


def load_photo(name: str) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]; names ending in .jpg come from scikit-learn."""
    if name.endswith(".jpg"):
        sample = load_sample_images()
        image = sample.images[[f.rsplit("/", 1)[-1] for f in sample.filenames].index(name)]
    else:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo pairs: the left view
    return torch.tensor(image[..., :3]).permute(2, 0, 1).float() / 255


def downscale(photo: torch.Tensor, short_side: int) -> torch.Tensor:
    scale = short_side / min(photo.shape[1:])
    size = [max(round(s * scale), short_side) for s in photo.shape[1:]]
    return torch.nn.functional.interpolate(photo[None], size=size, mode="bilinear", antialias=True)[0]


def random_crops(photos: list[torch.Tensor], n: int, size: int, generator) -> torch.Tensor:
    """n crops, photographs drawn uniformly, positions uniform within each photograph."""
    which = torch.randint(len(photos), (n,), generator=generator)
    crops = torch.empty(n, 3, size, size)
    for i, p in enumerate(which.tolist()):
        photo = photos[p]
        top = int(torch.randint(photo.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[2] - size + 1, (1,), generator=generator))
        crops[i] = photo[:, top : top + size, left : left + size]
    return crops.clamp_(0, 1)


@DATASETS.register("patches32")
def build(name, *, data_root=None, download=False, n_train=10000, n_test=2000, size=32,
          short_side=128, seed=0):
    generator = torch.Generator().manual_seed(seed)
    train_names, test_names = photo_split(seed)
    train_photos = [downscale(load_photo(p), short_side) for p in train_names]
    test_photos = [downscale(load_photo(p), short_side) for p in test_names]
    return Dataset(
        name=name,
        train=random_crops(train_photos, n_train, size, generator),
        test=random_crops(test_photos, n_test, size, generator),
        config=dict(kind="patches32", n_train=n_train, n_test=n_test, size=size,
                    short_side=short_side, seed=seed),
    )
