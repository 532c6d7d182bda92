"""Linear probes for running sums (and partial products) of multiplication, into a run.

    python probes/running_sum_probes.py MUL_MODEL_OR_RUN --n 2000

Multiplication: partial products ``pp_i_j = a_i * b_j`` and Bai et al.'s running sums
``running_sum_k`` = c_k = sum_{i+j=k} a_i b_j + c_{k-1} // 10 (ridge, R²), with
``running_sum_k_mod10`` (= answer digit k) and ``running_sum_k_div10`` (the carry out)
as classifiers. Addition and subtraction have no running sums: for them this script probes
the column sums ``column_sum_k`` = a_k ± b_k ± carry_in[k], their analogue (the answer digit
is its value mod 10, the carry out its tens), and says so. Adds stage
``probes/running_sums`` (scores, summary, ``predictions.parquet``: test-set predictions vs
truth of the regression probes, weights, ``stage.json``); options as for digit_probes.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers beside us
from digit_probes import run_probes  # noqa: E402


def note(task) -> str | None:
    """What is probed instead when the task has no running sums."""
    if task.op == "mul":
        return None
    return (f"note: task {task.name} has no running sums (multiplication only); probing its "
            "column sums a_k + b_k + carry_k instead" if task.op == "add" else
            f"note: task {task.name} has no running sums (multiplication only); probing its "
            "column differences a_k - b_k - borrow_k instead")


def main(argv: list[str] | None = None) -> int:
    """Running-sum (or column-sum) probes."""
    return run_probes(argv, name="running_sums", groups=["partial_products", "running_sums"],
                      description=__doc__, note=note)


if __name__ == "__main__":
    sys.exit(main())
