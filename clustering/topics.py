"""Topic names: a readable name and keywords for each topic (a group of stories, labels.py).

Pure over arrays and strings; core.py calls :func:`topic_names` after grouping topics.

* Name: the headline of the topic's most central story (the story centroid nearest the
  topic's centroid), kept from run to run while that story stays within
  ``labels.HEADLINE_MARGIN`` of the most central one: the margin rule that keeps story
  headlines stable, reused by import (``labels.headline``) on the stories' centroids.
* Keywords: c-TF-IDF over the topics' headlines (``labels.keywords``): words frequent in
  this topic's headlines and rare in the other topics'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from . import labels

if TYPE_CHECKING:
    import numpy as np

TOPIC_KEYWORDS = 5
"""Keywords shown per topic: a topic's headlines are few words each, more would be noise."""


def topic_names(topic_of: Mapping[str, str], story_ids: Sequence[str], centroids: np.ndarray,
                headlines: Mapping[str, str], current: Mapping[str, str],
                keyword_count: int = TOPIC_KEYWORDS) -> dict[str, tuple[str, tuple[str, ...]]]:
    """topic id -> (name, keywords) for every topic of ``topic_of`` (story id -> topic id).

    ``centroids`` holds one row per story of ``story_ids`` (sums or means of its members'
    vectors); ``headlines`` each story's headline now; ``current`` each topic's stored name."""
    import numpy as np

    row_of = {story_id: row for row, story_id in enumerate(story_ids)}
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit = np.asarray(centroids / norms, dtype=np.float64)
    members: dict[str, list[str]] = {}
    for story_id in story_ids:
        topic_id = topic_of.get(story_id)
        if topic_id is not None:
            members.setdefault(topic_id, []).append(story_id)
    texts = {topic_id: labels.StoryText(titles=[headlines.get(s, "") for s in stories],
                                        texts=[headlines.get(s, "") for s in stories],
                                        vectors=unit[[row_of[s] for s in stories]],
                                        current_label=current.get(topic_id, ""))
             for topic_id, stories in members.items()}
    found = labels.keywords(texts, keyword_count)
    return {topic_id: (labels.headline(text), found[topic_id]) for topic_id, text in texts.items()}
