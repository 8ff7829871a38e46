"""Worst class imbalance of any window of the interleaved curriculum order, as README.md quotes.

    python docs/curriculum/windows.py

For a class sequence s of length N with class shares p_c, a window s[i:j] holds class c
D_c(j) - D_c(i) times more than (j - i) p_c, where D_c(m) = (count of c in s[:m]) - m p_c; the
worst window over all i < j is therefore max_c (max D_c - min D_c). Writes windows.json.
"""

import json
import os

import numpy as np

from tfkd.curriculum import stratified_classes

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {
    "equal, 500 per class (the subsets of this folder)": [500] * 10,
    "near-equal (500, 499, 501, 500, ...)": [500, 499, 501] + [500] * 7,
}


def worst_window(class_counts):
    sequence = stratified_classes(class_counts)
    positions = np.arange(len(sequence) + 1)
    worst = 0.0
    for c, count in enumerate(class_counts):
        deviation = np.concatenate([[0], np.cumsum(sequence == c)]) - positions * count / len(
            sequence
        )
        worst = max(worst, float(deviation.max() - deviation.min()))
    return round(worst, 4)


def main():
    result = {
        name: {"class_counts": counts, "worst_window_deviation": worst_window(counts)}
        for name, counts in CASES.items()
    }
    with open(os.path.join(HERE, "windows.json"), "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
