"""python -m bpcore.demo: a real training run on scikit-learn's 8x8 digits."""
import pytest

pytest.importorskip("sklearn")

from bpcore import demo  # noqa: E402


def test_demo_learns_the_digits(capsys):
    accuracy = demo.main(["--epochs", "5"])
    out = capsys.readouterr().out
    assert "235,146" not in out and "50,826" in out  # the 64-256-128-10 net, tabulated
    assert "held-out accuracy" in out
    assert accuracy >= 0.9
