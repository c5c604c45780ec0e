"""Timing helpers shared by `perf`, its stacked comparison and the peers' side-by-side: a step
timed with the device's queue drained, and each variant built with its constructor defaults."""
import platform
import time

import torch

from benchmark.registry import VARIANTS


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Wall seconds of one call, the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def build_variant(name: str, input_shape, n_latents: int, device: torch.device):
    """The variant with its constructor defaults; n_latents rounded to its `latent_step`."""
    cls = VARIANTS.get(name)
    step = cls.latent_step(input_shape)
    n_latents = max(step, round(n_latents / step) * step)
    return cls(input_shape, n_latents).to(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"
