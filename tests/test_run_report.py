"""report.md: written beside results.json by every run, with the accuracies of results.json and
links to files that exist."""

import json
import os
import re

from cli_helpers import run_distill

from tfkd.experiment import run_report

TINY = [
    "--dataset=synthetic",
    "--synthetic_size=400",
    "--synthetic_dim=8",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
    "--teacher=mlp_small",
    "--teacher_epochs=1",
    "--student=mlp_small",
    "--epochs=2",
    "--batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
    "--baseline",
    "--calibrate_teacher",
    "--deterministic",
]


def test_a_run_writes_a_report_with_its_accuracies_and_existing_links(tmp_path, capsys):
    out = tmp_path / "a folder with a long name" / "run"
    run_distill(TINY + [f"--output_dir={out}"])
    with open(out / "results.json") as handle:
        results = json.load(handle)
    text = (out / "report.md").read_text()
    accuracies = {
        role: results[key]["accuracy"]
        for role, key in (
            ("teacher", "teacher"),
            ("distilled student", "student"),
            ("student alone", "baseline"),
        )
    }
    for role, accuracy in accuracies.items():
        assert re.search(rf"^\| {role} \|.*\| {accuracy:.4f} \|", text, re.MULTILINE), role
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert {"curves.png", "results.json", "reliability_before.png", "history.csv"} <= set(links)
    for link in links:
        assert os.path.exists(out / link), link
    assert "## Time of each phase" in text and "| distillation |" in text
    assert re.search(r"^- TensorFlow \d+\.\d+", text, re.MULTILINE)
    assert re.search(r"^- Keras \d+\.\d+", text, re.MULTILINE)
    last = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    assert last.endswith(f"report {out / 'report.md'}")
    for accuracy in accuracies.values():
        assert f"{accuracy:.4f}" in last


def test_the_summary_line_keeps_its_columns_apart_for_any_path():
    results = {
        "teacher": {"accuracy": 0.75851},
        "student": {"accuracy": 0.7},
        "baseline": {"accuracy": 0.69},
    }
    long_path = "/" + "/".join(["a_rather_long_folder_name"] * 8)
    line = run_report.summary_line(results, long_path)
    assert re.fullmatch(
        r"  teacher 0\.7585 +student 0\.7000 +student alone 0\.6900 +report "
        + re.escape(long_path + "/report.md"),
        line,
    )


def test_the_command_line_names_the_command_as_typed():
    assert (
        run_report.command_line(["/venv/bin/tfkd", "distill", "--config=synthetic"])
        == "tfkd distill --config=synthetic"
    )
    assert (
        run_report.command_line(["bin/distill", "--output_dir=a b"])
        == "bin/distill '--output_dir=a b'"
    )


def test_a_multi_teacher_report_lists_every_teacher_and_its_weight_plot(tmp_path):
    results = {
        "method": "ca_mkd",
        "dataset": "synthetic",
        "teachers": [
            {"arch": "mlp", "accuracy": 0.61, "params": 10},
            {"arch": "runs/a/teacher.keras", "accuracy": 0.64, "params": 20},
        ],
        "ensemble": {"accuracy": 0.66},
        "student": {"arch": "mlp_small", "accuracy": 0.6, "val_accuracy": 0.58, "params": 5},
        "seconds": {"teacher_0": 1.25, "distill": 2.5},
    }
    (tmp_path / "teacher_weights.png").write_bytes(b"")
    text = run_report.markdown(results, str(tmp_path), versions_={"tfkd": "0"})
    assert "| teacher 0 | mlp | 0.6100 |" in text
    assert "| teacher 1 | runs/a/teacher.keras | 0.6400 |" in text
    assert "| teachers' majority vote |  | 0.6600 |" in text
    assert "![Per-example teacher weights on the training split](teacher_weights.png)" in text
    assert "| teacher 0 | 1.2 |" in text and "| distillation | 2.5 |" in text
    assert run_report.summary_line(results, "out").startswith("  teacher 0.6600  ")
