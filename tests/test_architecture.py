"""Rules about the code itself that the linters do not state."""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_visit

ROOT = Path(__file__).resolve().parent.parent
APPLICATION = [
    "app.py",
    "core",
    "accounts",
    "campaigns",
    "payments",
    "ledger",
    "rounds",
    "verifier",
]
MAX_COMPLEXITY = 15


def _sources():
    for top in APPLICATION:
        path = ROOT / top
        yield from [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


def test_no_application_function_is_too_complex_to_follow():
    too_complex = []
    for path in _sources():
        for block in cc_visit(path.read_text()):
            if block.complexity > MAX_COMPLEXITY:
                too_complex.append(f"{path.relative_to(ROOT)}:{block.lineno} {block.name}")
    assert not too_complex, too_complex


def test_the_complexity_check_sees_a_complex_function():
    branches = "\n".join(f"    if x == {n}:\n        return {n}" for n in range(MAX_COMPLEXITY))
    (block,) = cc_visit(f"def f(x):\n{branches}\n    return -1\n")
    assert block.complexity > MAX_COMPLEXITY
