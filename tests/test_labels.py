"""labels.py: headlines that stay until a clearly better one arrives, keywords, topics."""

from __future__ import annotations

import numpy as np

from clustering.embed import HashingEmbedder
from clustering.labels import HEADLINE_MARGIN, StoryText, group_topics, headline, keywords, story_labels

EMBEDDER = HashingEmbedder(256)


def unit(*rows: list[float]) -> np.ndarray:
    array = np.array(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


# --- headlines -------------------------------------------------------------------------------------
def test_headline_is_the_member_nearest_the_centroid() -> None:
    story = StoryText(["Edge one", "Middle", "Edge two"], ["a", "b", "c"], unit([1, 0, 0], [1, 1, 0], [0, 1, 0]))
    assert headline(story) == "Middle"


def test_headline_falls_back_to_the_text_without_a_title() -> None:
    assert headline(StoryText([""], ["x" * 200], unit([1, 0]))) == "x" * 120


def test_a_headline_stays_until_a_clearly_better_representative_arrives() -> None:
    # "Old" is a little off-centre once "New" arrives: it stays
    slightly = StoryText(["Old", "New", "Other"], ["a", "b", "c"], unit([1, 0.05, 0], [1, 0, 0], [1, -0.04, 0]),
                         current_label="Old")
    assert headline(slightly) == "Old"
    # far from the centre now: replaced
    clearly = StoryText(["Old", "New", "Other"], ["a", "b", "c"], unit([1, 1, 0], [1, 0, 0], [1, -0.1, 0]),
                        current_label="Old")
    assert headline(clearly) == "New"
    # the article that gave the headline has left the story (split, duplicate): replaced
    gone = StoryText(["New", "Other"], ["b", "c"], unit([1, 0, 0], [1, -0.04, 0]), current_label="Old")
    assert headline(gone) == "New"
    assert HEADLINE_MARGIN > 0


# --- keywords --------------------------------------------------------------------------------------
QUAKE = ["Magnitude 6.1 earthquake hits Northvale. Officials said rescue teams search Northvale.",
         "Northvale earthquake: rescue teams search collapsed buildings, officials said.",
         "Rescue teams search Northvale after the earthquake, Mr Hale said; damage put at $2bn."]
BANK = ["Eastmarch central bank raises interest rates, officials said.",
        "The central bank of Eastmarch raises rates again; Mr Osei says it should.",
        "Eastmarch's central bank raises rates as inflation persists, officials said."]


def texts(texts_: list[str]) -> StoryText:
    return StoryText([t[:30] for t in texts_], texts_, EMBEDDER.embed(texts_))


def test_keywords_favour_story_specific_words_without_filler() -> None:
    found = keywords({"s1": texts(QUAKE), "s4": texts(BANK)}, 4)
    quake, bank = found["s1"], found["s4"]
    assert len(quake) == 4 and len(bank) == 4
    assert {"northvale", "rescue"} <= set(quake)
    assert {"eastmarch", "bank"} & set(bank)
    assert "eastmarch's" not in bank  # possessive folded
    filler = {"officials", "said", "says", "mr", "bn", "should", "us"}
    assert not filler & set(quake + bank)
    assert not set(quake) & set(bank)


def test_story_labels_pair_headline_and_keywords() -> None:
    labels = story_labels({"s1": texts(QUAKE)}, 2)
    assert labels["s1"][0] in [t[:30] for t in QUAKE] and len(labels["s1"][1]) == 2
    assert story_labels({"s1": texts(QUAKE)}, 0)["s1"][1] == ()


# --- topics ----------------------------------------------------------------------------------------
def test_close_centroids_share_the_oldest_story_topic() -> None:
    centroids = np.array([[0.0, 0.0, 1.0], [0.9, 0.4359, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    assert group_topics(["s12", "s10", "s9"], centroids, 0.45) == {"s12": "t12", "s10": "t9", "s9": "t9"}


def test_topic_threshold_and_unnormalized_centroids() -> None:
    centroids = np.array([[1.0, 0.0], [0.5, 0.8660]], dtype=np.float32)  # cosine 0.5
    assert group_topics(["s1", "s2"], centroids, 0.45) == {"s1": "t1", "s2": "t1"}
    assert group_topics(["s1", "s2"], centroids, 0.6) == {"s1": "t1", "s2": "t2"}
    assert group_topics(["s1", "s2"], centroids * 7, 0.45) == {"s1": "t1", "s2": "t1"}


def test_topics_of_small_inputs() -> None:
    assert group_topics([], np.zeros((0, 3), dtype=np.float32), 0.45) == {}
    assert group_topics(["s4"], np.ones((1, 3), dtype=np.float32), 0.45) == {"s4": "t4"}


def test_mutually_nearest_stories_share_a_topic_from_the_pair_threshold() -> None:
    a, b, c = [1.0, 0.0, 0.0], [0.45, 0.893, 0.0], [0.0, 0.0, 1.0]  # a-b cosine 0.45, c apart
    ids = ["s1", "s2", "s3"]
    centroids = np.array([a, b, c], dtype=np.float32)
    assert group_topics(ids, centroids, 0.55) == {"s1": "t1", "s2": "t2", "s3": "t3"}
    assert group_topics(ids, centroids, 0.55, 0.4) == {"s1": "t1", "s2": "t1", "s3": "t3"}
    assert group_topics(ids, centroids, 0.55, 0.5) == {"s1": "t1", "s2": "t2", "s3": "t3"}
    # s1's nearest is s2, but s2's nearest is s3: not a mutual pair
    centroids = np.array([a, b, [0.0, 0.95, 0.312]], dtype=np.float32)
    assert group_topics(ids, centroids, 0.55, 0.4) == {"s1": "t1", "s2": "t2", "s3": "t2"}


def test_numbered_variant_ids_come_after_their_base() -> None:
    centroids = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    assert group_topics(["s7-2", "s7"], centroids, 0.5) == {"s7-2": "t7", "s7": "t7"}


def test_topics_of_many_stories_need_no_stories_by_stories_matrix() -> None:
    """Ten well-separated families of five stories each: ten topics, found on the story graph."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(10, 32))
    centroids = (np.repeat(centres, 5, axis=0) + 0.1 * rng.normal(size=(50, 32))).astype(np.float32)
    ids = [f"s{i}" for i in range(50)]
    topics = group_topics(ids, centroids, 0.55, 0.4)
    assert len(set(topics.values())) == 10
    assert all(len({topics[f"s{5 * f + k}"] for k in range(5)}) == 1 for f in range(10))
