"""Heavy modules load only when there is work for them (each check in a fresh interpreter).

``import clustering`` and ``clustering --help`` must not import torch, faiss, hdbscan,
sentence-transformers or scikit-learn, and a cron run that finds nothing new must not load
the model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HEAVY = {"torch", "faiss", "hdbscan", "sentence_transformers", "sklearn", "transformers", "psycopg", "ray"}
"""Never imported by `import clustering` or `--help`; psycopg and ray (the postgres and ray extras) by no
run on an SQLite store either."""
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "clustering" / "sample"

RUN_CLI = """
import contextlib, io, json, sys
from clustering.cli import main
output = io.StringIO()
with contextlib.redirect_stdout(output):
    try:
        status = main(sys.argv[1:])
    except SystemExit as exc:
        status = exc.code
print(json.dumps({"status": status, "output": output.getvalue(), "modules": sorted(sys.modules)}))
"""
"""Runs ``clustering ARGS`` in this interpreter, then reports the exit status, the output
and every module loaded along the way."""


def python(code: str, *args: str, cwd: Path | None = None) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return report


def cli(*args: str, cwd: Path) -> dict[str, Any]:
    return python(RUN_CLI, *args, cwd=cwd)


def heavy(modules: list[str]) -> set[str]:
    return {name.split(".")[0] for name in modules} & HEAVY


def test_import_clustering_is_light() -> None:
    report = python("import json, sys, clustering\n"
                    "assert clustering.open_pipeline and clustering.Pipeline\n"
                    "print(json.dumps({'modules': sorted(sys.modules)}))")
    assert heavy(report["modules"]) == set()
    assert "clustering.core" in report["modules"]  # the check sees the package's own modules


def test_help_is_light(tmp_path: Path) -> None:
    report = cli("--help", cwd=tmp_path)
    assert report["status"] == 0 and "stories" in report["output"]
    assert heavy(report["modules"]) == set()
    for command in ("run", "stories", "story", "feeds"):
        report = cli(command, "--help", cwd=tmp_path)
        assert report["status"] == 0
        assert heavy(report["modules"]) == set(), command


def write_sample(folder: Path, model: str | None) -> Path:
    """A copy of the bundled sample feeds with a feeds.yaml naming ``model`` (None: the default)."""
    shutil.copytree(SAMPLE_DIR / "feeds", folder / "feeds")
    lines = ["settings:", "  database: sample.db"] + ([f"  model: {model}"] if model else []) + ["feeds:"]
    for path in sorted((folder / "feeds").glob("*.xml")):
        lines += [f"  - name: {path.stem}", f"    url: feeds/{path.name}"]
    (folder / "feeds.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "feeds.yaml"


def run_report(report: dict[str, Any]) -> dict[str, Any]:
    assert report["status"] == 0
    value: dict[str, Any] = json.loads(report["output"])
    return value


def test_run_with_nothing_new_loads_no_clustering_machinery(tmp_path: Path) -> None:
    write_sample(tmp_path, model="hashing")
    first = cli("run", "--json", cwd=tmp_path)
    assert run_report(first)["new_articles"] > 0 and run_report(first)["stories_total"] > 0
    # the check sees real work (hdbscan: its compiled tree modules only, never scikit-learn: cluster.py)
    assert {"faiss", "hdbscan"} <= heavy(first["modules"])

    not_due = cli("run", "--json", cwd=tmp_path)
    assert run_report(not_due)["feeds_skipped"] == 5
    assert heavy(not_due["modules"]) == set()

    unchanged = cli("run", "--force", "--json", cwd=tmp_path)  # fetched, but nothing changed
    assert run_report(unchanged)["feeds_not_modified"] == 5
    assert heavy(unchanged["modules"]) == set()

    later = time.time() + 60
    for path in (tmp_path / "feeds").glob("*.xml"):
        os.utime(path, (later, later))
    reread = cli("run", "--force", "--json", cwd=tmp_path)  # read and parsed again: no new article
    assert (run_report(reread)["feeds_ok"], run_report(reread)["new_articles"]) == (5, 0)
    assert heavy(reread["modules"]) == set()


def test_reading_commands_load_no_model(tmp_path: Path) -> None:
    write_sample(tmp_path, model="hashing")
    run_report(cli("run", "--json", cwd=tmp_path))
    stories = cli("stories", "--json", cwd=tmp_path)
    assert stories["status"] == 0
    story_id = json.loads(stories["output"])[0]["id"]
    for report in (stories, cli("story", story_id, cwd=tmp_path), cli("feeds", cwd=tmp_path),
                   cli("stories", "--html", "page.html", cwd=tmp_path)):
        assert report["status"] == 0
        assert heavy(report["modules"]) == set()


@pytest.mark.slow
def test_cron_run_with_nothing_new_does_not_load_the_real_model(tmp_path: Path) -> None:
    write_sample(tmp_path, model=None)  # the default, real model
    first = cli("run", "--json", cwd=tmp_path)
    assert run_report(first)["stories_total"] > 0
    assert {"torch", "sentence_transformers"} <= heavy(first["modules"])  # the check can see the model load

    second = cli("run", "--json", cwd=tmp_path)
    assert run_report(second)["new_articles"] == 0
    assert heavy(second["modules"]) == set()
