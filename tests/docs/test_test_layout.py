"""The test tree keeps its own rules: tests live in folders by area, support code is
imported one way (``tests.support``), and no test module imports another one."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_no_test_module_sits_at_the_top_of_the_tree() -> None:
    assert sorted(p.name for p in TESTS.glob("test_*.py")) == []


def test_no_test_imports_another_test_module() -> None:
    offenders = [
        f"{path.relative_to(TESTS)} imports {name}"
        for path in TESTS.rglob("*.py")
        for name in _imports(path)
        if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")
    ]
    assert offenders == []


def test_support_code_is_imported_one_way() -> None:
    support = {p.stem for p in (TESTS / "support").glob("*.py") if p.stem != "__init__"}
    offenders = [
        f"{path.relative_to(TESTS)} imports {name}"
        for path in TESTS.rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in support  # bare `from scripted_engines import ...`
    ]
    assert offenders == []
