"""Every ```python block of README.md runs as written, pasted into a fresh directory.

Each block runs alone in its own interpreter (a reader pastes one block, not the file), with this checkout's
cnnkit importable and nothing else prepared: no files, no names from earlier blocks.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", flags=re.S | re.M)


def python_blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(pytest.param(match.group(1), id=f"README.md:{line}"))
    return blocks


def test_the_readme_has_python_blocks():
    assert python_blocks(), "README.md has no ```python block; if that is intended, remove this test"


@pytest.mark.parametrize("code", python_blocks())
def test_readme_block_runs_as_written(code, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, f"the block fails when pasted into a fresh directory:\n{result.stderr[-3000:]}"
