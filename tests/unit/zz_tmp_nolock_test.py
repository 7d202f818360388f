import contextlib, sys
sys.path.insert(0, "/work/main/tests/unit")
import thinkflow.registry.gate as g
import pytest

@pytest.fixture(autouse=True)
def nolock(monkeypatch):
    @contextlib.contextmanager
    def fake(*a, **k):
        yield "x"
    orig_decide = g.decide
    def slow_decide(*a, **k):
        import time; time.sleep(0.05)
        return orig_decide(*a, **k)
    monkeypatch.setattr(g, "registry_lock", fake)
    monkeypatch.setattr(g, "decide", slow_decide)

from test_registry_gate import db_template, registry, test_racing_gates_leave_the_best_champion  # noqa
