"""External variants: FILE.py:Class and module:Class, the contract check, --config, and that an
edited submission is re-run."""
import dataclasses

import pandas as pd
import pytest
import torch

from benchmark.config import load_preset
from benchmark.contract import check_on_dataset
from benchmark.data import Dataset
from benchmark.grid.runner import Cell, RunOptions, Runner
from benchmark.registry import VARIANTS
from benchmark.submission import resolve_variant, variant_name
from benchmark.variant import SAE
from tests.benchmark._submissions import BROKEN, broken, run, write_preset

EXAMPLE = "examples/my_variant.py:GatedSAE"
EXAMPLE_CONFIG = "examples/my_variant.yaml"


@pytest.fixture
def preset(tmp_path):
    return write_preset(tmp_path)


def contract_failure(tmp_path, capsys, *args):
    """Run the CLI expecting exit 2; return stderr's lines (and check nothing was written)."""
    out = tmp_path / "out"
    code = run(out, write_preset(tmp_path), *args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and not out.exists()
    return err.strip().splitlines()


CONTRACT_FAILURES = [
    ("RaisesInEncode", "variants.py:RaisesInEncode on digits8: encode(x) raised RuntimeError: encoder exploded"),
    ("WrongShape", "encode(x) returned shape (8, 3); expected (8, 16)"),
    ("WrongDtype", "decode(codes) returned dtype torch.float64; expected torch.float32"),
    ("NaNLoss", "loss(x, x_hat, codes) returned a non-finite loss (nan)"),
    ("NoGradient", "parameters that receive no gradient from the loss: unused"),
    ("MissingLoss", "variants.py:MissingLoss: MissingLoss does not define loss()"),
    ("NotAModule", "variants.py:NotAModule: NotAModule is not a torch.nn.Module subclass"),
    ("NoSuchClass", "has no class 'NoSuchClass'; its nn.Module classes: "),
]


@pytest.mark.parametrize("cls, message", CONTRACT_FAILURES)
def test_a_broken_submission_is_refused_with_its_reason(tmp_path, capsys, cls, message):
    lines = contract_failure(tmp_path, capsys, "--variant", broken(cls))
    assert len(lines) == 1 and message in lines[0], lines


def test_every_problem_of_every_submission_is_its_own_line(tmp_path, capsys):
    """Problems seen on loading come first (before any dataset is built), then those of the
    check on data; each stage reports every variant's problems at once."""
    lines = contract_failure(tmp_path, capsys, "--variant", "relu", broken("TwoProblems"), broken("NotAModule"),
                             broken("MissingLoss"))
    assert len(lines) == 2, lines
    assert "NotAModule is not a torch.nn.Module subclass" in lines[0]
    assert "MissingLoss does not define loss()" in lines[1]
    lines = contract_failure(tmp_path, capsys, "--variant", "relu", broken("TwoProblems"), broken("WrongDtype"))
    assert len(lines) == 3, lines
    assert "TwoProblems on digits8: parameters that receive no gradient from the loss: unused" in lines[0]
    assert "TwoProblems on digits8: after_step() raised AttributeError: no such attribute 'atoms_'" in lines[1]
    assert "WrongDtype on digits8: decode(codes) returned dtype torch.float64" in lines[2]
    assert all(line.startswith("error: ") for line in lines)


def test_unloadable_files_are_refused(tmp_path, capsys):
    (tmp_path / "syntax.py").write_text("import torch\n\nclass Broken(\n    def encode(self, x):\n")
    (tmp_path / "imports.py").write_text("import a_module_that_does_not_exist\n")
    (tmp_path / "notes.txt").write_text("not code\n")
    lines = contract_failure(tmp_path, capsys, "--variant", f"{tmp_path}/syntax.py:Broken",
                             f"{tmp_path}/imports.py:Anything", f"{tmp_path}/absent.py:Anything",
                             f"{tmp_path}/notes.txt:Anything", "no_such_module_xyz:Cls", "file.py:")
    assert len(lines) == 6, lines
    expected = ["syntax.py:Broken: syntax error in", "line 3", "imports.py:Anything: importing",
                "ModuleNotFoundError: No module named 'a_module_that_does_not_exist' (imports.py:1)",
                "absent.py:Anything: file", "does not exist",
                "notes.txt:Anything: ", "is not a Python file",
                "no module named 'no_such_module_xyz'", "expected NAME, path/to/file.py:Class"]
    text = "\n".join(lines)
    for fragment in expected:
        assert fragment in text, (fragment, text)


def test_a_config_problem_is_refused_line_by_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("l1_coeff: 0.1\ntrain: {epochs: 1, momentum: 0.9}\ndatasets: {mnist: {l1_coeff: 1}}\n")
    lines = contract_failure(tmp_path, capsys, "--variant", broken("Tiny"), "--config", str(config))
    assert len(lines) == 2, lines
    assert "dataset 'mnist' is not in preset 'tiny' (its datasets: digits8)" in lines[0] + lines[1]
    assert "'train' must be a mapping with keys among" in lines[0] + lines[1]


def test_a_hyperparameter_the_class_does_not_take_is_a_contract_failure(tmp_path, capsys):
    config = tmp_path / "extra.yaml"
    config.write_text("momentum: 0.9\n")
    lines = contract_failure(tmp_path, capsys, "--variant", broken("BadHparam"), "--config", str(config))
    assert len(lines) == 1 and "BadHparam((1, 8, 8), 16, momentum=0.9) raised TypeError" in lines[0], lines


def test_config_without_an_external_variant_is_refused(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("l1_coeff: 0.1\n")
    lines = contract_failure(tmp_path, capsys, "--variant", "relu", "--config", str(config))
    assert "--config sets the hyperparameters of external variants" in lines[0]


def test_the_example_submission_runs_with_its_config(tmp_path):
    out = tmp_path / "out"
    preset = write_preset(tmp_path, tasks=("reconstruction", "sparsity"))
    assert run(out, preset, "--variant", EXAMPLE, "--config", EXAMPLE_CONFIG) == 0
    frame = pd.read_csv(out / "results.csv")
    assert set(frame["variant"]) == {"my_variant.py:GatedSAE"} and set(frame["status"]) == {"ok"}
    r2 = frame.set_index(["task", "metric"]).loc[("reconstruction", "r2"), "value"]
    assert r2 > 0  # it learns something in one epoch
    assert "my_variant.py:GatedSAE" in (out / "leaderboard.md").read_text()


def test_the_config_reaches_the_constructor(tmp_path):
    """Two configs give two config hashes and two different models."""
    low, high = tmp_path / "low.yaml", tmp_path / "high.yaml"
    low.write_text("l1_coeff: 0.0\n")
    high.write_text("datasets: {digits8: {l1_coeff: 5.0}}\n")
    preset = write_preset(tmp_path)
    assert run(tmp_path / "a", preset, "--variant", EXAMPLE, "--config", str(low)) == 0
    assert run(tmp_path / "b", preset, "--variant", EXAMPLE, "--config", str(high)) == 0
    a, b = (pd.read_csv(tmp_path / d / "results.csv").set_index("metric") for d in "ab")
    assert set(a["config_hash"]).isdisjoint(b["config_hash"])
    assert a.loc["l0", "value"] > b.loc["l0", "value"]  # a stronger L1: sparser codes


def test_a_plain_module_gets_the_sae_defaults(tmp_path):
    cls = resolve_variant(broken("PlainModule"))
    model = cls((1, 8, 8), 16)
    assert cls.name == "variants.py:PlainModule" and model.input_shape == (1, 8, 8) and model.n_latents == 16
    assert model.atoms().shape == (16, 1, 8, 8) and not cls.supports_inference_k() and cls.requires == frozenset()
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(model(x)[0], model.decode(model.encode(x)))
    out = tmp_path / "out"
    assert run(out, write_preset(tmp_path), "--variant", broken("PlainModule")) == 0
    assert set(pd.read_csv(out / "results.csv")["status"]) == {"ok"}


def test_resolution_loads_a_file_once_and_names_it_by_file_and_class(tmp_path, monkeypatch):
    assert resolve_variant("relu") is VARIANTS.get("relu")
    assert resolve_variant(broken("Tiny")) is resolve_variant(broken("Tiny"))
    assert variant_name(broken("Tiny")) == "variants.py:Tiny"
    assert issubclass(resolve_variant(broken("Tiny")), SAE)
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sae.py").write_text(BROKEN.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = resolve_variant("mypkg.sae:Tiny")
    assert cls.name == "mypkg.sae:Tiny" and variant_name("mypkg.sae:Tiny") == "mypkg.sae:Tiny"
    assert VARIANTS.get("relu").name == "relu"  # wrapping an external class renames nothing else


def test_an_edited_submission_is_run_again(tmp_path, capsys):
    source = tmp_path / "mine.py"
    source.write_text(BROKEN.read_text())
    preset = write_preset(tmp_path)
    out = tmp_path / "out"
    assert run(out, preset, "--variant", f"{source}:Tiny") == 0
    assert run(out, preset, "--variant", f"{source}:Tiny") == 0
    assert "1 task cells already finished" in capsys.readouterr().out
    source.write_text(BROKEN.read_text().replace("l1_coeff=0.01", "l1_coeff=0.02"))
    assert run(out, preset, "--variant", f"{source}:Tiny") == 0
    assert "0 task cells already finished" in capsys.readouterr().out
    frame = pd.read_csv(out / "results.csv")
    assert frame["config_hash"].nunique() == 2  # the old rows stay beside the new ones
    old, new = (rows.set_index("metric")["value"] for _, rows in frame.groupby("config_hash", sort=False))
    assert old["l0"] != new["l0"]  # and come from the edited code


def images(n=64, shape=(1, 8, 8)):
    return Dataset("toy", torch.rand(n, *shape), torch.rand(n, *shape), {})


def test_the_check_passes_every_registered_variant():
    """No false alarms: every built-in variant, with its smoke hyperparameters, meets the contract
    on digits8 and (for the concept-driven ones) on shapes."""
    smoke = load_preset("smoke")
    preset = dataclasses.replace(
        smoke, n_latents=16,
        datasets={"digits8": {}, "shapes-tuple": smoke.datasets["shapes-tuple"]},
        tasks={"reconstruction": {"datasets": ["digits8", "shapes-tuple"]}})
    runner = Runner(RunOptions(preset=preset, progress=False))
    runner.load_datasets()
    for name in VARIANTS.names():
        cls = VARIANTS.get(name)
        dataset = "shapes-tuple" if "concepts" in cls.requires else "digits8"
        setting = next(iter(runner.planner.settings(name, runner.datasets[dataset, 0])))
        spec = runner.model_spec(Cell(name, setting, dataset, 0))
        assert check_on_dataset(cls, runner.datasets[dataset, 0], spec.n_latents, spec.hparams, "cpu") == [], name


def test_the_check_sees_a_wrong_atoms_override():
    class BadAtoms(resolve_variant(broken("Tiny"))):
        def atoms(self):
            return torch.zeros(3)

    assert check_on_dataset(BadAtoms, images(), 16, {}, "cpu") == [
        "atoms() returned shape (3,); expected (16, 1, 8, 8)"]


def test_the_example_gated_sae_is_a_relu_sae_when_gate_and_magnitude_coincide():
    """With r_mag = 0 and b_mag = b_gate both paths compute π_gate, so the codes are
    ReLU(π_gate); shifting b_mag alone moves the magnitudes but not which latents fire."""
    torch.manual_seed(0)
    model = resolve_variant(EXAMPLE)((1, 8, 8), 16)
    with torch.no_grad():
        model.b_gate.normal_()
        model.b_mag.copy_(model.b_gate)
    x = torch.rand(32, 1, 8, 8)
    pre = model.gate_pre_activation(x)
    assert torch.allclose(model.encode(x), pre.relu())
    with torch.no_grad():
        model.b_mag.add_(1.0)
    codes = model.encode(x)
    assert torch.equal(codes > 0, pre > 0) and not torch.allclose(codes, pre.relu())
