"""Task 1: reconstruction quality on the test split, and its cost in FLOPs and parameters."""
import torch

from benchmark.flops import count_params, flops_per_sample
from benchmark.minilm import downstream_recovered
from benchmark.registry import TASKS
from benchmark.task import Task

from tasks._common import encode_all, encode_test, pooled_r2, psnr_db

FLOP_BATCH = 256  # fvcore's count is amortised over this many samples


@TASKS.register("reconstruction")
class Reconstruction(Task):
    description = "Test-split reconstruction (R², MSE, PSNR) and its cost per FLOP and per parameter."
    headline = "r2"
    metrics = {
        "r2": True, "mse": False, "psnr_db": True, "params": False, "flops_per_sample": False,
        "r2_per_mflop": True, "r2_per_kparam": True, "r2_at_half_k": True, "r2_at_double_k": True,
        "downstream_recovered": True,
    }

    def evaluate(self, trained, dataset, config):
        model = trained.model
        _, x_hat = encode_test(model, dataset)
        x = dataset.test
        r2 = pooled_r2(x, x_hat)
        mse = float((x - x_hat).pow(2).mean())
        concepts = None if dataset.test_concepts is None else dataset.test_concepts[:FLOP_BATCH]
        flops = flops_per_sample(model, x[:FLOP_BATCH], concepts)
        params = count_params(model)
        out = {"r2": r2, "mse": mse, "params": params, "flops_per_sample": flops}
        if flops:  # fvcore counts matrix products and convolutions only
            out["r2_per_mflop"] = r2 / (flops / 1e6)
        if params:  # a fixed basis (block-basis) stores nothing: no ratio to report
            out["r2_per_kparam"] = r2 / (params / 1e3)
        if dataset.is_image and not dataset.truth.get("whitened"):  # PSNR needs pixels with peak 1
            out["psnr_db"] = psnr_db(mse)
        if model.supports_inference_k():
            out.update(self.adaptive_k(model, dataset))
        if "minilm" in dataset.truth:  # activations of a language model: splice them back in
            out["downstream_recovered"] = self.downstream(model, dataset)
        return out

    def downstream(self, model, dataset) -> float:
        """SPEC 5.1: the sentence embedding with the layer replaced by the reconstruction,
        against mean ablation (benchmark.minilm.downstream_recovered)."""
        def reconstruct(acts):
            codes = encode_all(model, acts.to(dataset.test.device, dataset.test.dtype))
            return torch.cat([model.decode(part) for part in codes.split(512)]).flatten(1)

        with torch.no_grad():
            return downstream_recovered(reconstruct, dataset, device=dataset.test.device)

    def adaptive_k(self, model, dataset) -> dict[str, float]:
        """R² at half and double the trained k, without retraining."""
        trained_k = model.k
        try:
            scores = {}
            for name, k in (("r2_at_half_k", max(1, trained_k // 2)), ("r2_at_double_k", 2 * trained_k)):
                model.set_inference_k(k)
                scores[name] = pooled_r2(dataset.test, encode_test(model, dataset)[1])
            return scores
        finally:
            model.set_inference_k(trained_k)
