"""`eval --checkpoint`, `export` and `list --foreign` from the command line: results, resume, and
bad input as one line, exit code 2, nothing written."""
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmark.cli import main

from tests.benchmark.interop._toys import inverting, saelens_cfg, write_saelens

DIGITS_D = 64


def inverting_checkpoint(folder, architecture="standard", d=DIGITS_D):
    W_enc, W_dec = inverting(d)
    write_saelens(folder, saelens_cfg(architecture, d, 2 * d),
                  {"W_enc": W_enc, "b_enc": torch.zeros(2 * d), "W_dec": W_dec, "b_dec": torch.full((d,), 0.5)})
    return folder


def run_eval(checkpoint, out, preset, *extra):
    return main(["eval", "--checkpoint", str(checkpoint), "--dataset", "digits8", "--preset", str(preset),
                 "--out", str(out), "--no-progress", "--in-process", *extra])


def test_eval_scores_a_checkpoint_and_resumes(tmp_path, tiny_preset, capsys):
    folder = inverting_checkpoint(tmp_path / "my-sae")
    out = tmp_path / "out"
    assert run_eval(folder, out, tiny_preset) == 0
    rows = pd.read_csv(out / "results.csv")
    assert set(rows.variant) == {"ckpt:my-sae"}
    assert set(rows.task) == {"reconstruction", "sparsity"}
    assert rows.set_index("metric").loc["r2", "value"] == pytest.approx(1.0, abs=1e-9)
    capsys.readouterr()
    assert run_eval(folder, out, tiny_preset) == 0  # resumed: nothing recomputed
    assert "0 metrics ok" in capsys.readouterr().out
    assert run_eval(folder, out, tiny_preset, "--force") == 0
    assert len(pd.read_csv(out / "results.csv")) == len(rows)  # recomputed, never doubled


def corrupt(folder):
    data = (folder / "sae_weights.safetensors").read_bytes()
    (folder / "sae_weights.safetensors").write_bytes(data[:40] + b"garbage" * 5)


def drop_b_enc(folder):
    tensors = load_file(str(folder / "sae_weights.safetensors"))
    del tensors["b_enc"]
    save_file(tensors, str(folder / "sae_weights.safetensors"))


@pytest.mark.parametrize("make, message", [
    (lambda f: f.mkdir() or (f / "weights.bin").write_bytes(b"0"), "holds no known checkpoint format"),
    (lambda f: inverting_checkpoint(f, d=10), "d_in is 10 but dataset digits8 has 64 values"),
    (lambda f: drop_b_enc(inverting_checkpoint(f)), "lacks tensor 'b_enc'"),
    (lambda f: corrupt(inverting_checkpoint(f)), "not a readable safetensors file"),
    (lambda f: inverting_checkpoint(f, architecture="crosscoder"), "unknown SAELens architecture 'crosscoder'"),
    (lambda f: f.mkdir() or torch.save({}, f / "ae.pt"), "holds ae.pt but no config.json"),  # dictionary_learning
])
def test_bad_checkpoints_are_one_line_exit_2_nothing_written(tmp_path, tiny_preset, capsys, make, message):
    make(tmp_path / "ckpt")
    assert run_eval(tmp_path / "ckpt", tmp_path / "out", tiny_preset) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_export_then_eval_reproduces_the_run(tmp_path, tiny_preset):
    out = tmp_path / "out"
    assert main(["run", "--variant", "topk", "--preset", str(tiny_preset), "--out", str(out), "--no-progress",
                 "--in-process"]) == 0
    assert main(["export", "--variant", "topk", "--dataset", "digits8", "--preset", str(tiny_preset),
                 "--out", str(out), "--to", str(tmp_path / "topk-sae")]) == 0
    assert run_eval(tmp_path / "topk-sae", out, tiny_preset) == 0
    rows = pd.read_csv(out / "results.csv")
    table = rows.pivot_table(index="metric", columns="variant", values="value")
    table = table.drop(index=[m for m in ("r2_at_half_k", "r2_at_double_k") if m in table.index])
    assert table["ckpt:topk-sae"].equals(table["topk"])


def test_export_refuses_mp_by_name(tmp_path, tiny_preset, capsys):
    code = main(["export", "--variant", "mp", "--dataset", "digits8", "--preset", str(tiny_preset),
                 "--out", str(tmp_path / "out"), "--to", str(tmp_path / "mp-sae")])
    assert code == 2 and "matching pursuit" in capsys.readouterr().err
    assert not (tmp_path / "mp-sae").exists()


def test_list_foreign_names_the_overcomplete_classes_and_formats(capsys):
    assert main(["list", "--foreign"]) == 0
    out = capsys.readouterr().out
    assert "dictionary_learning (ae.pt + config.json)" in out
    pytest.importorskip("matplotlib")
    from benchmark.perf.peers import load_overcomplete

    if load_overcomplete() is not None:
        assert "overcomplete:TopKSAE" in out and "overcomplete:MpSAE" in out
