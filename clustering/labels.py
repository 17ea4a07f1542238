"""What a reader sees of a story: its headline, its keywords, and the topic it rolls up to.

Pure over arrays and strings; core.py feeds it the stories with members in the window.

* Headline: the title of the member nearest the story's centroid, kept from run to run
  until another member is clearly nearer (``HEADLINE_MARGIN``): a story should not
  change its name every time an article arrives.
* Keywords: c-TF-IDF over the window's stories (frequent in this story, rare in the
  others), from terms.words (stop words and news filler out, possessives folded).
* Topics: stories whose centroids are close (average linkage on the stories' own
  neighbour graph, never a stories × stories matrix), plus mutually nearest pairs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .terms import words

if TYPE_CHECKING:
    import numpy as np

HEADLINE_MARGIN = 0.05
"""A story keeps its headline while the member it comes from is within this cosine of
the member nearest the centroid; only a clearly better representative replaces it."""

HEADLINE_FALLBACK_CHARS = 120
"""Characters of the text used as headline when the representative has no title."""

TOPIC_NEIGHBOURS = 10
"""Nearest stories per story in the topic graph."""


@dataclass(frozen=True)
class StoryText:
    """A story's members in the window, as labels are made from them."""

    titles: Sequence[str]
    texts: Sequence[str]
    vectors: np.ndarray          # (members, d), L2-normalized embeddings
    current_label: str = ""


def headline(story: StoryText) -> str:
    """The representative member's title (see ``HEADLINE_MARGIN``)."""
    import numpy as np

    centroid = story.vectors.mean(axis=0)
    closeness = story.vectors @ centroid
    best = int(np.argmax(closeness))
    if story.current_label:
        for row, title in enumerate(_shown_titles(story)):
            if title == story.current_label and closeness[row] >= closeness[best] - HEADLINE_MARGIN * float(
                    np.linalg.norm(centroid)):
                return title
    return _shown_titles(story)[best]


def _shown_titles(story: StoryText) -> list[str]:
    return [title or text[:HEADLINE_FALLBACK_CHARS] for title, text in zip(story.titles, story.texts, strict=True)]


def keywords(stories: Mapping[str, StoryText], count: int,
             background: Mapping[str, StoryText] | None = None) -> dict[str, tuple[str, ...]]:
    """c-TF-IDF keywords of each story against the others (``stories`` and ``background``; the
    background stories get no keywords)."""
    counts = {sid: Counter(w for text in story.texts for w in words(text)) for sid, story in stories.items()}
    others = [Counter(w for text in story.texts for w in words(text)) for story in (background or {}).values()]
    document_frequency: Counter[str] = Counter()
    for counter in [*counts.values(), *others]:
        document_frequency.update(counter.keys())
    classes = len(counts) + len(others)
    average_words = (sum(sum(c.values()) for c in [*counts.values(), *others]) / max(classes, 1)) or 1.0
    result: dict[str, tuple[str, ...]] = {}
    for sid, counter in counts.items():
        total = sum(counter.values()) or 1
        scored = sorted(((c / total) * math.log(1 + average_words / document_frequency[w]), w)
                        for w, c in counter.items() if c > 1 or len(counter) < 20)
        result[sid] = tuple(w for _, w in sorted(scored, reverse=True)[:count])
    return result


def story_labels(stories: Mapping[str, StoryText], keyword_count: int,
                 background: Mapping[str, StoryText] | None = None) -> dict[str, tuple[str, tuple[str, ...]]]:
    """story id -> (headline, keywords), keywords weighed against ``stories`` and ``background``."""
    found = keywords(stories, keyword_count, background)
    return {sid: (headline(story), found[sid]) for sid, story in stories.items()}


def _id_order(story_id: str) -> tuple[int, str]:
    digits = story_id[1:].split("-")[0]
    return (int(digits) if digits.isdigit() else 0, story_id)


def group_topics(story_ids: Sequence[str], centroids: np.ndarray, threshold: float,
                 pair_threshold: float | None = None) -> dict[str, str]:
    """Topic of each story: average-linkage groups of story centroids (cosine ≥
    ``threshold``) on the stories' neighbour graph, then the groups of two stories that
    are each other's nearest story with cosine ≥ ``pair_threshold`` are joined.

    A topic's id is the id of its oldest story (story ids are ordered by founding
    article), so a topic keeps its id while its stories do.
    """
    import numpy as np

    from .cluster import linkage_at
    from .graph import build_graph

    if len(story_ids) == 0:
        return {}
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit = np.ascontiguousarray(centroids / norms, dtype=np.float32)
    graph = build_graph(unit, TOPIC_NEIGHBOURS)
    heads, tails = graph.edges()
    group_of = linkage_at(unit, heads, tails, threshold).tolist()
    if pair_threshold is not None and graph.neighbours.shape[1]:
        nearest = graph.neighbours[:, 0]
        parent = {g: g for g in group_of}

        def root(g: int) -> int:
            while parent[g] != g:
                g = parent[g]
            return g

        for a, b in enumerate(nearest.tolist()):
            if b >= 0 and nearest[b] == a and graph.similarity[a, 0] >= pair_threshold:
                parent[root(group_of[a])] = root(group_of[b])
        group_of = [root(g) for g in group_of]
    members: dict[int, list[str]] = {}
    for story_id, group in zip(story_ids, group_of, strict=True):
        members.setdefault(group, []).append(story_id)
    topic_of: dict[str, str] = {}
    for group_members in members.values():
        oldest = min(group_members, key=_id_order)
        for story_id in group_members:
            topic_of[story_id] = f"t{oldest[1:]}"
    return topic_of
