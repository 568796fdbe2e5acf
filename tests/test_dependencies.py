"""Dependencies point one way: the command-line packages use the library, never the reverse.

`export`, `configs` and `train` are applications of `efficientnet_tf`; the
library (predict included) must import without them, so a pip install
without them still works and a change to a command cannot break the library.
"""

import ast
import pathlib

import pytest

LIBRARY = pathlib.Path(__file__).resolve().parent.parent / "efficientnet_tf"
APPLICATIONS = {"export", "configs", "train"}


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every absolute module an `import` or `from ... import` in the file names, at any depth (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module)
    return found


def test_the_finder_sees_lazy_and_from_imports(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("import os\ndef f():\n    from export.litert import convert\n    import configs as c\nfrom . import x\n")
    assert imported_modules(source) == {"os", "export.litert", "configs"}


@pytest.mark.parametrize("path", sorted(LIBRARY.rglob("*.py")), ids=lambda p: str(p.relative_to(LIBRARY.parent)))
def test_the_library_imports_no_application(path):
    applications = {name for name in imported_modules(path) if name.split(".")[0] in APPLICATIONS}
    assert not applications, f"{path.relative_to(LIBRARY.parent)} imports {sorted(applications)}; move what it needs into efficientnet_tf."
