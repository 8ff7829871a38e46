"""A run's resumable folder: "same settings, so resume?" decided and worded once
(`tfkd.experiment.workdir`), for a run's `.partial/` folder and for any folder a tool resumes."""

import json

import pytest

from tfkd.experiment import workdir


def test_a_partial_folder_resumes_with_the_same_settings_and_refuses_others(tmp_path):
    out = tmp_path / "run"
    first = workdir.WorkDir(out, {"student": "mlp", "epochs": 2}).open()
    assert first.created and not first.resumed
    assert json.loads((tmp_path / "run.partial" / "run.json").read_text()) == {
        "student": "mlp",
        "epochs": 2,
    }
    again = workdir.WorkDir(out, {"epochs": 2, "student": "mlp"})
    assert not again.holds_other_settings()
    assert again.open().resumed
    other = workdir.WorkDir(out, {"student": "mlp_small", "epochs": 2})
    assert other.holds_other_settings()
    with pytest.raises(
        ValueError,
        match=r"run\.partial holds an unfinished run with other flags \(--student was 'mlp', "
        r"now 'mlp_small'\); re-run with the same flags to resume it, or pass --overwrite",
    ):
        other.open()
    started_over = workdir.WorkDir(out, {"student": "mlp_small"}, overwrite=True).open()
    assert started_over.created and started_over.started_with() == {"student": "mlp_small"}


def test_every_difference_is_named_once_and_a_missing_setting_differs():
    with pytest.raises(
        ValueError,
        match=r"^--output_dir x holds a search with other flags \(--epochs was 2, now 3; "
        r"--tuner was None, now 'random'\)",
    ):
        workdir.refuse_other_settings(
            "--output_dir x",
            "a search",
            {"epochs": 2, "seed": 0},
            {"seed": 0, "epochs": 3, "tuner": "random"},
        )
    assert workdir.refuse_other_settings("x", "a search", {"a": [1, 2]}, {"a": [1, 2]}) is None


def test_resume_messages(capsys):
    workdir.announce_resume("distill", 1, 0, 2)
    workdir.announce_resume("distill", 0, 3, 2)
    workdir.announce_resume("teacher", 0, 0, 2)  # from scratch: nothing
    workdir.announce_reuse("the student distilled by this run")
    assert capsys.readouterr().out.splitlines() == [
        "Resuming distill at epoch 2 of 2",
        "Resuming distill at epoch 1 of 2, step 4",
        "Loading the student distilled by this run",
    ]
