"""Writes GUIDE.md ("which method to use") and guide.json beside this file.

Every recommendation is read from the same data as RESULTS.md: results_summary.json (the rows,
their verdicts and the numbers they show, written by make_results.py) and
retests/methods/results.json (the converged method comparison). guide.json holds every number
the guide shows, as shown. Rerun after make_results.py:

    python3 docs/make_results.py && python3 docs/make_guide.py
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# How each method is started from the command line (added to a data flagfile and --teacher);
# {setting} is the setting the validation split chose (SETTING_FLAGS).
FLAGS = {
    "kd": "--method=kd --teacher_cache=memory --alpha=0.9 {setting}",
    "dkd": "--method=dkd --teacher_cache=memory --temperature=4 {setting}",
    "dist": "--method=dist --teacher_cache=memory {setting}",
    "fitnet": "--method=fitnet --teacher_cache=none --alpha=0.9 --hint_weight=100 {setting}",
    "kd_ls": "--method=kd --logit_standardization --teacher_cache=memory --alpha=0.9 {setting}",
    "dkd_ls": (
        "--method=dkd --logit_standardization --teacher_cache=memory --nckd_weight=8 "
        "--dkd_warmup_epochs=3 {setting}"
    ),
    "ca_mkd": "--method=ca_mkd --teachers=A.keras,B.keras,C.keras --temperature=4",
    "function_matching": (
        "--method=kd --teaching=function_matching --teacher_cache=none --epochs=120"
    ),
}
SETTING_FLAGS = {  # docs/retests/run.sh's search settings
    "t1": "--temperature=1",
    "t2": "--temperature=2",
    "t4": "--temperature=4",
    "ls_t2": "--temperature=2",
    "ls_t4": "--temperature=4",
    "b8w20": "--nckd_weight=8 --dkd_warmup_epochs=20",
    "b8w3": "--nckd_weight=8 --dkd_warmup_epochs=3",
    "t1w1": "--temperature=1 --inter_weight=1 --intra_weight=1",
    "t4w2": "--temperature=4 --inter_weight=2 --intra_weight=2",
}


def load(relative):
    path = os.path.join(HERE, relative)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


class Guide:
    """Collects the numbers shown (for guide.json) and the row links."""

    def __init__(self, summary):
        self.rows = summary["rows"]
        self.shown = {}

    def row(self, group, claim):
        """The first RESULTS.md row whose group starts with `group` and whose claim contains
        `claim`, or None."""
        for row in self.rows:
            if row["group"].startswith(group) and claim in row["claim"]:
                return row
        return None

    def link(self, row):
        return f"[row {row['number']}](RESULTS.md)" if row else "(no row yet)"

    def number(self, label, value, decimals=2, signed=False):
        shown = round(float(value), decimals)
        self.shown[label] = shown
        text = f"{shown:+.{decimals}f}" if signed else f"{shown:.{decimals}f}"
        return text.replace("+-", "-")

    def from_row(self, row, key, label, signed=False):
        """A number RESULTS.md shows in `row` under `key`, recorded under `label`."""
        if row is None or key not in row["numbers"]:
            return None
        return self.number(label, row["numbers"][key], 2, signed)


def best_method(methods, student):
    """The distilled arm with the best mean test accuracy among those run on every seed, with
    the student alone and KD for comparison; None if the student is not there."""
    data = (methods or {}).get("students", {}).get(student)
    if not data:
        return None
    seeds = len((methods or {}).get("seeds", [])) or 3
    arms = data["arms"]
    complete = {
        k: a for k, a in arms.items() if k != "alone" and len(a["test_accuracy"]["values"]) >= seeds
    }
    if not complete:
        return None
    best = max(complete, key=lambda k: complete[k]["test_accuracy"]["mean"])
    return {"arm": best, "data": data, "complete": complete}


def capacity_cell(guide, methods, student, what):
    found = best_method(methods, student)
    kd_row = guide.row(f"Methods, converged teacher, {student}", "KD beats the student alone")
    if found is None:
        return None
    arm = found["complete"][found["arm"]]
    alone = found["data"]["arms"]["alone"]["test_accuracy"]
    setting = arm.get("setting", "")
    flags = (
        FLAGS.get(found["arm"], "")
        .replace("{setting}", SETTING_FLAGS.get(arm.get("setting_key"), ""))
        .strip()
    )
    others = ", ".join(
        f"{a['label']} {guide.number(f'{student} {k} mean', 100 * a['test_accuracy']['mean'])}"
        for k, a in sorted(found["complete"].items(), key=lambda x: -x[1]["test_accuracy"]["mean"])
        if k != found["arm"]
    )
    links = ", ".join(
        guide.link(guide.row(f"Methods, converged teacher, {student}", claim))
        for claim in (
            "KD beats",
            "DKD beats",
            "DIST beats",
            "FitNet",
            "improves KD",
            "improves DKD",
        )
        if guide.row(f"Methods, converged teacher, {student}", claim)
    )
    return (
        f"| {what} | one | 30 | no | **{arm['label']}** ({setting}): `{flags}`. "
        f"{guide.number(f'{student} best mean', 100 * arm['test_accuracy']['mean'])} % "
        f"against {guide.number(f'{student} alone mean', 100 * alone['mean'])} % alone "
        f"({len(arm['test_accuracy']['values'])} seeds)"
        + (f"; then {others}" if others else "")
        + f" | {links} |"
    ), kd_row


def low_temperature_cell(guide, methods, what):
    """The capacity-bound student while the method comparison is incomplete: KD at T = 1 from
    the converged calibration ladder (3 seeds), and the comparison's runs so far."""
    ladder = load("calibration/converged/cnn_small_t1_ladder.json")
    summary = load("calibration/converged/summary.json") or {}
    alone = summary.get("students", {}).get("cnn_small", {}).get("alone")
    t4 = guide.row("Calibration, converged", "Without calibration the largest")
    if not ladder or not alone:
        return f"| {what} | one | 30 | no | not measured yet | - |"
    students = "; ".join(
        f"from {r['teacher']} "
        + guide.number("cnn_small T1 from " + r["teacher"], 100 * r["student"]["none"]["mean"])
        + " %"
        for r in ladder["rows"]
    )
    text = (
        f"| {what} | one | 30 | no | **KD at T = 1**: `--method=kd --teacher_cache=memory "
        f"--temperature=1 --alpha=0.9`. {students}, against "
        f"{guide.number('cnn_small alone mean (calibration)', 100 * alone['mean'])} % alone "
        f"({len(alone['values'])} seeds, 5,000 images; at T = 4 every teacher's student is "
        f"below the student alone, {guide.link(t4)})"
    )
    data = (methods or {}).get("students", {}).get("cnn_small")
    if data:
        runs = ", ".join(
            f"{a['label']} ({a['setting']}) "
            f"{guide.number(f'cnn_small {k} mean so far', 100 * a['test_accuracy']['mean'])} % "
            f"on {len(a['test_accuracy']['values'])} seed(s)"
            for k, a in sorted(data["arms"].items(), key=lambda x: -x[1]["test_accuracy"]["mean"])
        )
        text += (
            f". The method comparison has not finished every seed; so far: {runs} "
            f"([retests/methods](retests/methods/table.md))"
        )
    return text + f" | {guide.link(t4)} |"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = argv[argv.index("--out") + 1] if "--out" in argv else HERE
    summary = load("results_summary.json")
    methods = load("retests/methods/results.json")
    guide = Guide(summary)
    lines = [
        "# Which method to use",
        "",
        "Generated by `docs/make_guide.py` from the data behind [RESULTS.md](RESULTS.md) "
        "(`results_summary.json`, `retests/methods/results.json`); every number is in "
        "`guide.json`. The evidence is Fashion-MNIST with the converged teachers of "
        "[teachers/](teachers/README.md), 3 seeds, small training subsets (the rows give "
        "the sizes): a place to start, not a guarantee for your data. Test accuracy in %.",
        "",
        "## Where to start",
        "",
        "| student | teachers | epochs | augmentation | start with | backed by |",
        "|---|---|---|---|---|---|",
    ]
    cells = []
    for student, what in (
        ("resnet8", "has room to learn (fits its training set)"),
        ("cnn_small", "capacity-bound (training accuracy near its test accuracy)"),
    ):
        cell = capacity_cell(guide, methods, student, what)
        if cell:
            cells.append(cell[0])
        elif student == "cnn_small":
            cells.append(low_temperature_cell(guide, methods, what))
        else:
            cells.append(
                f"| {what} | one | 30 | no | not measured yet: docs/retests/methods/ "
                f"has no complete {student} arms | - |"
            )
    ca = guide.row("Multi-teacher, converged", "CA-MKD beats each other method")
    alone_mt = guide.row("Multi-teacher, converged", "beats the student alone")
    if ca:
        cells.append(
            f"| has room to learn | several | 30 | no | **CA-MKD with its feature term**: "
            f"`{FLAGS['ca_mkd']}`. {guide.from_row(ca, 'CA-MKD mean', 'CA-MKD mean')} % against "
            f"AVER {guide.from_row(ca, 'AVER mean', 'AVER mean')}, FitNet-MKD "
            f"{guide.from_row(ca, 'FitNet-MKD mean', 'FitNet-MKD mean')}, EBKD "
            f"{guide.from_row(ca, 'EBKD mean', 'EBKD mean')} and alone "
            f"{guide.from_row(ca, 'alone mean', 'multi-teacher alone mean')} | "
            f"{guide.link(ca)}, {guide.link(alone_mt)} |"
        )
    patience = guide.row("Function matching, converged", "Patience")
    long_none = guide.row(
        "Function matching, converged",
        "beats KD on the un-augmented batches (teaching none: no augmentation",
    )
    fixed = guide.row("Function matching, converged", "beats a fixed teacher (the paper's")
    if long_none:
        fm = guide.from_row(long_none, "FM 120 ep mean", "FM 120 ep mean")
        none = guide.from_row(
            long_none, "KD, teaching none, 120 ep mean", "KD teaching none 120 ep mean"
        )
        fixed_text = (
            f"; against the paper's fixed teacher (`--teaching=fixed`): "
            f"{guide.link(fixed)} ({fixed['verdict']})"
            if fixed
            else ""
        )
        cells.append(
            f"| has room to learn | one | 120 or more | yes | **function matching**: "
            f"`{FLAGS['function_matching']}`. {fm} % against {none} % for KD on un-augmented "
            f"batches at the same 120 epochs{fixed_text} | {guide.link(long_none)}, "
            f"{guide.link(patience)} |"
        )
    lines += cells
    lines += ["", "## What not to use, and why (measured)", ""]
    donts = []
    hinton_small = guide.row("Calibration, converged", "Without calibration the largest")
    t1 = load("calibration/converged/summary.json") or {}
    if hinton_small:
        donts.append(
            f"- **KD at T = 4 on a capacity-bound student.** cnn_small distilled at T = 4 from "
            f"any of the four converged teachers stays below the student alone "
            f"({guide.from_row(hinton_small, 'alone mean', 'cnn_small alone mean')} %; "
            f"{guide.link(hinton_small)}); lower the temperature or pick the method the table "
            f"above measured for that student."
        )
    consistent = guide.row("Function matching, converged", "Consistent teaching")
    if consistent:
        diff = guide.from_row(
            consistent,
            "consistent views > independent views difference mean",
            "consistent minus independent",
        )
        donts.append(
            f"- **`--teaching=independent`** (teacher and student see different "
            f"augmented views): {diff} points below consistent views "
            f"({guide.link(consistent)})."
        )
    short = guide.row(
        "Function matching, converged",
        "beats KD on the un-augmented batches (teaching none; the paper",
    )
    if short:
        diff = guide.from_row(
            short,
            "function matching > KD, teaching none difference mean",
            "FM minus KD at 30 epochs",
            signed=True,
        )
        donts.append(
            f"- **Function matching on a short budget**: at 30 epochs it is {diff} "
            f"points against KD on un-augmented batches ({guide.link(short)}); it needs "
            f"its long schedule ({guide.link(patience)})."
        )
    curriculum = guide.row("Curriculum, converged", "Little effect")
    if curriculum:
        diff = guide.from_row(
            curriculum, "KD-CL-SR ≈ KD difference mean", "KD-CL-SR minus KD", signed=True
        )
        donts.append(
            f"- **Curriculum with selective reliance (`--method=kd_sr "
            f"--curriculum=teacher`)**: {diff} points against KD on the same data "
            f"({guide.link(curriculum)})."
        )
    partial = guide.row("Partial KD, converged", "KD-topk")
    if partial:
        diff = guide.from_row(
            partial, "KD > KD-pt+sim difference mean", "KD minus KD-pt+sim", signed=True
        )
        donts.append(
            f"- **Partial targets (KD-pt, KD-sim, KD-pt+sim, KD-topk) instead of KD**: "
            f"none beats the full distribution; KD is {diff} points above KD-pt+sim "
            f"({guide.link(partial)})."
        )
    calibration = summary.get("defaults", {}).get("calibration_mode")
    if calibration and calibration.get("test_scale_minus_replace"):
        test = calibration["test_scale_minus_replace"]
        donts.append(
            "- **`--calibration_mode=replace` with a student that gains from T = 4** (resnet8): "
            "it distils at T = T* and loses the temperature; on validation `scale` is ahead "
            f"in {calibration['scale_ahead']}/{len(calibration['cells'])} cells (by "
            f"{guide.number('calibration scale minus replace, validation', calibration['mean_scale_minus_replace'], 2, True)}"
            f" points), on test in {test['ahead']}/{len(test['values'])} (by "
            f"{guide.number('calibration scale minus replace, test', test['mean'], 2, True)}; "
            "the defaults section of [RESULTS.md](RESULTS.md))."
        )
    for student in ("resnet8", "cnn_small"):
        found = best_method(methods, student)
        if not found:
            continue
        for k, arm in found["complete"].items():
            minus = arm.get("minus_alone")
            if minus and minus["mean"] < 0 and minus.get("ahead", 1) == 0:
                donts.append(
                    f"- **{arm['label']} ({arm['setting']}) on {student}**: "
                    f"{guide.number(f'{student} {k} minus alone', 100 * minus['mean'], 2, True)} "
                    f"points against the student alone, behind on each of the "
                    f"{len(minus['values'])} seed(s) both have run "
                    f"([retests/methods](retests/methods/table.md), "
                    f"{guide.link(guide.row(f'Methods, converged teacher, {student}', arm['label'].split(' +')[0] + ' beats KD'))})."
                )
    lines += donts or ["Nothing measured yet."]
    lines.append("")
    with open(os.path.join(out, "GUIDE.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(out, "guide.json"), "w") as f:
        json.dump({"generated_by": "docs/make_guide.py", "numbers": guide.shown}, f, indent=1)
        f.write("\n")
    _ = t1
    print(f"wrote GUIDE.md and guide.json: {len(cells)} cells, {len(donts)} warnings")


if __name__ == "__main__":
    main()
