"""Probe targets equal Python arithmetic; unknown targets and groups are refused."""

import pytest

from arithinterp.probes.targets import make_probe_dataset, make_targets, target_names
from arithinterp.tasks import TaskSpec


def _digits(n: int, width: int) -> list[int]:
    return [(n // 10**k) % 10 for k in range(width)]


def test_multiplication_targets_match_python_arithmetic():
    spec = TaskSpec(op="mul", digits_a=3, digits_b=2)
    data = make_probe_dataset(spec, 40, seed=1)
    targets = {t.name: t for t in make_targets(data)}
    w = spec.answer_width
    for row, (a, b) in enumerate(zip(data.a.tolist(), data.b.tolist(), strict=True)):
        ad, bd = _digits(a, 3), _digits(b, 2)
        c_prev = 0
        for k in range(w):
            c = sum(ad[i] * bd[k - i] for i in range(3) if 0 <= k - i < 2) + c_prev // 10
            assert _digits(a * b, w)[k] == c % 10  # the running sum's last digit is c_k
            for name, want in ((f"running_sum_{k}", c), (f"running_sum_{k}_mod10", c % 10),
                               (f"running_sum_{k}_div10", c // 10),
                               (f"carry{k}", c_prev // 10), (f"c{k}", c % 10)):
                if name in targets:  # constant targets are left out of groups
                    assert targets[name].values[row] == want, (name, a, b)
            c_prev = c
        for i in range(3):
            assert targets[f"a{i}"].values[row] == ad[i]
            for j in range(2):
                assert targets[f"pp_{i}_{j}"].values[row] == ad[i] * bd[j]
    assert targets["pp_0_1"].kind == "regression" and targets["carry1"].kind == "classification"
    assert "running_sum_4_div10" not in targets  # c_4 < 10 always: constant, skipped
    # a digit is readable from its own token on; sums need every digit below them
    pos = spec.operand_positions()
    assert targets["a2"].first_pos == pos["a"][2] and targets["b1"].first_pos == pos["b"][1]
    assert targets["pp_2_0"].first_pos == max(pos["a"][2], pos["b"][0])
    assert targets["running_sum_1"].first_pos == max(pos["a"][0], pos["b"][0])


@pytest.mark.parametrize("op", ["add", "sub"])
def test_carries_and_borrows_match_python_arithmetic(op):
    spec = TaskSpec(op=op, digits_a=3, digits_b=3)
    data = make_probe_dataset(spec, 48, seed=2)
    word = "borrow" if op == "sub" else "carry"
    targets = {t.name: t for t in make_targets(data, ["carries", "running_sums", "c0"])}
    for row, (a, b) in enumerate(zip(data.a.tolist(), data.b.tolist(), strict=True)):
        ad, bd = _digits(a, 4), _digits(b, 4)
        flow, flows = 0, []
        for k in range(spec.answer_width):
            flows.append(flow)
            col = ad[k] + bd[k] + flow if op == "add" else ad[k] - bd[k] - flow
            assert targets[f"column_sum_{k}"].values[row] == col
            flow = col // 10 if op == "add" else int(col < 0)
            if k:
                assert targets[f"{word}{k}"].values[row] == flows[k]
        assert targets["n_borrows" if op == "sub" else "n_carries"].values[row] == \
            sum(1 for f in flows if f)
        assert targets["c0"].values[row] == (a + b if op == "add" else a - b) % 10
    assert not any(n.startswith("running_sum") or n.startswith("pp_") for n in targets)


def test_unknown_targets_and_groups_are_refused(tiny_task):
    data = make_probe_dataset(tiny_task, 16)
    with pytest.raises(ValueError, match="unknown targets"):
        make_targets(data, ["carry9"])
    with pytest.raises(ValueError, match="unknown target groups"):
        target_names(tiny_task, ["digits"])
    assert target_names(tiny_task, ["operands"]) == ["a0", "a1", "b0", "b1"]
