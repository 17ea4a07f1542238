"""`clustering eval` end to end: the JSON contract, the assignments file, stream mode.

Uses the real model on a slice of ECB+ from ../shared (marked ``shared``), and a tiny
corpus written here with the hashing embedder for the checks that need no data set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clustering.config import Config
from clustering.corpora import LabelledDoc
from clustering.eval import evaluate

STORY_KEYS = {"b3_precision", "b3_recall", "b3_f1", "pair_f1", "ari", "ami", "n_clusters", "unassigned"}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "clustering", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


QUAKE = ["Aldoria earthquake of magnitude 6.8 topples homes in Korvel overnight",
         "Aldoria earthquake: rescuers in Korvel dig through homes toppled overnight",
         "Aldoria earthquake death toll climbs as Korvel homes lie toppled",
         "Aftershocks rattle Korvel a day after the Aldoria earthquake toppled homes",
         "Aldoria asks for help after the Korvel earthquake toppled homes"]
BANK = ["Norvania National Bank raises its rate to 4.75 percent",
        "Norvania borrowers face higher costs as the National Bank raises its rate",
        "The governor defends the decision as the Norvania National Bank raises its rate",
        "Markets in Norvania slip as the National Bank raises its rate again",
        "Norvania mortgage holders brace as the National Bank raises its rate"]
"""Two events told in shared words (the hashing embedder stands in for the model: it sees words, so
the texts of one event share theirs; names alone never bring articles together)."""


def _tiny_corpus() -> list[LabelledDoc]:
    docs = [LabelledDoc(text=t, label="quake", topic_label="disaster") for t in QUAKE]
    docs += [LabelledDoc(text=t, label="bank", topic_label="economy") for t in BANK]
    docs.append(LabelledDoc(text=QUAKE[0], label="quake", topic_label="disaster"))  # an exact copy
    return docs


def test_evaluate_scores_a_separable_corpus_and_finds_the_copy(tmp_path: Path) -> None:
    config = Config(model="hashing")
    result = evaluate(_tiny_corpus(), config=config, cache_dir=None, work_dir=tmp_path)
    assert result.story["b3_f1"] == pytest.approx(1.0)
    assert result.duplicates == {"links": 1, "exact": 1, "near": 0}
    assert result.assignments[10]["duplicate_of"] == 0
    assert result.assignments[10]["story"] == result.assignments[0]["story"] is not None
    assert result.topic is not None and set(result.topic) >= STORY_KEYS


def test_stream_mode_reports_churn_and_matches_batch_on_a_clear_corpus(tmp_path: Path) -> None:
    config = Config(model="hashing")
    batch = evaluate(_tiny_corpus(), config=config, cache_dir=None, work_dir=tmp_path)
    stream = evaluate(_tiny_corpus(), config=config, stream=True, chunks=2, cache_dir=None, work_dir=tmp_path)
    assert stream.runs == 2
    assert stream.id_churn == 0.0
    assert stream.headline_churn is not None and 0.0 <= stream.headline_churn <= 1.0
    assert "headline_churn" in stream.as_dict() and batch.headline_churn is None
    assert stream.story["b3_f1"] == pytest.approx(batch.story["b3_f1"], abs=0.02)


def test_documents_without_text_are_skipped_with_a_warning_naming_them(tmp_path: Path) -> None:
    rows = [{"id": f"d{i}", "text": t, "label": "quake" if i < 5 else "bank"} for i, t in enumerate(QUAKE + BANK)]
    rows.insert(3, {"id": "blank", "text": "   ", "label": "quake"})  # GoogleNews T and S hold one like it
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "hashing.yaml").write_text("settings:\n  model: hashing\n", encoding="utf-8")
    out = _cli("eval", str(corpus), "--text", "text", "--label", "label", "--id", "id", "--config", "hashing.yaml",
               "--json", "--no-cache", "--assignments", str(tmp_path / "a.jsonl"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "skipped document 3 (line 4, id 'blank'): it has no text" in out.stderr
    report = json.loads(out.stdout)
    assert report["skipped"] == [3] and report["documents"] == 10
    assert report["story"]["b3_f1"] == pytest.approx(1.0)
    assignments = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(assignments) == 11 and assignments[3] == {"index": 3, "story": None, "topic": None,
                                                          "duplicate_of": None, "skipped": True, "id": "blank"}
    assert assignments[4]["id"] == "d3" and assignments[4]["story"] is not None
    plain = _cli("eval", str(corpus), "--text", "text", "--label", "label", "--config", "hashing.yaml",
                 "--no-cache", cwd=tmp_path)
    assert plain.returncode == 0 and "10 documents (1 without text skipped), batch" in plain.stdout


def test_a_corpus_without_any_text_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no document has any text"):
        evaluate([LabelledDoc(text=" ", label="a")], config=Config(model="hashing"), cache_dir=None,
                 work_dir=tmp_path)


@pytest.mark.shared
def test_cli_eval_json_contract_on_ecb_slice(shared_dir: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in
            (shared_dir / "datasets/ecbplus-cybulska2014/ecbplus_docs.jsonl").read_text().splitlines()]
    corpus = tmp_path / "ecb.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows if r["topic"] in (1, 3, 5)), encoding="utf-8")
    count = sum(1 for _ in corpus.open())
    out = _cli("eval", str(corpus), "--text", "text", "--label", "subtopic", "--topic-label", "topic",
               "--stream", "--json", "--assignments", str(tmp_path / "a.jsonl"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert STORY_KEYS | {"id_churn"} <= set(report["story"])
    assert STORY_KEYS <= set(report["topic"])
    assert {"links", "exact", "near"} <= set(report["duplicates"])
    assert report["story"]["b3_f1"] > 0.7          # three topics, six events: far from random
    assignments = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [a["index"] for a in assignments] == list(range(count))
    assert all(set(a) == {"index", "story", "topic", "duplicate_of"} for a in assignments)


@pytest.mark.shared
def test_seed_articles_are_neither_duplicates_nor_one_story(shared_dir: Path, tmp_path: Path) -> None:
    import clustering

    texts = [(shared_dir / "seeds" / name).read_text(encoding="utf-8") for name in
             ("article-2024.txt", "article-2017.txt")]
    with clustering.open_pipeline(tmp_path / "seeds.db") as pipeline:
        ids = pipeline.add_articles([{"title": t.split("\n", 1)[0], "text": t, "source": f"seed{i}"}
                                     for i, t in enumerate(texts)])
        pipeline.process()
        assert pipeline.duplicates_of(ids[0]) == [] and pipeline.duplicates_of(ids[1]) == []
        first, second = pipeline.article(ids[0]), pipeline.article(ids[1])
        assert first.duplicate_of is None and second.duplicate_of is None
        assert first.story_id is None or first.story_id != second.story_id
