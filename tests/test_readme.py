"""README.md's examples run as written (with the real model: the Python block uses the defaults)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.slow


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)


def test_the_python_example_forms_a_story_with_its_duplicate(tmp_path: Path) -> None:
    """Issue item 9: the example crashed (NameError: name 'story' is not defined), as no story formed."""
    (block,) = python_blocks()
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1 new stories, 1 duplicates"
    assert re.fullmatch(r"s\d+: .+ \(4 articles, 1 duplicates\)", lines[1])
    assert sum(1 for line in lines if re.match(r"  \w+: .+ \(similarity 0\.\d+\)$", line)) == 4
    assert re.fullmatch(r"  #\d+ copies #\d+ \(text, score 1\.0\)", lines[-1])
    again = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert again.returncode == 0 and again.stdout.splitlines()[1:] == lines[1:]  # adding again changes nothing
