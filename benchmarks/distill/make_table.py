"""The distillation table of README "Distilling a frozen teacher into a hybrid", from the runs and
evaluations that ``benchmarks/distill/README.md`` lists (JSON copies beside this file).

    .venv/bin/python benchmarks/distill/make_table.py   # prints markdown
"""

import json
import re
import statistics
from pathlib import Path

HERE = Path(__file__).parent
STUDENTS = {"hr": '`"HR" * 2` hybrid', "attn": '`"R" * 4` attention, FFN 4.82'}


def score(name):
    path = HERE / "eval" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def cell(names):
    found = [score(n) for n in names]
    values = [f["knn_top1"] for f in found if f]
    if not values:
        return "-", "-"
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{spread}", " / ".join(f"{v:.2f}" for v in values)


def wall(name):
    log = HERE / "logs" / f"{name}.log"
    m = re.search(r"([\d.]+) s wall", log.read_text()) if log.exists() else None
    return f"{float(m.group(1)):.0f}" if m else "-"


def main():
    rows = ["| network | training | k-NN top-1 (%) | seeds 0 / 1 / 2 | wall s (seed 0) |", "|---|---|---|---|---|"]
    rows.append("| teacher: `dinov3_fmnist` (`\"HR\" * 2`, patch 7) | DINOv3, 2800 steps | %s | %s | - |" % cell(["teacher"]))
    for key, label in STUDENTS.items():
        inits = [f"scratch_{key}_init_s{s}" for s in range(3)]
        which = "" if all(score(n) for n in inits) else " (seed 0)"
        rows.append(f"| {label} | random init{which} | %s | %s | - |" % cell(inits))
        rows.append(f"| {label} | DINOv3 from scratch, 280 steps | %s | %s | {wall(f'scratch_{key}_s0')} |"
                    % cell([f"scratch_{key}_s{s}" for s in range(3)]))
        rows.append(f"| {label} | distilled from the teacher, 280 steps | %s | %s | {wall(f'distill_{key}_s0')} |"
                    % cell([f"distill_{key}_s{s}" for s in range(3)]))
    rows.append("| raw pixels | - | %s | %s | - |" % cell(["pixels"]))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
