"""Metrics against hand-computed values, and the labelled-corpus loaders.

Each expected value is worked out in the comment above it, so a failure can be
checked by hand.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

import numpy as np

from clustering.corpora import LabelledDoc, load_labelled, split_headline
from clustering.errors import ConfigError
from clustering.metrics import (
    ami,
    ari,
    bcubed,
    cluster_scores,
    grab_bags,
    headline_churn,
    id_churn,
    orphan_rate,
    pair_prf,
    pairwise_prf,
)

GOLD = ["a", "a", "b", "b"]
PRED = [1, 1, 1, 2]


def test_bcubed_hand_computed() -> None:
    # Pred clusters C1={0,1,2}, C2={3}; gold A={0,1}, B={2,3}.
    # precision: doc0 |C1∩A|/|C1| = 2/3, doc1 2/3, doc2 |C1∩B|/|C1| = 1/3, doc3 1/1
    #   -> (2/3 + 2/3 + 1/3 + 1) / 4 = (8/3) / 4 = 2/3
    # recall:    doc0 |C1∩A|/|A| = 2/2, doc1 1, doc2 |C1∩B|/|B| = 1/2, doc3 1/2
    #   -> (1 + 1 + 1/2 + 1/2) / 4 = 3/4
    # F1 = 2 * (2/3)(3/4) / (2/3 + 3/4) = 1 / (17/12) = 12/17
    p, r, f = bcubed(GOLD, PRED)
    assert p == pytest.approx(2 / 3)
    assert r == pytest.approx(3 / 4)
    assert f == pytest.approx(12 / 17)


def test_pairwise_hand_computed() -> None:
    # predicted pairs: C(3,2) + C(1,2) = 3 -> (0,1) (0,2) (1,2)
    # gold pairs:      C(2,2) + C(2,2) = 2 -> (0,1) (2,3)
    # true pairs: (0,1) = 1 -> P = 1/3, R = 1/2, F1 = 2(1/6)/(5/6) = 2/5
    p, r, f = pairwise_prf(GOLD, PRED)
    assert (p, r) == (pytest.approx(1 / 3), pytest.approx(1 / 2))
    assert f == pytest.approx(2 / 5)


def test_ari_hand_computed_is_zero() -> None:
    # cells (A,1)=2 (B,1)=1 (B,2)=1 -> Σ C(n_ij,2) = 1
    # gold Σ C(a,2) = 1 + 1 = 2; pred Σ C(b,2) = 3 + 0 = 3; C(4,2) = 6
    # expected = 2*3/6 = 1; max = (2+3)/2 = 2.5; ARI = (1 - 1) / (2.5 - 1) = 0
    assert ari(GOLD, PRED) == pytest.approx(0.0)


def test_perfect_clustering_with_renamed_labels() -> None:
    gold = ["a", "a", "b", "c", "c", "c"]
    pred = [3, 3, 1, 2, 2, 2]
    scores = cluster_scores(gold, pred)
    for key in ("b3_precision", "b3_recall", "b3_f1", "pair_precision",
                "pair_recall", "pair_f1", "ari", "ami"):
        assert scores[key] == pytest.approx(1.0), key
    assert scores["n_clusters"] == 3
    assert scores["unassigned"] == 0.0


def test_all_singletons_have_full_precision() -> None:
    gold = ["a", "a", "b", "c"]
    pred = [0, 1, 2, 3]
    # B3 precision: every predicted cluster is pure -> 1
    # B3 recall: docs of A get 1/2 each, b and c get 1 -> (1/2+1/2+1+1)/4 = 3/4
    p, r, _ = bcubed(gold, pred)
    assert (p, r) == (1.0, pytest.approx(3 / 4))
    # no predicted pairs: precision is defined as 1.0; 1 gold pair, none found -> R = 0
    assert pairwise_prf(gold, pred) == (1.0, 0.0, 0.0)


def test_all_in_one_cluster_has_full_recall() -> None:
    gold = ["a", "a", "b", "c"]
    pred = ["x"] * 4
    # B3 recall: every gold cluster is inside the one predicted cluster -> 1
    # B3 precision: docs of A 2/4 each, b 1/4, c 1/4 -> (1/2+1/2+1/4+1/4)/4 = 3/8
    p, r, _ = bcubed(gold, pred)
    assert (p, r) == (pytest.approx(3 / 8), 1.0)
    # pairs: predicted C(4,2) = 6, gold 1, true 1 -> P = 1/6, R = 1
    p, r, _ = pairwise_prf(gold, pred)
    assert (p, r) == (pytest.approx(1 / 6), 1.0)


def test_none_is_a_singleton_not_a_cluster() -> None:
    # Two unassigned docs are not put together: both are singletons, as in gold.
    assert bcubed(["a", "b"], [None, None]) == (1.0, 1.0, 1.0)
    assert pairwise_prf(["a", "b"], [None, None]) == (1.0, 1.0, 1.0)
    # gold one cluster of 3; pred {0,2} and a singleton {1}
    # recall: doc0 2/3, doc1 1/3, doc2 2/3 -> (5/3)/3 = 5/9; precision 1
    p, r, _ = bcubed(["a", "a", "a"], [7, None, 7])
    assert (p, r) == (1.0, pytest.approx(5 / 9))
    # A None must not collide with a real label's code (first position is None).
    assert bcubed(["a", "b"], [None, "x"]) == (1.0, 1.0, 1.0)
    assert ari(["a", "b", "c"], [None, None, None]) == pytest.approx(1.0)


def test_none_in_gold_is_a_singleton() -> None:
    # gold {0,1}, {2}, {3}; pred all in one -> pairs: predicted 6, gold 1, true 1
    p, r, _ = pairwise_prf(["a", "a", None, None], [1, 1, 1, 1])
    assert (p, r) == (pytest.approx(1 / 6), 1.0)


def test_cluster_scores_counts_clusters_and_unassigned() -> None:
    scores = cluster_scores(["a", "a", "b", "b"], [1, 1, None, 2])
    # predicted labels 1 and 2 (2 is held by one doc, still a cluster); one None of 4
    assert scores["n_clusters"] == 2
    assert scores["unassigned"] == pytest.approx(0.25)
    assert set(scores) == {"b3_precision", "b3_recall", "b3_f1", "pair_precision",
                           "pair_recall", "pair_f1", "ari", "ami", "n_clusters",
                           "unassigned"}


def test_random_labellings_score_near_zero_on_adjusted_metrics() -> None:
    rng = random.Random(7)
    gold = [rng.randrange(50) for _ in range(5000)]
    pred = [rng.randrange(50) for _ in range(5000)]
    assert abs(ari(gold, pred)) < 0.01
    assert abs(ami(gold, pred)) < 0.01


def test_bcubed_scales_linearly() -> None:
    # 200k docs: an O(n^2) implementation would not finish in test time.
    gold = [i // 10 for i in range(200_000)]
    pred = [i // 20 for i in range(200_000)]
    # each pred cluster holds two whole gold clusters: P = 10/20 = 1/2, R = 1
    p, r, _ = bcubed(gold, pred)
    assert (p, r) == (pytest.approx(0.5), pytest.approx(1.0))
    # pairs: pred C(20,2)=190 per cluster, true 2*C(10,2)=90 -> P = 90/190 = 9/19
    assert pairwise_prf(gold, pred)[0] == pytest.approx(9 / 19)


def test_length_mismatch_and_empty_raise() -> None:
    with pytest.raises(ValueError, match="pred has 2"):
        bcubed(["a"], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        pairwise_prf([], [])


def test_pair_prf() -> None:
    gold = {frozenset({0, 1}), frozenset({2, 3}), frozenset({4, 5})}
    pred = {frozenset({1, 0}), frozenset({2, 3}), frozenset({2, 4}), frozenset({6, 7})}
    # true pairs {0,1} {2,3} = 2 -> P = 2/4 = 1/2, R = 2/3, F1 = 2(1/3)/(7/6) = 4/7
    p, r, f = pair_prf(gold, pred)
    assert (p, r) == (0.5, pytest.approx(2 / 3))
    assert f == pytest.approx(4 / 7)
    # nothing predicted: precision 1 by convention, recall 0, F1 0
    assert pair_prf(gold, set()) == (1.0, 0.0, 0.0)
    assert pair_prf(set(), set()) == (1.0, 1.0, 1.0)


def test_id_churn_counts_changed_and_revoked_ids() -> None:
    history = [
        [1, None, None],
        [1, 2, None],   # doc1 first gets id 2
        [1, 3, 5],      # doc1 moves to 3 -> churned; doc2 first gets 5
        [1, 3, 5],
    ]
    # assigned docs: 0, 1, 2; churned: doc1 -> 1/3
    assert id_churn(history) == pytest.approx(1 / 3)
    # an id taken away (back to None) is churn, even if it comes back later
    assert id_churn([[7], [None], [7]]) == 1.0
    # rows grow as documents arrive; missing positions are "not seen yet"
    assert id_churn([[1], [1, 2], [1, 2, 2]]) == 0.0
    # no document ever assigned, or no runs: 0 by definition
    assert id_churn([[None, None], [None, None]]) == 0.0
    assert id_churn([]) == 0.0


# ---- clustering.corpora -------------------------------------------------------


def test_load_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    rows = [
        {"id": 1, "body": "Quake hits city", "event": "e1", "topic": 4,
         "at": "2024-05-01T14:00:00+02:00", "feed": "ap"},
        {"id": 2, "body": "Second", "event": "e2", "topic": 4, "at": None, "feed": None},
        {"id": 3, "body": "Third", "event": "e2", "topic": 4, "at": "2024-05-01T12:00:00Z",
         "feed": "x"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    docs = load_labelled(path, text_field="body", label_field="event", topic_field="topic",
                         time_field="at", source_field="feed", id_field="id")
    assert docs[0] == LabelledDoc(
        text="Quake hits city", label="e1", topic_label="4", source="ap", doc_id="1",
        time=datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc))
    assert docs[1].time is None and docs[1].source is None
    assert docs[2].time == docs[0].time  # "Z" is UTC


def test_load_tsv_with_header_and_csv_with_quotes(tmp_path: Path) -> None:
    tsv = tmp_path / "docs.tsv"
    tsv.write_text('title\ttext\tlabel\nA "quoted\theadline body\tx\nB\tbody 2\ty\n',
                   encoding="utf-8-sig")
    docs = load_labelled(tsv, text_field="text", label_field="label", title_field="title")
    assert [(d.title, d.text, d.label) for d in docs] == [
        ('A "quoted', "headline body", "x"), ("B", "body 2", "y")]
    csv_path = tmp_path / "docs.csv"
    csv_path.write_text('text,label\n"two\nlines, one field",z\n', encoding="utf-8")
    docs = load_labelled(csv_path, text_field="text", label_field="label")
    assert docs == [LabelledDoc(text="two\nlines, one field", label="z")]


def test_load_headerless_tsv_by_column_index(tmp_path: Path) -> None:
    path = tmp_path / "agnews.tsv"
    path.write_text("3\tbhp billiton approves copper project\n1\tsome world news\n",
                    encoding="utf-8")
    docs = load_labelled(path, text_field="1", label_field="0")
    assert docs == [LabelledDoc(text="bhp billiton approves copper project", label="3"),
                    LabelledDoc(text="some world news", label="1")]


def test_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_labelled(path, text_field="text", label_field="label")
    message = str(info.value)
    assert f"{path}:3" in message and "'label'" in message
    assert info.value.line == 3 and info.value.key == "label"


def test_table_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.tsv"
    path.write_text("0\ttext only\n1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"docs\.tsv:2.*'1'"):
        load_labelled(path, text_field="1", label_field="0")
    header = tmp_path / "header.tsv"
    header.write_text("text\tlabel\nx\ty\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'title'"):
        load_labelled(header, text_field="text", label_field="label", title_field="title")
    with pytest.raises(ConfigError, match="not a mix"):
        load_labelled(header, text_field="1", label_field="label")


def test_bad_inputs_raise_config_error(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "a", "label": "x"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2"):
        load_labelled(bad_json, text_field="text", label_field="label")
    bad_date = tmp_path / "date.jsonl"
    bad_date.write_text('{"text": "a", "label": "x", "t": "yesterday"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="bad date"):
        load_labelled(bad_date, text_field="text", label_field="label", time_field="t")
    with pytest.raises(ConfigError, match="unknown corpus format"):
        load_labelled(tmp_path / "docs.xml", text_field="text", label_field="label")
    with pytest.raises(ConfigError, match="cannot read"):
        load_labelled(tmp_path / "absent.jsonl", text_field="text", label_field="label")


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "docs.json"
    path.write_text('[{"text": "a", "label": 1, "t": 0}]', encoding="utf-8")
    docs = load_labelled(path, text_field="text", label_field="label", time_field="t")
    assert docs == [LabelledDoc(text="a", label="1",
                                time=datetime(1970, 1, 1, tzinfo=timezone.utc))]


def test_split_headline() -> None:
    assert split_headline("Ad sales boost profit\n\nQuarterly profits jumped.") == (
        "Ad sales boost profit", "Quarterly profits jumped.")
    assert split_headline("Only one line.") == ("", "Only one line.")
    long_first = "x" * 200 + "\nsecond line"
    assert split_headline(long_first) == ("", long_first)


def test_headline_churn_compares_each_story_carried_over_to_the_next_run() -> None:
    history = [{"s1": "Quake hits"}, {"s1": "Quake hits", "s2": "Bank cuts"}, {"s1": "Quake kills 9", "s2": "Bank cuts"}]
    assert headline_churn(history) == pytest.approx(1 / 3)   # s1, s1, s2 compared; s1 changed once
    assert headline_churn([{"s1": "a"}, {"s2": "b"}]) == 0.0  # nothing carried over
    assert headline_churn([]) == headline_churn([{"s1": "a"}]) == 0.0


def test_grab_bags_are_stories_of_three_or_more_whose_largest_gold_story_holds_under_two_thirds() -> None:
    gold = ["a", "a", "b", "a", "b", "c", "d", "d", "e", "e"]
    pred = ["s", "s", "s", "t", "t", "u", "u", "u", "v", "v"]  # s: 2 of 3 a (kept); u: 1 c + 2 d (2/3 kept)
    assert grab_bags(gold, pred) == (0, 2)
    assert grab_bags(["a", "b", "c", "a"], ["s", "s", "s", None]) == (1, 1)  # three events in one story


def test_orphan_rate_counts_unassigned_articles_whose_three_nearest_sit_in_one_story() -> None:
    pred = ["s", "s", "s", None, None]
    neighbours = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [0, 3, 1]])
    assert orphan_rate(pred, neighbours) == pytest.approx(1 / 2)  # row 3 is an orphan, row 4 is not
    assert orphan_rate(["s", "s"], np.array([[1, -1, -1], [0, -1, -1]])) == 0.0  # nothing unassigned
