"""The CLI end to end on a tiny preset: determinism, resume, --force, and bad input."""
import pandas as pd
import pytest

from benchmark.cli import main


def run(out, preset, *extra):
    return main(["run", "--preset", str(preset), "--out", str(out), "--no-progress", *extra])


def values(path):
    frame = pd.read_csv(path)
    return frame.set_index(["task", "dataset", "variant", "setting", "seed", "metric"])["value"].sort_index()


def test_two_runs_with_the_same_seed_give_identical_values(tmp_path, tiny_preset):
    assert run(tmp_path / "a", tiny_preset, "--variant", "relu", "topk") == 0
    assert run(tmp_path / "b", tiny_preset, "--variant", "relu", "topk") == 0
    a, b = values(tmp_path / "a" / "results.csv"), values(tmp_path / "b" / "results.csv")
    assert len(a) > 10
    pd.testing.assert_series_equal(a, b)


def test_rerun_skips_finished_cells_and_force_recomputes_them(tmp_path, tiny_preset, capsys):
    out = tmp_path / "out"
    assert run(out, tiny_preset, "--variant", "relu") == 0
    first = pd.read_csv(out / "results.csv")
    assert run(out, tiny_preset, "--variant", "relu") == 0
    # relu, and its untrained twin at its 4 keep_top settings (the targets 8, 16, 32 and 64), 2 tasks each
    assert "10 task cells already finished" in capsys.readouterr().out
    second = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(first, second)  # nothing recomputed, nothing doubled

    assert run(out, tiny_preset, "--variant", "relu", "--force") == 0
    forced = pd.read_csv(out / "results.csv")
    assert len(forced) == len(first)  # replaced, not appended
    assert set(forced["run_id"]) != set(first["run_id"])
    pd.testing.assert_series_equal(values(out / "results.csv"), values(tmp_path / "out" / "results.csv"))


def test_a_new_seed_only_trains_the_new_cells(tmp_path, tiny_preset, capsys):
    out = tmp_path / "out"
    assert run(out, tiny_preset, "--variant", "relu") == 0
    assert run(out, tiny_preset, "--variant", "relu", "--seeds", "0", "1") == 0
    # relu, and its untrained twin at its 4 keep_top settings (the targets 8, 16, 32 and 64), 2 tasks each
    assert "10 task cells already finished" in capsys.readouterr().out
    assert set(pd.read_csv(out / "results.csv")["seed"]) == {0, 1}


def test_run_writes_a_leaderboard(tmp_path, tiny_preset):
    out = tmp_path / "out"
    assert run(out, tiny_preset, "--variant", "relu", "topk", "--task", "reconstruction", "sparsity") == 0
    text = (out / "leaderboard.md").read_text()
    assert "## Summary" in text and "relu" in text and "topk" in text


def test_a_preset_files_leaderboard_reads_its_headline_l0_from_the_file(tmp_path, tiny_preset, capsys):
    """A preset file's name (its stem) loads no packaged preset: the run hands the leaderboard the
    preset itself, and `leaderboard` reads it from --preset FILE; without the file it says what
    it assumed."""
    text = tiny_preset.read_text() + "comparison: {l0_targets: [2, 4], headline_l0: 4}\n"
    tiny_preset.write_text(text)
    out = tmp_path / "out"
    assert run(out, tiny_preset, "--variant", "topk", "--task", "reconstruction", "--no-twins") == 0
    board = (out / "leaderboard.md").read_text()
    assert "(digits8, L0 4)" in board and "L0 16" not in board
    assert main(["leaderboard", "--results", str(out / "results.csv"), "--output", str(out / "again.md"),
                 "--preset", str(tiny_preset)]) == 0
    assert (out / "again.md").read_text() == board
    assert main(["leaderboard", "--results", str(out / "results.csv"), "--output", str(out / "bare.md")]) == 0
    bare = (out / "bare.md").read_text()
    assert "not a packaged preset, and its file was not given" in bare and "(digits8, L0 16)" in bare
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(out / "results.csv"), "--preset", "smoke"]) == 2
    assert "no results for preset 'smoke'" in capsys.readouterr().err


def test_set_runs_a_changed_preset_under_its_own_name(tmp_path, tiny_preset, capsys):
    """--set changes the preset for one run; its rows and leaderboard carry the changed preset's
    name, beside (never mixed with) the preset's own rows, and `leaderboard` redraws them given
    the same --set."""
    out = tmp_path / "out"
    args = ["--variant", "relu", "--task", "reconstruction", "--no-twins"]
    assert run(out, tiny_preset, *args) == 0
    assert run(out, tiny_preset, *args, "--set", "train.epochs=2") == 0
    assert "0 task cells already finished" in capsys.readouterr().out  # a new preset: nothing reused
    steps = pd.read_csv(out / "results.csv").groupby("preset")["steps"].max()
    assert set(steps.index) == {"tiny", "tiny+train.epochs=2"}
    assert steps["tiny+train.epochs=2"] == 2 * steps["tiny"]
    board = (out / "leaderboard.md").read_text()
    assert board.startswith("# SAE benchmark leaderboard\n\nPreset `tiny+train.epochs=2`: tiny preset")
    assert main(["leaderboard", "--results", str(out / "results.csv"), "--output", str(out / "again.md"),
                 "--preset", str(tiny_preset), "--set", "train.epochs=2"]) == 0
    assert (out / "again.md").read_text().split("\n---\n")[0] == board.split("\n---\n")[0]
    assert main(["leaderboard", "--results", str(out / "results.csv"), "--set", "train.epochs=2"]) == 2
    assert "--set goes with --preset" in capsys.readouterr().err


BAD_INPUT = [
    (["--variant", "nosuch"], "unknown variant 'nosuch'"),
    (["--task", "nosuch"], "unknown task 'nosuch'"),
    (["--all", "--preset", "nosuch"], "unknown preset 'nosuch'"),
    (["--all", "--seeds"], None),  # argparse: an option missing its value
    ([], "say what to run"),
    (["--all", "--set", "datasets.nosuch.train.lr=0.1"], "preset 'smoke' has no dataset 'nosuch'"),
    (["--all", "--set", "train.lr=-"], "top-level train 'lr' must be a number >= 0 (0: a model that never moves), got [None]"),
    (["--all", "--set", "train.lr"], "--set wants KEY.PATH=VALUE"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT)
def test_bad_names_give_one_line_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    with_preset = args if "--preset" in args else [*args, "--preset", "smoke"]
    try:
        code = main(["run", "--out", str(out), "--no-progress", *with_preset])
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    if message:
        assert err.count("\n") == 1 and message in err
    assert not out.exists()


VALID = "seeds: [0]\ntrain: {epochs: 1, batch_size: 8, lr: 0.1}\ndatasets: {digits8: {}}\ntasks: {sparsity: {datasets: [digits8]}}\n"
PRESET_ERRORS = [
    ("seeds: [0\n", "malformed YAML at line"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    ("seeds: [0]\ntrain: {epochs: 1, batch_size: 8, lr: 0.1}\ndatasets: {digits8: {}}\n"
     "tasks: {sparsity: {datasets: [digits8]}}\nvariants: {nosuch: {}}\n", "unknown variant 'nosuch'"),
    ("seeds: [0]\ntrain: {epochs: 1, batch_size: 8, lr: 0.1}\ndatasets: {digits8: {}}\n"
     "tasks: {nosuch: {datasets: [digits8]}}\n", "unknown task 'nosuch'"),
    ("seeds: [0]\ntrain: {epochs: 1, batch_size: 8, lr: 0.1}\ndatasets: {mine: {kind: nosuch}}\n"
     "tasks: {sparsity: {datasets: [mine]}}\n", "unknown dataset 'nosuch'"),
    ("seeds: [0]\ntrain: {epochs: 1, batch_size: 8, lr: 0.1}\ndatasets: {digits8: {}}\n"
     "tasks: {sparsity: {datasets: [patches32]}}\n", "not defined under 'datasets'"),
    ("seeds: [0]\ntrain: {epochs: 1}\n", "'train' must set ['batch_size', 'lr'] and a cap"),
    (VALID.replace("epochs: 1", "max_steps: 0"), "train 'max_steps' must be a positive integer, got 0"),
    (VALID.replace("epochs: 1", "max_steps: -5"), "train 'max_steps' must be a positive integer"),
    (VALID.replace("epochs: 1", "max_steps: 10"), "'max_steps' (10) is below what the plateau criterion needs"),
    (VALID.replace("epochs: 1", "max_steps: 150, min_steps: 200"), "'max_steps' (150) is below what the plateau"),
    (VALID.replace("lr: 0.1", "lr: fast"), "top-level train 'lr' must be a number >= 0 (0: a model that never moves), got 'fast'"),
    (VALID.replace("lr: 0.1", "lr: -0.001"), "top-level train 'lr' must be a number >= 0 (0: a model that never moves), got -0.001"),
    (VALID.replace("epochs: 1", "epochs: 1, schedule: cosine"), "train 'schedule' must be one of ['constant', 'linear_decay']"),
    (VALID.replace("digits8: {}}", "digits8: {train: {stream: true}}}"), "dataset 'digits8' is finite"),
    (VALID + "budget_check: {length: 0.5}\n", "'budget_check' must be a mapping"),
    (VALID + "evaluation: {seeds: 0}\n", "'evaluation' must be a mapping {seeds: a positive integer}"),
    (VALID + "evaluation: {seed: 3}\n", "'evaluation' must be a mapping {seeds: a positive integer}"),
    ("seeds: [0]\ntrain: {epochs: 1, batch_size: 8, lr: 0.1}\ndatasets: {digits8: {bogus: 1}}\n"
     "tasks: {sparsity: {datasets: [digits8]}}\n", "unknown parameter(s) bogus"),
    ("seedz: [0]\n", "unknown key(s) ['seedz']"),
    (VALID + "variants: {topk: {sweep: [{k: 4}, {kay: 8}]}}\n", "sweep entry {'kay': 8} sets unknown hyperparameter(s) ['kay'] of topk"),
    (VALID + "variants: {topk: {sweep: []}}\n", "'sweep' must be a non-empty list"),
    (VALID + "variants: {topk: {sweep: {k: 4}}}\n", "'sweep' must be a non-empty list"),
    (VALID + "variants: {relu: {l1_coef: 0.1}}\n", "unknown hyperparameter(s) ['l1_coef'] of relu"),
    (VALID + "comparison: {l0_targets: [8, -4], headline_l0: 8}\n", "'l0_targets' must be a non-empty list of positive numbers"),
    (VALID + "comparison: {l0_targets: [8, many]}\n", "'l0_targets' must be a non-empty list of positive numbers"),
    (VALID + "comparison: {headline_l0: 0}\n", "'headline_l0' must be a positive number"),
    (VALID + "controls: {pca: {}, nosuch: {}}\n", "unknown control 'nosuch'"),
]


@pytest.mark.parametrize("text, message", PRESET_ERRORS)
def test_a_bad_preset_gives_one_line_exit_2_and_writes_nothing(tmp_path, capsys, text, message):
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    out = tmp_path / "out"
    code = main(["run", "--all", "--preset", str(preset), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_list_names_every_variant_and_task(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in ["relu", "topk", "tensor", "dense", "reconstruction", "sparsity", "patches32", "smoke"]:
        assert name in text


@pytest.mark.parametrize("command", ["run", "list", "leaderboard"])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "usage" in capsys.readouterr().out
