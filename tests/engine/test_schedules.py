import math

import pytest

from vitlab.config import L
from vitlab.engine import Schedule, as_schedule


def test_warmup_then_cosine():
    s = Schedule(base=1.0, final=0.0, warmup_steps=10, warmup_start=0.1, total_steps=110)
    assert s(0) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.55)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.5)
    assert s(110) == pytest.approx(0.0) and s(500) == pytest.approx(0.0)
    values = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_linear_and_constant():
    lin = Schedule(base=0.996, final=1.0, kind="linear", total_steps=100)  # EMA momentum style
    assert lin(50) == pytest.approx(0.998)
    const = Schedule(base=0.04, warmup_steps=4, warmup_start=0.02, kind="constant")  # teacher temperature
    assert const(2) == pytest.approx(0.03) and const(1000) == pytest.approx(0.04)


def test_as_schedule_fills_total_steps():
    s = as_schedule(L(Schedule)(base=2.0, final=0.0), total_steps=4)
    assert s.total_steps == 4 and s(4) == 0.0 and math.isclose(s(2), 1.0)
    assert as_schedule(0.05, total_steps=10)(7) == 0.05


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        Schedule(base=1.0, kind="step")
    with pytest.raises(ValueError, match="warmup_steps"):
        Schedule(base=1.0, warmup_steps=10, total_steps=5)


def test_freeze_holds_zero_then_warms_up():
    """DINOv3's freeze_iters: exactly 0 for the frozen steps, then the warmup and decay start from there."""
    s = Schedule(base=1.0, final=0.0, warmup_steps=10, freeze_steps=5, total_steps=100)
    assert [s(i) for i in (0, 4)] == [0.0, 0.0]
    assert s(5) == 0.0 and s(10) == pytest.approx(0.5) and s(15) == 1.0
    assert s(100) == pytest.approx(0.0) and s(57) == pytest.approx(0.5, abs=0.02)  # the cosine spans steps 15-100
    frac = Schedule(base=2.0, freeze_fraction=0.3, kind="constant", total_steps=200)
    assert frac.freeze_steps == 60 and frac(59) == 0.0 and frac(60) == 2.0
    with pytest.raises(ValueError, match="freeze_steps=3 and freeze_fraction=0.3"):
        Schedule(base=1.0, freeze_steps=3, freeze_fraction=0.3, total_steps=100)
    with pytest.raises(ValueError, match="freeze_fraction=0.3 needs total_steps"):
        Schedule(base=1.0, freeze_fraction=0.3)
    with pytest.raises(ValueError, match="shorter than freeze_steps=60 \\+ warmup_steps=50"):
        Schedule(base=1.0, freeze_steps=60, warmup_steps=50, total_steps=100)
