"""No test module imports another (issue 17). What tests share lives in helper modules named by
what they hold (helpers, receiving, disks, midi_files, protocol_pair, ...) and their fixtures in
conftest.py: importing a test module runs its module-level code and collects its tests twice
under another name, and ties one test file's edits to another's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def imports_of_test_modules(source: str) -> list[str]:
    """The ``test_*`` modules that ``source`` imports, in any form of the import statement."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names += [node.module] if node.module else [alias.name for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            names.append(str(node.args[0].value))
    return [name for name in names if name.rsplit(".", 1)[-1].startswith("test_")
            or name.split(".", 1)[0].startswith("test_")]


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda path: path.name)
def test_no_module_under_tests_imports_a_test_module(path: Path) -> None:
    imported = imports_of_test_modules(path.read_text())
    assert imported == [], f"{path.name} imports {imported}: move what they share into a helper module or conftest.py"


def test_every_form_of_importing_a_test_module_is_seen() -> None:
    source = """
import test_receiver
import test_faults as faults
from test_durability import tmpfs
from tests.test_chain import take
import importlib
importlib.import_module("test_render")

def later():
    from test_cli_render import write_midi
"""
    assert sorted(imports_of_test_modules(source)) == ["test_cli_render", "test_durability", "test_faults",
                                                       "test_receiver", "test_render", "tests.test_chain"]
    assert imports_of_test_modules("import helpers\nfrom receiving import RawClient\nimport pytest\n") == []
