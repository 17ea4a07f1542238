"""cluster.py and scoring.py: the hybrid similarity, average linkage on the sparse graph, cores, the neighbour vote.

Pure arrays; the deterministic HashingEmbedder stands in for the model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse

from clustering.cluster import (
    PAIR_MIN_COSINE,
    PAIR_MIN_COSINE_SHORT,
    adopt_orphans,
    adopt_orphans_in_rounds,
    average_linkage,
    dense_cores,
    linkage_at,
    pair_min_cosine,
    propose_groups,
    split_loose_groups,
    trim_groups,
)
from clustering.embed import HashingEmbedder
from clustering.graph import build_graph
from clustering.scoring import (
    ATTACH_SHARE,
    GroupSums,
    StoryFeatures,
    StoryParams,
    attach_by_neighbours,
    edge_similarity,
    group_similarity,
    SAME_STORY_MODEL,
    length_share,
    merge_threshold,
    score_edges,
    similarity_at,
    tfidf_rows,
)
from clustering.stories import StoryDoc, story_features

PARAMS = StoryParams()
EMBEDDER = HashingEmbedder(256)


def blobs(centres: int, per_centre: int, dimension: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(centres, dimension))
    rows = np.repeat(centre, per_centre, axis=0) + spread * rng.normal(size=(centres * per_centre, dimension))
    rows = rows[rng.permutation(len(rows))]
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def plain_features(vectors: np.ndarray) -> StoryFeatures:
    n = len(vectors)
    return StoryFeatures(vectors=vectors, names=scipy.sparse.csr_matrix((n, 0), dtype=np.float32),
                         log_words=np.zeros(n))


def partition(labels: np.ndarray) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for row, label in enumerate(labels.tolist()):
        groups.setdefault(label, set()).add(row)
    return {frozenset(g) for g in groups.values()}


# --- TF-IDF of token lists ---------------------------------------------------------------------------
def test_tfidf_rows_match_sklearn_sublinear_tfidf() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    documents = [["a", "b", "b"], ["a", "c"], ["b", "c", "d"], ["a", "b", "c", "c", "c"], ["e"]]
    ours = tfidf_rows(documents, min_articles=2, max_share=None).toarray()
    theirs = TfidfVectorizer(analyzer=lambda d: d, sublinear_tf=True, min_df=2).fit_transform(documents).toarray()
    assert np.allclose(np.sort(ours, axis=1), np.sort(theirs, axis=1), atol=1e-6)
    assert np.allclose(ours @ ours.T, theirs @ theirs.T, atol=1e-6)
    assert not ours[4].any()  # "e" links nothing: an empty row


def test_tfidf_rows_drop_terms_in_too_many_documents() -> None:
    documents = [["common", f"rare{i % 3}"] for i in range(9)]
    rows = tfidf_rows(documents, min_articles=2, max_share=0.5)
    assert rows.shape == (9, 3)  # "common" (in all 9) is gone
    assert np.allclose(np.linalg.norm(rows.toarray(), axis=1), 1.0)


def _same_sparse(a: scipy.sparse.csr_matrix, b: scipy.sparse.csr_matrix) -> bool:
    return (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data))


@pytest.mark.parametrize("seed", range(6))
def test_tfidf_of_token_ids_is_tfidf_rows_to_the_bit(seed: int) -> None:
    """scoring.tfidf_token_rows (NumPy, token ids) builds the matrix tfidf_rows builds from lists of
    words: the same entries in the same order, the same weights."""
    from clustering.scoring import document_frequency, tfidf_token_rows

    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(int(rng.integers(1, 40)))]
    documents = [[vocabulary[t] for t in rng.integers(0, len(vocabulary), int(rng.integers(0, 12)))]
                 for _ in range(int(rng.integers(0, 80)))]
    total = len(documents) + int(rng.integers(0, 50))
    frequency = {w: c + int(rng.integers(0, 5)) for w, c in document_frequency(documents).items()}
    ids = {w: i for i, w in enumerate(vocabulary)}
    flat_documents = np.asarray([d for d, doc in enumerate(documents) for _ in doc], dtype=np.int64)
    flat_tokens = np.asarray([ids[w] for doc in documents for w in doc], dtype=np.int64)
    frequency_array = np.asarray([frequency.get(w, 0) for w in vocabulary], dtype=np.int64)
    for min_articles, max_share in ((1, None), (2, None), (2, 0.5), (3, 0.05)):
        expected = tfidf_rows(documents, min_articles, max_share, frequency, total)
        ours = tfidf_token_rows(flat_documents, flat_tokens, len(documents), frequency_array, min_articles,
                                max_share, total)
        assert _same_sparse(ours, expected)


def test_story_features_names_are_those_of_window_names_and_tfidf_rows() -> None:
    """story_features reads the names through TermTable and tfidf_token_rows; on a window with
    Title-Case headlines, numbers and unnamed articles the name rows equal the per-article path."""
    from clustering.scoring import MAX_TERM_SHARE, MIN_TERM_ARTICLES, document_frequency
    from clustering.terms import name_evidence, window_names

    rng = np.random.default_rng(21)
    syllables = ["ka", "lor", "ven", "mi", "sto", "ra", "bel", "dun", "or", "is", "tha", "quin"]
    people = [" ".join("".join(rng.choice(syllables, 2)).capitalize() for _ in range(int(rng.integers(1, 3))))
              for _ in range(60)]
    texts = []
    for i in range(300):
        chosen = rng.choice(people, 2, replace=False)
        if i % 5 == 0:
            texts.append((f"{chosen[0]} Faces Vote In {chosen[1]}", ""))
        elif i % 7 == 0:
            texts.append(("", f"the count rose to {i} on day {i % 9}"))
        else:
            texts.append((f"report {i}", f"the officials said that {chosen[0]} had met with {chosen[1]} near "
                                         f"the river on {i % 31} May, again."))
    docs = [StoryDoc(i, t, x, None, "s") for i, (t, x) in enumerate(texts)]  # type: ignore[arg-type]
    vectors = EMBEDDER.embed([f"{t} {x}" for t, x in texts])
    rows = sorted(rng.choice(len(docs), 120, replace=False).tolist())
    features = story_features(docs, vectors, PARAMS, rows)
    terms = [d.article_terms() for d in docs]
    names = window_names(terms, name_evidence(terms))
    expected = tfidf_rows([names[r] for r in rows], MIN_TERM_ARTICLES, MAX_TERM_SHARE, document_frequency(names),
                          len(docs))
    assert _same_sparse(features.names, expected) and features.names.nnz > 100


# --- the similarity ----------------------------------------------------------------------------------
def test_names_count_only_where_both_articles_have_some() -> None:
    vectors = np.eye(3, dtype=np.float32)[[0, 0, 0]]  # embedding cosine 1 everywhere
    names = scipy.sparse.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=np.float32))
    features = StoryFeatures(vectors=vectors, names=names, log_words=np.zeros(3))
    heads, tails = np.array([0, 0]), np.array([1, 2])
    similarity = edge_similarity(features, heads, tails, PARAMS)
    w_e, w_n = PARAMS.embedding_weight, PARAMS.entity_weight
    assert similarity[0] == pytest.approx(w_e / (w_e + w_n))  # both named, no name in common
    assert similarity[1] == pytest.approx(1.0)  # article 2 has no names: the embedding decides alone


def test_group_sums_read_only_the_rows_their_groups_hold() -> None:
    """GroupSums.of gathers the groups' rows before summing (a region's whole float64 copy per call cost
    0.6 s of a +500 run into 100k): the sums equal, to the bit, those over every row of the window."""
    rng = np.random.default_rng(5)
    vectors = blobs(30, 10, 32, 0.4, 7)
    n = len(vectors)
    names = scipy.sparse.random(n, 50, density=0.08, random_state=4, format="csr", dtype=np.float32)
    features = StoryFeatures(vectors=vectors, names=names, log_words=rng.uniform(2, 9, n))
    groups = [sorted(rng.choice(n, size=int(rng.integers(1, 12)), replace=False).tolist()) for _ in range(25)]
    groups.append([n - 1, 0, 5])   # rows out of order within a group
    sums = GroupSums.of(features, groups, PARAMS)
    membership = scipy.sparse.csr_matrix((np.ones(sum(map(len, groups))),
                                          (np.repeat(np.arange(len(groups)), [len(g) for g in groups]),
                                           np.concatenate(groups))), shape=(len(groups), n))
    assert np.array_equal(sums.sums, membership @ vectors.astype(np.float64))
    whole = (membership @ names).tocsr()
    assert (sums.name_sums != whole).nnz == 0 and np.array_equal(sums.name_sums.toarray(), whole.toarray())
    assert np.array_equal(sums.named_count, membership @ features.has_names.astype(np.float64))


def test_pair_blocks_do_not_change_a_similarity(monkeypatch: pytest.MonkeyPatch) -> None:
    """scoring.PAIR_CHUNK only bounds the gathered arrays: edge and group similarities, and the
    groups average linkage makes of them, are the same to the bit in blocks of any size."""
    from clustering import scoring

    rng = np.random.default_rng(12)
    vectors = blobs(40, 12, 48, 0.4, 13)
    n = len(vectors)
    names = scipy.sparse.random(n, 60, density=0.05, random_state=3, format="csr", dtype=np.float32)
    features = StoryFeatures(vectors=vectors, names=names, log_words=rng.uniform(2, 9, n))
    graph = build_graph(vectors, 8)
    heads, tails = graph.edges()
    left, right = rng.integers(0, n, 5000), rng.integers(0, n, 5000)
    sums = GroupSums.of(features, [[i, (i + 7) % n] for i in range(n)], PARAMS)
    results = []
    for chunk in (scoring.PAIR_CHUNK, 65536, 7, 1000):
        monkeypatch.setattr(scoring, "PAIR_CHUNK", chunk)
        results.append((edge_similarity(features, heads, tails, PARAMS), sums.between(left, right),
                        average_linkage(features, heads, tails, PARAMS, np.full(n, -1))))
    for other in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0], other, strict=True))


def test_weights_are_relative() -> None:
    docs = [StoryDoc(i, t, "", None, "s") for i, t in enumerate(  # type: ignore[arg-type]
        ["Quake hits Northvale", "Northvale quake kills 12", "Bank of Eastmarch raises rates", "Rates rise"])]
    vectors = EMBEDDER.embed([d.title for d in docs])
    doubled = replace(PARAMS, embedding_weight=2 * PARAMS.embedding_weight, entity_weight=2 * PARAMS.entity_weight)
    heads, tails = np.array([0, 0, 1, 2]), np.array([1, 2, 3, 3])
    features = story_features(docs, vectors, PARAMS)
    assert np.allclose(edge_similarity(features, heads, tails, PARAMS),
                       edge_similarity(features, heads, tails, doubled))


def test_group_similarity_is_the_average_over_article_pairs() -> None:
    rng = np.random.default_rng(4)
    vectors = blobs(2, 4, 8, 0.3, 4)
    names = scipy.sparse.csr_matrix(np.where(rng.random((8, 5)) < 0.4, rng.random((8, 5)), 0.0), dtype=np.float32)
    norms = np.maximum(np.linalg.norm(names.toarray(), axis=1), 1e-9)
    names = scipy.sparse.csr_matrix(names.multiply(1 / norms[:, None]))
    features = StoryFeatures(vectors=vectors, names=names, log_words=np.zeros(8))
    group, other = [0, 1, 2], [3, 4, 5, 6, 7]
    heads = np.repeat(group, len(other))
    tails = np.tile(other, len(group))
    w_e, w_n = PARAMS.embedding_weight, PARAMS.entity_weight
    named = features.has_names.astype(float)
    embedding = np.einsum("ij,ij->i", vectors[heads], vectors[tails]).mean()
    name_dots = np.asarray(names[heads].multiply(names[tails]).sum(axis=1)).ravel().mean()
    both = (named[heads] * named[tails]).mean()
    expected = (w_e * embedding + w_n * name_dots) / (w_e + w_n * both)
    assert group_similarity(features, group, [other], PARAMS)[0] == pytest.approx(expected, abs=1e-6)


def test_the_merge_threshold_follows_text_length() -> None:
    words = np.array([1, 5, 10, 40, 320, 5000])
    threshold = merge_threshold(np.log2(words), PARAMS)
    assert threshold[0] == threshold[1] and threshold[4] == threshold[5]  # clipped outside 5..320 words
    assert np.all(np.diff(threshold) >= 0)
    share = length_share(np.log2(words))
    probability = SAME_STORY_MODEL.probability(threshold, share)
    assert probability == pytest.approx(np.full(len(words), PARAMS.story_probability))


def test_a_fixed_story_threshold_replaces_the_model() -> None:
    fixed = replace(PARAMS, story_threshold=0.6)
    words = np.log2(np.array([5, 40, 320]))
    assert merge_threshold(words, fixed) == pytest.approx([0.6, 0.6, 0.6])
    higher = similarity_at(0.9, words, fixed)
    assert np.all(higher > 0.6)  # a surer decision asks for more than the fixed cut


# --- average linkage on the graph --------------------------------------------------------------------
@pytest.mark.parametrize(("seed", "cut"), [(1, 0.3), (2, 0.5), (3, 0.7), (4, 0.4)])
def test_average_linkage_on_a_complete_graph_equals_scipy_average_linkage(seed: int, cut: float) -> None:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    vectors = blobs(6, 12, 10, 0.6, seed)
    n = len(vectors)
    heads, tails = np.triu_indices(n, 1)
    ours = linkage_at(vectors, heads, tails, cut)
    distance = np.clip(1.0 - vectors.astype(np.float64) @ vectors.T.astype(np.float64), 0, 2)
    np.fill_diagonal(distance, 0)
    theirs = fcluster(linkage(squareform(distance, checks=False), "average"), t=1 - cut, criterion="distance")
    assert partition(ours) == partition(theirs)
    assert 1 < len(partition(ours)) < n  # the case is not trivial


def test_average_linkage_only_merges_along_edges_and_starts_from_given_groups() -> None:
    vectors = np.repeat(np.eye(4, dtype=np.float32)[:1], 4, axis=0)  # all identical
    features = plain_features(vectors)
    plain = StoryParams(embedding_weight=1.0, entity_weight=0.0)
    no_edges = average_linkage(features, np.array([], dtype=np.int64), np.array([], dtype=np.int64), plain,
                               np.full(4, -1))
    assert no_edges.tolist() == [0, 1, 2, 3]
    chain = average_linkage(features, np.array([0, 2]), np.array([1, 3]), plain, np.full(4, -1))
    assert partition(chain) == {frozenset({0, 1}), frozenset({2, 3})}
    started = average_linkage(features, np.array([0]), np.array([1]), plain, np.array([5, -1, 5, -1]))
    assert partition(started) == {frozenset({0, 1, 2}), frozenset({3})}  # rows 0 and 2 began as one group


# --- dense cores and the neighbour vote ---------------------------------------------------------------
def test_dense_cores_run_per_connected_component() -> None:
    """Two components, each two tight sub-blobs joined by looser edges: a core per sub-blob."""
    rng = np.random.default_rng(7)
    centres = np.zeros((4, 12))
    centres[0, 0] = centres[2, 6] = 1.0
    centres[1, :2] = centres[3, 6:8] = [0.8, 0.6]  # close to 0 / to 2
    rows = np.repeat(centres, 10, axis=0) + 0.03 * rng.normal(size=(40, 12))
    vectors = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    graph = build_graph(vectors, 12)
    heads, tails = graph.edges()
    similarity = np.einsum("ij,ij->i", vectors[heads], vectors[tails])
    keep = similarity >= 0.5  # the two components never touch
    labels = dense_cores(40, heads[keep], tails[keep], similarity[keep], 3)
    found = [set(labels[start:start + 10].tolist()) - {-1} for start in range(0, 40, 10)]
    assert all(found), found  # every dense sub-blob holds a core
    assert all(not (a & b) for i, a in enumerate(found) for b in found[i + 1:])  # no core spans two
    assert sum(len(f) for f in found) <= 6 and (labels >= 0).sum() >= 30  # cores, not crumbs


def _random_component(rng: np.random.Generator) -> scipy.sparse.csr_matrix:
    """A connected kNN distance graph with blobs, rounded so that many distances tie."""
    from scipy.sparse.csgraph import connected_components

    n, k = int(rng.integers(6, 90)), int(rng.integers(2, 7))
    points = rng.standard_normal((n, 4)) * rng.uniform(0.2, 1.0, (n, 1)) + rng.integers(0, 3, (n, 1))
    distance = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    heads = np.repeat(np.arange(n), k)
    tails = np.argsort(distance, axis=1)[:, :k].ravel()
    values = np.round(distance[heads, tails], int(rng.integers(1, 4))) + 1e-6
    graph = scipy.sparse.coo_matrix((np.r_[values, values], (np.r_[heads, tails], np.r_[tails, heads])),
                                    shape=(n, n)).tocsr()
    graph.data = np.minimum(graph.data, 2.0)  # a pair found both ways was summed
    _, component = connected_components(graph, directed=False)
    keep = np.flatnonzero(component == np.bincount(component).argmax())
    return graph[keep][:, keep]


def test_leaves_from_the_tree_equal_hdbscans_own_estimator() -> None:
    """dense_cores calls hdbscan's tree functions directly (the estimator's overhead dominated a
    large window's run); on random graphs with many tied distances the labels are the same."""
    import warnings

    import hdbscan

    from clustering.cluster import _leaves_from_tree

    rng = np.random.default_rng(11)
    compared = 0
    for _ in range(150):
        graph = _random_component(rng)
        if graph.shape[0] < 6:
            continue
        size = int(rng.integers(2, 5))
        estimator = hdbscan.HDBSCAN(metric="precomputed", min_cluster_size=size, min_samples=1,
                                    cluster_selection_method="leaf", allow_single_cluster=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = estimator.fit_predict(graph)
        assert np.array_equal(_leaves_from_tree(graph, size), expected)
        compared += 1
    assert compared > 100


def test_leaves_from_the_tree_load_no_scikit_learn_and_leave_hdbscan_importable() -> None:
    """The tree functions load without the hdbscan package's __init__ (scikit-learn, pandas: 0.9 s of
    a cron run); an ``import hdbscan`` after them works, and its estimator gives the same labels."""
    import subprocess
    import sys

    script = """
import sys, warnings
import numpy as np, scipy.sparse
from clustering.cluster import _leaves_from_tree
rng = np.random.default_rng(3)
distance = rng.random((40, 40)).round(1) + 0.05
distance = scipy.sparse.csr_matrix(np.triu(distance, 1) + np.triu(distance, 1).T)
labels = _leaves_from_tree(distance, 3)
assert "sklearn" not in sys.modules and "hdbscan" not in sys.modules, sorted(sys.modules)
import hdbscan
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    expected = hdbscan.HDBSCAN(metric="precomputed", min_cluster_size=3, min_samples=1,
                               cluster_selection_method="leaf", allow_single_cluster=True).fit_predict(distance)
assert np.array_equal(labels, expected) and np.array_equal(_leaves_from_tree(distance, 3), expected)
assert labels.max() >= 1
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_small_component_is_one_core_and_too_small_is_none() -> None:
    heads, tails = np.array([0, 1, 3]), np.array([1, 2, 4])
    labels = dense_cores(5, heads, tails, np.array([0.9, 0.9, 0.9]), 3)
    assert labels.tolist() == [0, 0, 0, -1, -1]


def test_a_lonely_article_joins_the_group_holding_most_of_its_close_neighbours() -> None:
    heads = np.array([0, 0, 0, 5, 5])
    tails = np.array([1, 2, 3, 1, 4])
    similarity = np.array([0.9, 0.9, 0.9, 0.9, 0.9])
    threshold = np.full(5, 0.5)
    labels: list[int | None] = [None, 7, 7, 8, 8, None]
    joined = attach_by_neighbours(labels, heads, tails, similarity, threshold, min_votes=2)
    assert joined[0] == 7  # 2 of its 3 close neighbours are in group 7 (share 2/3)
    assert joined[5] is None  # one vote each: not clear
    assert pytest.approx(2 / 3) == ATTACH_SHARE
    weak = attach_by_neighbours(labels, heads, tails, np.array([0.4] * 5), threshold, min_votes=2)
    assert weak[0] is None  # neighbours below the threshold do not vote


# --- propose_groups on text ---------------------------------------------------------------------------
def quake(place: str, magnitude: str) -> list[str]:
    return [
        f"Magnitude {magnitude} earthquake hits {place}. Rescue teams in {place} search collapsed buildings.",
        f"Rescue teams search collapsed buildings in {place} after magnitude {magnitude} earthquake.",
        f"{place} earthquake: rescue teams search buildings that collapsed when the {magnitude} quake hit.",
        f"After the {magnitude} earthquake in {place}, rescue teams search collapsed buildings across {place}.",
    ]


def propose(texts: list[str]) -> list[list[int]]:
    docs = [StoryDoc(i, "", text, None, "feed") for i, text in enumerate(texts)]  # type: ignore[arg-type]
    features = story_features(docs, EMBEDDER.embed(texts), PARAMS)
    return propose_groups(features, score_edges(features, build_graph(features.vectors, PARAMS.neighbours),
                                                PARAMS), PARAMS)


def test_two_events_of_one_kind_are_told_apart_by_their_names() -> None:
    texts = quake("Northvale", "6.1") + quake("Southport", "5.4") + ["Pinecrest bakery wins a sourdough award"]
    assert propose(texts) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_without_names_the_same_texts_are_one_story() -> None:
    """Lower-cased text has no names: the embedding alone decides (GoogleNews)."""
    texts = [t.lower() for t in quake("Northvale", "6.1") + quake("Southport", "5.4")]
    assert propose(texts) == [list(range(8))]


def test_propose_groups_of_nothing() -> None:
    assert propose([]) == []


# --- what a desk sees: orphans taken in, weak members dropped, names never lift ---------------------------
def test_an_article_whose_nearest_neighbours_sit_in_one_group_joins_it() -> None:
    vectors = blobs(1, 6, 16, 0.05, seed=3)
    features = plain_features(vectors)
    graph = build_graph(vectors, 5)
    grouped: list[int | None] = [0, 0, 0, 0, 0, None]
    assert adopt_orphans(features, grouped, graph, PARAMS) == [0, 0, 0, 0, 0, 0]
    far = np.vstack([vectors[:5], -vectors[5:]])  # its neighbours are still the group, but nothing like it
    assert adopt_orphans(plain_features(far), grouped, build_graph(far, 5), PARAMS)[5] is None


def test_a_member_that_does_not_hold_with_its_small_group_is_dropped() -> None:
    rng = np.random.default_rng(4)
    base = rng.normal(size=16)
    rows = [base + 0.1 * rng.normal(size=16) for _ in range(4)] + [rng.normal(size=16)]
    vectors = np.asarray([r / np.linalg.norm(r) for r in rows], dtype=np.float32)
    assert trim_groups(plain_features(vectors), [7, 7, 7, 7, 7], PARAMS) == [7, 7, 7, 7, None]


def test_names_tell_articles_apart_but_never_make_them_closer_than_their_embeddings() -> None:
    vectors = np.asarray([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # unrelated texts ...
    names = scipy.sparse.csr_matrix(np.asarray([[1.0], [1.0]], dtype=np.float32))  # ... sharing one name
    features = StoryFeatures(vectors=vectors, names=names, log_words=np.zeros(2))
    assert edge_similarity(features, np.array([0]), np.array([1]), PARAMS)[0] == pytest.approx(0.0)


def _unit(*rows: list[float]) -> np.ndarray:
    matrix = np.asarray(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_wire_copies_count_among_an_orphans_nearest_articles() -> None:
    # the orphan (last row) is nearest to a0, then to two members of B; a0 has two wire copies, so a
    # reader sees three articles of A nearest to it
    vectors = _unit([1, 0.9, 0], [1, 0.5, 0], [1, 0.4, 0.1], [0.9, 1, 0.05], [0.9, 1, -0.05], [0.5, 1, 0], [1, 1, 0])
    grouped: list[int | None] = [0, 0, 0, 3, 3, 3, None]
    graph = build_graph(vectors, 5)
    alone = plain_features(vectors)
    assert adopt_orphans(alone, grouped, graph, PARAMS)[6] is None
    copied = replace(alone, copies=np.asarray([2, 0, 0, 0, 0, 0, 0]))
    assert adopt_orphans(copied, grouped, graph, PARAMS)[6] == 0


def test_an_article_taken_in_brings_in_the_one_whose_nearest_neighbour_it_is() -> None:
    group = [[1, 0.1 * k, 0] for k in range(5)]
    vectors = _unit(*group, [1, 0.25, 0.05], [1, 0.25, 0.12])
    grouped: list[int | None] = [0, 0, 0, 0, 0, None, None]
    features, graph = plain_features(vectors), build_graph(vectors, 5)
    once = adopt_orphans(features, grouped, graph, PARAMS)
    assert once[5] == 0 and once[6] is None   # the second's nearest neighbour was not in a group yet
    assert adopt_orphans_in_rounds(features, grouped, graph, PARAMS) == [0] * 7


def test_a_pair_of_short_texts_needs_a_higher_cosine_than_a_pair_of_full_articles() -> None:
    lead, article = np.log2([30.0]), np.log2([320.0])
    assert pair_min_cosine(lead)[0] == pytest.approx(PAIR_MIN_COSINE_SHORT)
    assert pair_min_cosine(article)[0] == pytest.approx(PAIR_MIN_COSINE)
    assert PAIR_MIN_COSINE < pair_min_cosine(np.log2([90.0]))[0] < PAIR_MIN_COSINE_SHORT
    vectors = _unit([1, 0, 0], [0.6, 0.8, 0], [0, 0, 1], [0, 0.1, 1], [0.1, 0, 1])  # a pair at cosine 0.6
    for words, kept in ((30.0, None), (320.0, 0)):
        features = replace(plain_features(vectors), log_words=np.full(5, np.log2(words)))
        # the third member does not hold with the pair and is dropped; the pair left stays a story or not
        assert trim_groups(features, [0, 0, 0, None, None], PARAMS)[:3] == [kept, kept, None]


def test_a_large_group_that_does_not_hold_together_is_split_into_its_events() -> None:
    events = blobs(3, 4, 32, 0.15, seed=8)       # three tight events, unrelated to each other
    features = plain_features(events)
    heads, tails = build_graph(events, 11).edges()
    split = split_loose_groups(features, [5] * 12, heads, tails, PARAMS)
    assert len({label for label in split if label is not None}) == 3
    for label in set(split):
        rows = [i for i, x in enumerate(split) if x == label]
        assert len(rows) == 4 and float((events[rows] @ events[rows].T).min()) > 0.8
    one_event = blobs(1, 12, 32, 0.15, seed=8)
    heads, tails = build_graph(one_event, 11).edges()
    assert split_loose_groups(plain_features(one_event), [5] * 12, heads, tails, PARAMS) == [5] * 12


def _reciprocal_best_by_sorting(left: np.ndarray, right: np.ndarray, scores: np.ndarray,
                                n: int) -> tuple[np.ndarray, np.ndarray]:
    """cluster._reciprocal_best as it was written before issue 19: a lexsort of every pair."""
    group, partner, score = np.r_[left, right], np.r_[right, left], np.r_[scores, scores]
    order = np.lexsort((partner, -score, group))
    group, partner = group[order], partner[order]
    first = np.r_[True, group[1:] != group[:-1]]
    best = np.full(n, -1, dtype=np.int64)
    best[group[first]] = partner[first]
    candidates = group[first]
    mutual = (best[best[candidates]] == candidates) & (candidates < best[candidates])
    return candidates[mutual], best[candidates[mutual]]


def test_reciprocal_best_pairs_equal_those_of_a_full_sort() -> None:
    from clustering.cluster import _reciprocal_best

    rng = np.random.default_rng(17)
    for trial in range(400):
        n = int(rng.integers(2, 150))
        left, right = rng.integers(0, n, 400), rng.integers(0, n, 400)
        keys = np.unique(np.minimum(left, right) * n + np.maximum(left, right))
        keys = keys[keys // n != keys % n]
        tied = rng.choice([0.1, 0.2, 0.3, 0.0, -0.0, -np.inf], len(keys))
        scores = tied if trial % 2 else rng.random(len(keys))
        ours = _reciprocal_best(keys // n, keys % n, scores, n)
        expected = _reciprocal_best_by_sorting(keys // n, keys % n, scores, n)
        assert all(np.array_equal(a, b) for a, b in zip(ours, expected, strict=True)), trial


def test_dense_cores_equal_those_of_each_component_gathered_on_its_own() -> None:
    """dense_cores slices each component's block from one permuted matrix; the labels are those of
    gathering every component's rows and columns from the whole graph, as it did before issue 19."""
    from scipy.sparse.csgraph import connected_components

    from clustering.cluster import _hdbscan_leaves

    def gathered(n: int, heads: np.ndarray, tails: np.ndarray, similarity: np.ndarray, size: int) -> np.ndarray:
        labels = np.full(n, -1, dtype=np.int64)
        distance = np.clip(1.0 - similarity, 1e-6, 2.0)
        graph = scipy.sparse.coo_matrix((np.r_[distance, distance], (np.r_[heads, tails], np.r_[tails, heads])),
                                        shape=(n, n)).tocsr()
        count, component = connected_components(graph, directed=False)
        sizes = np.bincount(component, minlength=count)
        order, starts, next_label = np.argsort(component, kind="stable"), np.r_[0, np.cumsum(sizes)], 0
        for c in np.flatnonzero(sizes >= size):
            rows = order[starts[c]:starts[c + 1]]
            if len(rows) < 2 * size:
                labels[rows] = next_label
                next_label += 1
                continue
            found = _hdbscan_leaves(graph[rows][:, rows], size)
            labels[rows[found >= 0]] = found[found >= 0] + next_label
            next_label += int(found.max()) + 1 if (found >= 0).any() else 0
        return labels

    rng = np.random.default_rng(23)
    for _ in range(30):
        vectors = blobs(int(rng.integers(3, 12)), int(rng.integers(3, 15)), 16, 0.5, int(rng.integers(1000)))
        graph = build_graph(vectors, int(rng.integers(2, 6)))
        heads, tails = graph.edges()
        similarity = np.round(np.einsum("ij,ij->i", vectors[heads], vectors[tails]), 2)
        keep = similarity > rng.uniform(0.3, 0.8)   # several components
        size = int(rng.integers(2, 4))
        args = (len(vectors), heads[keep], tails[keep], similarity[keep], size)
        assert np.array_equal(dense_cores(*args), gathered(*args))
