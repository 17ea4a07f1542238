"""Stories: reconcile the window's proposed groups with the stories already stored.

Pure over arrays and value objects: core.py loads the window, calls
:func:`assign_stories` and writes the result back.  The groups themselves come from
cluster.py (HDBSCAN cores and average linkage on the sparse neighbour graph of
graph.py); names and words from terms.py; labels and topics from labels.py.

How a run assigns stories (docs/design.md, "Stable story ids"):

1. propose groups for the window from scratch, as a batch clusterer would;
2. match each stored story, one to one, to the group holding most of its articles, wire
   copies counted (ties: the older story); a matched group's unassigned articles join its
   story, except a new one that barely fits it (``JOIN_PROBABILITY``), which waits a run;
3. an unmatched group founds a new story (id from its earliest article) and takes its
   members along: when later articles show that an early story mixed two events, the
   second event splits off (``moved_from`` names the story each article left);
4. a story that matched no group but has at least ``MERGE_SHARE`` of its window
   members inside a group matched to another story merges into that story: early in a
   stream one event's first articles can found two stories that later articles join;
5. a small new group that resembles an existing story waits one run before it founds
   a story (``confirm_size``), unless the run is the window's first; if it has not held
   together by then, its articles join the story their close neighbours belong to; a new
   article the proposal would take in as an orphan (cluster.adopt_orphans) waits a run too.

A run clusters afresh only the region its new articles touch (``region_rows``); stories
outside it are left as they are.

A story id is never reused (``taken_ids`` holds the ids given before).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Collection, Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from .scoring import (
    ATTACH_MIN_VOTES,
    MAX_TERM_SHARE,
    MIN_TERM_ARTICLES,
    SMALL_WINDOW,
    GroupSums,
    ScoredEdges,
    StoryFeatures,
    StoryParams,
    attach_by_neighbours,
    document_frequency,
    score_edges,
    tfidf_rows,
    tfidf_token_rows,
)
from .terms import ArticleTerms, TermTable, article_terms

if TYPE_CHECKING:
    import numpy as np

    from .graph import NeighbourGraph

__all__ = ["StoryAssignment", "StoryDoc", "StoryParams", "assign_stories", "reconcile", "story_features"]


REGION_ALL_SHARE = 0.5
"""A run clusters the whole window when the region its new articles touch is this share of it or
more (early in a stream, or after a large batch): at that size a region saves little and a
whole window has no edges cut.  On a 100k-article window a run of 500 new articles touches a few
thousand."""

MERGE_SHARE = 0.5
"""A story that matched no group merges into the story of the group holding at least
this share of its window members.  Lab, streams of 10 runs: ECB+ 0.922 → 0.936 with
merges (id churn 1.6 % → 4.0 %), GoogleNews TS 0.879 → 0.894, T 0.807 → 0.820."""


JOIN_PROBABILITY = 0.5
"""A new article of a group that matched a story joins it at once when P(same story) with the story's
members in the group, on average, reaches this (the merge bar); below it, it waits a run (pending
``j<id>``) and joins if the group still holds it.  Waiting keeps an early article of a second event of
one kind out of the first event's story until that event has articles of its own.  Lab, ECB+ streams
(orders 13/1/2/3): id churn 6.2/4.8/5.2/5.4 % → 5.7/4.1/4.8/5.4 %, B-cubed 0.934/0.925/0.935/0.915 →
0.935/0.921/0.933/0.912; at 0.65 and 0.8 churn fell no further and B-cubed did."""


@dataclass(frozen=True)
class StoryDoc:
    """A canonical article of the window as the story core sees it."""

    article_id: int
    title: str
    text: str                 # summary (or full text), without the title
    published: datetime
    source: str
    story_id: str | None = None
    is_new: bool = True               # first seen by this run
    pending_group: str | None = None  # the deferred group it belonged to last run
    terms: ArticleTerms | None = None  # article_terms(title, text), computed when missing
    copies: int = 0                    # the window's duplicates of it (wire copies: not docs themselves)

    def article_terms(self) -> ArticleTerms:
        return self.terms if self.terms is not None else article_terms(self.title, self.text)


@dataclass(frozen=True)
class StoryAssignment:
    story_of: dict[int, str]          # article id -> story id, for articles assigned or moved this run
    new_story_ids: tuple[str, ...]
    updated_story_ids: tuple[str, ...]
    moved_from: dict[int, str] = field(default_factory=dict)  # article id -> the story it left
    pending: dict[int, str] = field(default_factory=dict)     # article id -> deferred group key
    merged_into: dict[str, str] = field(default_factory=dict)  # story id -> the story it merged into
    split_from: dict[str, str] = field(default_factory=dict)   # new story id -> the story most members left
    region: tuple[int, ...] | None = None  # the articles clustered afresh (None: the whole window)


def story_features(docs: Sequence[StoryDoc], vectors: np.ndarray, params: StoryParams,
                   rows: Sequence[int] | None = None, terms: TermTable | None = None) -> StoryFeatures:
    """Embeddings, names (window-learned, terms.py) and text lengths of the window's ``rows``
    (default all): each row is what the whole window would give it (name evidence and document
    frequencies come from every article of ``docs``).  ``terms``: the docs' terms in columns, a
    row per doc, when the caller keeps them (window.py); else read from the docs."""
    import numpy as np

    from .terms import words

    selected = list(range(len(docs))) if rows is None else list(rows)
    if terms is None:
        terms = TermTable.of(doc.article_terms() for doc in docs)
    if len(terms) != len(docs):
        raise ValueError(f"{len(terms)} rows of terms for {len(docs)} articles")
    names = terms.window_name_tokens(selected)
    max_share = MAX_TERM_SHARE if len(docs) > SMALL_WINDOW else None
    name_rows = tfidf_token_rows(names.documents, names.tokens, len(selected), names.frequency, MIN_TERM_ARTICLES,
                                 max_share, len(docs))
    word_rows = None
    if params.lexical_weight > 0:
        tokens = [words(f"{d.title}\n{d.text}") for d in docs]
        word_rows = tfidf_rows([tokens[r] for r in selected], MIN_TERM_ARTICLES, max_share,
                               document_frequency(tokens), len(docs))
    log_words = np.log2(np.maximum(terms.word_counts[selected], 1)).astype(np.float64)
    return StoryFeatures(vectors=np.ascontiguousarray(vectors[selected], dtype=np.float32), names=name_rows,
                         log_words=log_words, words=word_rows,
                         copies=np.asarray([docs[r].copies for r in selected], dtype=np.int64))


def region_rows(docs: Sequence[StoryDoc], graph: NeighbourGraph) -> list[int]:
    """The rows a run clusters afresh: the new articles and those waiting since the last run,
    their neighbours (both ways), and every window article of a story any of them is in.  The
    whole window (all rows) when that is ``REGION_ALL_SHARE`` of it or more; none when nothing
    is new or waiting."""
    import numpy as np

    n = len(docs)
    seeds = np.asarray([row for row, doc in enumerate(docs) if doc.is_new or doc.pending_group is not None],
                       dtype=np.int64)
    if not seeds.size:
        return []
    touched = np.zeros(n, dtype=bool)
    touched[seeds] = True
    lists = graph.neighbours[seeds]
    touched[lists[lists >= 0]] = True
    touched[np.isin(graph.neighbours, seeds).any(axis=1)] = True
    stories = {docs[row].story_id for row in np.flatnonzero(touched).tolist()} - {None}
    if stories:
        touched |= np.asarray([doc.story_id in stories for doc in docs])
    if touched.sum() >= REGION_ALL_SHARE * n:
        return list(range(n))
    return np.flatnonzero(touched).tolist()


def new_story_id(founder_article_id: int) -> str:
    """A story's id: derived from its earliest article, so it never needs renumbering."""
    return f"s{founder_article_id}"


def _id_order(story_id: str) -> tuple[int, str]:
    digits = story_id[1:].split("-")[0]
    return (int(digits) if digits.isdigit() else 0, story_id)


def assign_stories(docs: Sequence[StoryDoc], vectors: np.ndarray, params: StoryParams,
                   taken_ids: Container[str] = (), *, graph: NeighbourGraph | None = None,
                   terms: TermTable | None = None) -> StoryAssignment:
    """Assign the window's articles to existing or new stories (see the module doc).

    ``taken_ids`` are story ids already used (also outside the window); a new story never
    reuses one.  ``graph`` and ``terms`` (a row per doc) are the window's neighbour graph and
    terms when the caller keeps them (window.py); they are built here otherwise.  Only the region
    the new articles touch is clustered afresh (``region_rows``).  Returns only what changes."""
    import numpy as np

    from .cluster import propose
    from .graph import build_graph

    if not docs or all(doc.story_id is not None for doc in docs):
        return StoryAssignment({}, (), ())
    if graph is None:
        graph = build_graph(vectors, params.neighbours, np.asarray([doc.article_id for doc in docs]))
    rows = region_rows(docs, graph)
    if not rows:
        return StoryAssignment({}, (), (), region=())
    first_run = all(doc.is_new and doc.story_id is None for doc in docs)
    features = story_features(docs, vectors, params, rows, terms)
    whole = len(rows) == len(docs)
    edges = score_edges(features, graph if whole else graph.restricted(np.asarray(rows)), params)
    adoptable = None if first_run else np.asarray([not docs[row].is_new for row in rows])
    proposal = propose(features, edges, params, graph if whole else graph.restricted(np.asarray(rows)),
                       window_size=len(docs), adoptable=adoptable)
    region = [docs[row] for row in rows]
    result = reconcile(region, proposal.groups, features, edges, params, taken_ids, first_run=first_run,
                       deferred=proposal.deferred)
    return dataclasses.replace(result, region=None if whole else tuple(doc.article_id for doc in region))


def reconcile(docs: Sequence[StoryDoc], groups: Sequence[Sequence[int]], features: StoryFeatures,
              edges: ScoredEdges, params: StoryParams, taken_ids: Container[str] = (), *,
              first_run: bool | None = None, deferred: Sequence[int] = ()) -> StoryAssignment:
    """Turn proposed groups (rows of ``docs``) into story changes (module doc, steps 2–5).
    ``first_run``: every article of the window is new (default: judged from ``docs``)."""
    current = [doc.story_id for doc in docs]
    members: dict[str, list[int]] = defaultdict(list)
    for row, story_id in enumerate(current):
        if story_id is not None:
            members[story_id].append(row)
    if first_run is None:
        first_run = all(doc.is_new and doc.story_id is None for doc in docs)
    matched = _match(groups, current, [1 + doc.copies for doc in docs])
    matched_stories = set(matched.values())
    merge_target = _merge_targets(groups, current, members, matched)
    result: list[str | None] = list(current)
    pending: dict[int, str] = {}
    new_ids: list[str] = []
    split_from: dict[str, str] = {}
    used = _UsedIds(taken_ids, members)
    resemblance = _Resemblance(groups, members, features, params)
    for g, group in enumerate(groups):
        target = matched.get(g)
        if target is not None:
            doubtful = set() if first_run else _doubtful_joiners(group, current, target, docs, features, params)
            for row in group:
                story_id = current[row]
                if story_id is None and row not in doubtful:
                    result[row] = target
                elif row in doubtful:
                    pending[docs[row].article_id] = f"j{docs[row].article_id}"
            continue
        if not first_run and not _confirmed(g, groups, current, docs, params, resemblance):
            key = f"p{min(docs[row].article_id for row in group)}"
            pending.update({docs[row].article_id: key for row in group if current[row] is None})
            continue
        founders = sorted(group, key=lambda row: (docs[row].published, docs[row].article_id))
        story_id = used.fresh(founders, docs)
        new_ids.append(story_id)
        left = Counter(story for story in (current[row] for row in group) if story is not None)
        if left:
            split_from[story_id] = min(left.items(), key=lambda kv: (-kv[1], _id_order(kv[0])))[0]
        for row in group:  # a split: members of an earlier story move with the new one
            result[row] = story_id
    for story_id, target in merge_target.items():
        for row in members[story_id]:
            if result[row] == story_id:
                result[row] = target
    waited = {doc.article_id for doc in docs if doc.pending_group is not None}
    _join_neighbours_story(result, docs, pending, edges, waited)
    for row in deferred:  # an orphan new this run waits one, as a small new group does
        if result[row] is None and docs[row].article_id not in pending:
            pending[docs[row].article_id] = f"o{docs[row].article_id}"
    story_of = {docs[i].article_id: result[i] for i in range(len(docs))
                if result[i] is not None and result[i] != current[i]}
    moved_from = {docs[i].article_id: current[i] for i in range(len(docs))
                  if current[i] is not None and result[i] != current[i]}
    merged_into = {s: t for s, t in merge_target.items() if s not in matched_stories}
    founded = set(new_ids)  # a set: a first run of 100k articles founds 5,870 stories (1.6 s as a list)
    updated = ({s for s in story_of.values() if s not in founded} | set(moved_from.values()))
    return StoryAssignment(story_of, tuple(new_ids), tuple(sorted(updated, key=_id_order)),  # type: ignore[arg-type]
                           moved_from, pending, merged_into, split_from)  # type: ignore[arg-type]


def _doubtful_joiners(group: Sequence[int], current: Sequence[str | None], target: str, docs: Sequence[StoryDoc],
                      features: StoryFeatures, params: StoryParams) -> set[int]:
    """New rows of a group that matched story ``target`` whose P(same story) with the story's members in
    the group, on average, is under ``JOIN_PROBABILITY``: they wait one run (unless they waited already)."""
    import numpy as np

    from .scoring import GroupSums, similarity_at

    old = [row for row in group if current[row] == target]
    new = [row for row in group if current[row] is None and docs[row].pending_group is None]
    if not old or not new:
        return set()
    sums = GroupSums.of(features, [[row] for row in new] + [old], params)
    similarity = sums.between(np.arange(len(new)), np.full(len(new), len(new)))
    log_words = (features.log_words[new] + features.log_words[old].mean()) / 2
    weak = similarity < similarity_at(JOIN_PROBABILITY, log_words, params)
    return {row for row, w in zip(new, weak.tolist(), strict=True) if w}


def _join_neighbours_story(result: list[str | None], docs: Sequence[StoryDoc], pending: dict[int, str],
                           edges: ScoredEdges, waited: set[int]) -> None:
    """An article that has waited one run (``waited``: pending since the last run) and is
    still in no story joins the story its close neighbours clearly belong to
    (cluster.attach_by_neighbours, on stories); otherwise it waits on."""
    code = {story_id: number for number, story_id in enumerate(sorted({s for s in result if s is not None}))}
    if not code:
        return
    story_of_code = {number: story_id for story_id, number in code.items()}
    labels = [code[s] if s is not None else None for s in result]
    joined = attach_by_neighbours(labels, edges.heads, edges.tails, edges.similarity, edges.threshold,
                                  ATTACH_MIN_VOTES)
    for row, label in enumerate(joined):
        if result[row] is None and label is not None and docs[row].article_id in waited:
            result[row] = story_of_code[label]
            pending.pop(docs[row].article_id, None)


def _match(groups: Sequence[Sequence[int]], current: Sequence[str | None],
           weight: Sequence[int] | None = None) -> dict[int, str]:
    """Group index -> story, one to one, greedily by the number of the story's articles in the group,
    wire copies included (``weight``: 1 + a row's copies: the part of a split story that readers saw
    most of keeps its id) (ties: the older story id, then the earlier group)."""
    overlap: Counter[tuple[int, str]] = Counter()
    for g, group in enumerate(groups):
        for i in group:
            if current[i] is not None:
                overlap[(g, current[i])] += weight[i] if weight is not None else 1  # type: ignore[index]
    matched: dict[int, str] = {}
    taken: set[str] = set()
    for (g, story_id), _ in sorted(overlap.items(), key=lambda kv: (-kv[1], _id_order(kv[0][1]), kv[0][0])):
        if g not in matched and story_id not in taken:
            matched[g] = story_id
            taken.add(story_id)
    return matched


def _merge_targets(groups: Sequence[Sequence[int]], current: Sequence[str | None],
                   members: dict[str, list[int]], matched: dict[int, str]) -> dict[str, str]:
    """Stories that matched no group -> the story they merge into (``MERGE_SHARE``)."""
    matched_stories = set(matched.values())
    targets: dict[str, str] = {}
    for g, group in enumerate(groups):
        target = matched.get(g)
        if target is None:
            continue
        inside = Counter(current[row] for row in group if current[row] is not None)
        for story_id, count in inside.items():
            if story_id not in matched_stories and count >= MERGE_SHARE * len(members[story_id]):  # type: ignore[index]
                targets[story_id] = target  # type: ignore[index]
    return targets


def _confirmed(g: int, groups: Sequence[Sequence[int]], current: Sequence[str | None], docs: Sequence[StoryDoc],
               params: StoryParams, resemblance: _Resemblance) -> bool:
    """Whether an unmatched group founds its story this run (module doc, step 5)."""
    group = groups[g]
    if len(group) >= params.confirm_size:
        return True
    waiting = Counter(docs[row].pending_group for row in group if current[row] is None and docs[row].pending_group)
    if waiting and waiting.most_common(1)[0][1] >= min(params.min_cluster_size, len(group)):
        return True  # it held together since the last run (a sure pair: both of it)
    return resemblance.closest(g) < params.confirm_similarity


class _Resemblance:
    """The highest average hybrid similarity of a proposed group to any other group or stored
    story of the region; the groups' sums are computed once, on the first question."""

    def __init__(self, groups: Sequence[Sequence[int]], members: dict[str, list[int]], features: StoryFeatures,
                 params: StoryParams) -> None:
        self.candidates = [list(group) for group in groups] + list(members.values())
        self.features = features
        self.params = params
        self.sums: GroupSums | None = None

    def closest(self, g: int) -> float:
        import numpy as np

        if len(self.candidates) < 2:
            return -1.0
        if self.sums is None:
            self.sums = GroupSums.of(self.features, self.candidates, self.params)
        return float(np.max(self.sums.against_others(g)))


class _UsedIds:
    """Story ids that a new story may not take: ever given (``taken``, may be a lazy
    store lookup) or present in the window."""

    def __init__(self, taken: Container[str], present: Collection[str]) -> None:
        self.taken = taken
        self.given = set(present)

    def __contains__(self, story_id: str) -> bool:
        return story_id in self.given or story_id in self.taken

    def fresh(self, founders: Sequence[int], docs: Sequence[StoryDoc]) -> str:
        """The id of the earliest article not already naming a story, else a numbered variant."""
        for row in founders:
            story_id = new_story_id(docs[row].article_id)
            if story_id not in self:
                self.given.add(story_id)
                return story_id
        base, number = new_story_id(docs[founders[0]].article_id), 2
        while f"{base}-{number}" in self:
            number += 1
        self.given.add(f"{base}-{number}")
        return f"{base}-{number}"
