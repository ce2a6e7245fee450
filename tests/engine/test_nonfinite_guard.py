import pytest

from vitlab.engine import NonFiniteError, NonFiniteGuard


def test_counts_and_resets(capsys):
    guard = NonFiniteGuard(max_consecutive=3)
    assert guard.check(0, True, True)
    assert not guard.check(1, False, True)
    assert "step 1" in capsys.readouterr().out
    assert not guard.check(2, True, False)
    assert guard.check(3, True, True) and guard.consecutive == 0 and guard.total_skipped == 2


def test_stops_after_limit():
    guard = NonFiniteGuard(max_consecutive=2)
    guard.check(5, False, True)
    with pytest.raises(NonFiniteError, match="step 6"):
        guard.check(6, False, False)
