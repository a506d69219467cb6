"""scripts/mutants.py stays runnable on the code as it is: a mutant whose code moved (its
edit no longer applies) or whose tests were renamed is found here, in seconds, rather
than as "stale" at the end of a half-hour run."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def mutants():
    spec = importlib.util.spec_from_file_location("mutants", REPO / "scripts" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutants"] = module  # its dataclass looks its module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["mutants"]
    return module.MUTANTS


def test_every_mutant_applies_once_and_names_tests_that_exist():
    found = mutants()
    names = [m.name for m in found]
    assert len(names) == len(set(names)), "two mutants share a name"
    problems = []
    for m in found:
        count = (REPO / m.path).read_text().count(m.old)
        if count != 1:
            problems.append(f"{m.name}: its code occurs {count} times in {m.path}")
        if m.old == m.new:
            problems.append(f"{m.name}: the edit changes nothing")
        for test in m.tests:
            file, _, node = test.partition("::")
            if not (REPO / file).exists():
                problems.append(f"{m.name}: no {file}")
            elif node and not re.search(
                rf"^def {re.escape(node.split('[')[0])}\(", (REPO / file).read_text(), re.M
            ):
                problems.append(f"{m.name}: {file} has no test {node}")
    assert not problems, "\n".join(problems)
