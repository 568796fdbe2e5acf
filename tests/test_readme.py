"""Runs every ```python block of README.md as written, each in a fresh namespace and an empty folder.

Marker convention: a block that cannot run offline or in test time is
preceded (on the line just before its opening fence) by

    <!-- readme-test: skip <reason> -->

and is reported as skipped with that reason, e.g. "needs the network". Every
other block must run as is: it imports what it uses and creates the files it
reads, so a reader can paste it into a fresh Python session.
"""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"(?:<!-- readme-test: skip (?P<reason>.+?) -->\n)?```python\n(?P<code>.*?)\n```", re.S)


def _blocks() -> list:
    text = README.read_text()
    params = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code"))
        reason = match.group("reason")
        marks = [pytest.mark.skip(reason=f"README line {line}: {reason}")] if reason else []
        params.append(pytest.param(match.group("code"), line, id=f"line{line}", marks=marks))
    return params


BLOCKS = _blocks()


def test_every_python_block_is_found_and_skips_say_why():
    text = README.read_text()
    assert len(BLOCKS) == text.count("```python") >= 3
    assert all(m.group(1).strip() for m in re.finditer(r"<!-- readme-test: skip(.*?)-->", text))


@pytest.mark.parametrize("code, line", BLOCKS)
def test_readme_block_runs(code, line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md (block at line {line})", "exec"), {"__name__": "__readme__"})
