"""Topic names (topics.py): the most central story's headline, kept while it stays close."""

from __future__ import annotations

import numpy as np

from clustering.topics import topic_names


def unit(*values: float) -> list[float]:
    vector = np.asarray(values, dtype=np.float64)
    return list(vector / np.linalg.norm(vector))


def test_a_topic_is_named_after_its_most_central_story() -> None:
    story_ids = ["s1", "s2", "s3", "s9"]
    centroids = np.asarray([unit(1, 0.1, 0), unit(1, 0, 0), unit(1, -0.1, 0), unit(0, 0, 1)])
    headlines = {"s1": "Quake aftershocks rattle Vellmar", "s2": "Vellmar earthquake kills dozens",
                 "s3": "Aid reaches Vellmar quake zone", "s9": "Dunmore win the cup"}
    names = topic_names({"s1": "t1", "s2": "t1", "s3": "t1", "s9": "t9"}, story_ids, centroids, headlines, {})
    assert names["t1"][0] == "Vellmar earthquake kills dozens"  # the middle story
    assert names["t9"][0] == "Dunmore win the cup"
    assert "vellmar" in names["t1"][1]  # c-TF-IDF: in every t1 headline, in no other topic's


def test_a_topic_keeps_its_name_unless_another_is_clearly_more_central() -> None:
    story_ids = ["s1", "s2"]
    headlines = {"s1": "First headline", "s2": "Second headline"}
    topic_of = {"s1": "t1", "s2": "t1"}
    close = np.asarray([unit(1, 0.02, 0), unit(1, -0.02, 0.05)])
    kept = topic_names(topic_of, story_ids, close, headlines, {"t1": "Second headline"})
    assert kept["t1"][0] == "Second headline"
    far = np.asarray([unit(1, 0, 0), unit(0.2, 1, 0), unit(1, 0.05, 0)])
    renamed = topic_names({"s1": "t1", "s2": "t1", "s3": "t1"}, ["s1", "s2", "s3"], far,
                          {**headlines, "s3": "Third headline"}, {"t1": "Second headline"})
    assert renamed["t1"][0] != "Second headline"
