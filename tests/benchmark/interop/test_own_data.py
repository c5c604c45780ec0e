"""`eval --checkpoint ... --activations FILE`: your activations and your SAEs, a family read as
one sweep, a checkpoint alone beside the controls at its own L0, and bad input as one line."""
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from benchmark.cli import main
from benchmark.interop.own_data import checkpoint_specs

from tests.benchmark.interop._toys import saelens_cfg, write_saelens

D, TRUE_L0, N = 48, 4, 3000
BIAS = 0.05  # every pre-activation positive: a TopK checkpoint's L0 is exactly its k


def known_dictionary(seed=0):
    """An orthonormal dictionary (48 atoms in 48 dimensions) and N activations x = z·D + noise,
    z exactly 4-sparse with magnitudes in [0.5, 1.5]."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.linalg.qr(torch.randn(D, D, generator=g)).Q.T.contiguous()
    support = torch.rand(N, D, generator=g).argsort(1)[:, :TRUE_L0]
    codes = torch.zeros(N, D).scatter(1, support, 0.5 + torch.rand(N, TRUE_L0, generator=g))
    return atoms, codes @ atoms + 0.002 * torch.randn(N, D, generator=g)


def topk_checkpoint(folder, atoms, k):
    """A SAELens TopK SAE whose decoder is the true dictionary (and its encoder the transpose)."""
    write_saelens(folder, saelens_cfg("topk", D, D, k=k),
                  {"W_enc": atoms.T, "b_enc": torch.full((D,), BIAS), "W_dec": atoms, "b_dec": torch.zeros(D)})
    return folder


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    atoms, x = known_dictionary()
    np.save(root / "acts.npy", x.numpy())
    for k in (2, 4, 8):
        topk_checkpoint(root / "sweep" / f"k{k}", atoms, k)
    return root, atoms, x


def run_eval(out, activations, *checkpoints, extra=()):
    return main(["eval", "--checkpoint", *map(str, checkpoints), "--activations", str(activations),
                 "--out", str(out), "--no-progress", "--in-process", *extra])


def test_a_family_of_topk_checkpoints_is_one_sweep_placed_at_its_ks(family, capsys):
    root, _, _ = family
    out = root / "out-family"
    # `full`, whose tasks include the image ones (`default` has none): they are skipped, with why.
    assert run_eval(out, root / "acts.npy", root / "sweep", extra=["--l0-targets", "2", "4", "8", "--preset", "full"]) == 0
    rows = pd.read_csv(out / "results.csv")
    ok = rows[rows.status == "ok"]
    members = ok[ok.variant == "ckpt:SAELens-topk-48"]
    assert sorted(members.setting.unique()) == ["member=k2", "member=k4", "member=k8"]
    l0 = members[members.metric == "l0"].set_index("setting").value
    assert l0.to_dict() == {"member=k2": 2.0, "member=k4": 4.0, "member=k8": 8.0}
    r2 = members[members.metric == "r2"].set_index("setting").value
    assert r2["member=k4"] > 0.99 and r2["member=k2"] < 0.8  # the true L0 is 4
    assert {"pca", "pca-topk", "random-dict"} <= set(ok.variant)  # fitted on the same activations
    board = (out / "leaderboard.md").read_text()
    assert "ckpt:SAELens-topk-48" in board and "#### L0 = 4" in board
    skipped = rows[rows.status == "skipped"]
    assert "needs images" in " ".join(skipped[skipped.task == "intervention"].message)


def test_a_checkpoint_alone_meets_the_controls_at_its_own_l0(family):
    root, atoms, _ = family
    single = topk_checkpoint(root / "alone" / "my-sae", atoms, 5)
    out = root / "out-alone"
    assert run_eval(out, root / "acts.npy", single) == 0
    board = (out / "leaderboard.md").read_text()
    section = board.split("### reconstruction on acts", 1)[1]
    table = section.split("#### L0 = 5\n", 1)[1].split("####", 1)[0]  # its own L0, beside the preset's targets
    assert "ckpt:my-sae" in table and "pca-topk (control)" in table
    control_row = next(line for line in table.splitlines() if line.startswith("| pca-topk"))
    assert "n/r" not in control_row  # the controls are read at exactly its L0


def test_the_file_format_and_the_chunk_size_do_not_change_the_results(family, tmp_path):
    from benchmark.datasets import build_dataset

    root, _, x = family
    save_file({"activations": x}, str(tmp_path / "acts.safetensors"))
    torch.save(x, tmp_path / "acts.pt")
    built = [build_dataset("acts", {"kind": "activations", "path": str(path), "chunk_rows": chunk}, seed=3)
             for path, chunk in [(root / "acts.npy", 65536), (tmp_path / "acts.safetensors", 7),
                                 (tmp_path / "acts.pt", 1000), (root / "acts.npy", 1)]]
    for other in built[1:]:
        assert torch.equal(other.train, built[0].train) and torch.equal(other.test, built[0].test)
    assert built[0].test.shape == (300, D) and built[0].train.shape == (2700, D)  # 10% held out


def test_families_group_by_format_architecture_and_width(family, tmp_path):
    root, atoms, _ = family
    wide = tmp_path / "wide"
    write_saelens(wide, saelens_cfg("standard", D, 2 * D), {"W_enc": torch.cat([atoms.T, -atoms.T], 1),
                                                             "b_enc": torch.zeros(2 * D),
                                                             "W_dec": torch.cat([atoms, -atoms]), "b_dec": torch.zeros(D)})
    folders = [root / "sweep" / "k2", wide, root / "sweep" / "k8"]
    specs = checkpoint_specs(folders)
    assert len(specs) == 2 and specs[0].count("|") == 1 and "|" not in specs[1]


def write_labels(path, n, **columns):
    pd.DataFrame(columns or {"attr": np.arange(n) % 2}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: np.save(d / "a.npy", np.zeros((10, 7), np.float32)), "d_in is 48 but dataset a has 7 values"),
    (lambda d: np.save(d / "a.npy", np.where(np.arange(48 * 50).reshape(50, 48) % 97 == 0, np.nan, 1.0)),
     "rows hold NaN or inf"),
    (lambda d: (d / "a.npy").write_bytes(b""), "is empty"),
    (lambda d: np.save(d / "a.npy", np.zeros((0, 48), np.float32)), "is empty"),
    (lambda d: (d / "a.txt").write_text("1 2 3"), "unknown format .txt"),
    (lambda d: np.save(d / "a.npy", np.zeros((10, 48), np.int64)), "not floating point"),
])
def test_bad_activations_are_one_line_exit_2_nothing_written(family, tmp_path, capsys, make, message):
    root, _, _ = family
    make(tmp_path)
    path = next(tmp_path.glob("a.*"))
    assert run_eval(tmp_path / "out", path, root / "sweep" / "k2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_nan_rows_are_counted(family, tmp_path, capsys):
    root, _, x = family
    bad = x[:100].clone()
    bad[[3, 50], 0] = float("nan")
    bad[7, 5] = float("inf")
    np.save(tmp_path / "a.npy", bad.numpy())
    assert run_eval(tmp_path / "out", tmp_path / "a.npy", root / "sweep" / "k2") == 2
    assert "3 of 100 rows hold NaN or inf" in capsys.readouterr().err


def test_labels_of_the_wrong_length_are_one_line(family, tmp_path, capsys):
    root, _, _ = family
    labels = write_labels(tmp_path / "labels.csv", 10)
    assert run_eval(tmp_path / "out", root / "acts.npy", root / "sweep" / "k2", extra=["--labels", str(labels)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has 10 rows; the activations file has 3000" in err[0]
    assert not (tmp_path / "out").exists()


def test_labels_enable_sparse_probing(family, tmp_path):
    root, atoms, x = family
    labels = write_labels(tmp_path / "labels.csv", N, first_atom=(x @ atoms[0] > 0.3).long().numpy())
    out = tmp_path / "out"
    assert run_eval(out, root / "acts.npy", root / "sweep" / "k4", extra=["--labels", str(labels)]) == 0
    rows = pd.read_csv(out / "results.csv")
    probe = rows[(rows.task == "sparse_probing") & (rows.status == "ok") & (rows.variant == "ckpt:k4")]
    assert probe.set_index("metric").loc["probe_acc_k1", "value"] > 0.9  # one latent is the attribute's atom


def test_run_trains_suite_variants_on_the_file(family, tmp_path, tiny_preset):
    root, _, _ = family
    out = tmp_path / "out"
    assert main(["run", "--variant", "topk", "--task", "reconstruction", "--activations", str(root / "acts.npy"),
                 "--preset", str(tiny_preset), "--out", str(out), "--no-progress", "--no-twins"]) == 0
    rows = pd.read_csv(out / "results.csv")
    assert set(rows.dataset) == {"acts"} and set(rows.variant) == {"topk"} and (rows.status == "ok").all()
    assert rows.set_index("metric").loc["r2", "value"] > 0  # trained a little (tiny preset)
