"""graph.py: exact k-nearest-neighbour lists, edges."""

from __future__ import annotations

import numpy as np
import pytest

from clustering.graph import NeighbourGraph, build_graph, update_graph


def unit_rows(count: int, dimension: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_neighbours_are_the_exact_nearest_rows_best_first(seed: int) -> None:
    vectors = unit_rows(300, 16, seed)
    graph = build_graph(vectors, 7)
    cosine = vectors @ vectors.T
    np.fill_diagonal(cosine, -np.inf)
    expected = np.argsort(-cosine, axis=1, kind="stable")[:, :7]
    assert graph.neighbours.shape == (300, 7)
    assert np.array_equal(np.sort(graph.neighbours, axis=1), np.sort(expected, axis=1))
    assert np.allclose(graph.similarity, np.take_along_axis(cosine, graph.neighbours, axis=1), atol=1e-5)
    assert np.all(np.diff(graph.similarity, axis=1) <= 1e-6)  # best first
    assert not np.any(graph.neighbours == np.arange(300)[:, None])  # never itself


def test_ties_are_broken_by_row_so_the_graph_is_reproducible() -> None:
    vectors = np.repeat(unit_rows(1, 8, 5), 6, axis=0)  # six identical rows: every cosine ties
    graph = build_graph(vectors, 3)
    assert graph.neighbours[0].tolist() == [1, 2, 3]
    assert graph.neighbours[4].tolist() == [0, 1, 2]
    assert np.array_equal(build_graph(vectors, 3).neighbours, graph.neighbours)


def test_small_windows() -> None:
    assert build_graph(np.zeros((0, 4), dtype=np.float32), 5).size == 0
    single = build_graph(unit_rows(1, 4, 1), 5)
    assert single.neighbours.shape == (1, 0) and single.edges()[0].size == 0
    pair = build_graph(unit_rows(2, 4, 1), 5)  # k is cut to what exists
    assert pair.neighbours.tolist() == [[1], [0]]


def test_edges_are_undirected_unique_and_skip_padding() -> None:
    graph = NeighbourGraph(np.array([[1, 2], [0, -1], [0, 1]]), np.zeros((3, 2), dtype=np.float32))
    heads, tails = graph.edges()
    assert list(zip(heads.tolist(), tails.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2)]


def test_ties_go_to_the_smaller_article_id_not_the_row() -> None:
    vectors = np.repeat(unit_rows(1, 8, 5), 4, axis=0)
    graph = build_graph(vectors, 2, ids=np.array([40, 30, 20, 10]))
    assert graph.neighbours[0].tolist() == [3, 2]  # ids 10 and 20


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_an_updated_graph_equals_a_rebuilt_one(seed: int) -> None:
    """Articles leave the window, others arrive; some vectors repeat exactly (wire copies),
    so ties are decided too.  The update searches only what it must and gives the same lists."""
    rng = np.random.default_rng(seed)
    pool = unit_rows(900, 12, seed)
    pool[rng.choice(900, 60, replace=False)] = pool[rng.choice(900, 60, replace=False)]  # exact repeats
    ids = np.arange(1000, 1900)
    before = np.sort(rng.choice(900, 600, replace=False))
    previous = build_graph(pool[before], 6, ids[before])
    leaving = rng.random(600) < 0.1
    staying = before[~leaving]
    arriving = np.setdiff1d(np.arange(900), before)[:150]
    after = np.sort(np.r_[staying, arriving])
    updated, searched = update_graph(ids[before], previous, ids[after], pool[after], 6)
    rebuilt = build_graph(pool[after], 6, ids[after])
    assert np.array_equal(updated.neighbours, rebuilt.neighbours)
    assert np.array_equal(updated.similarity, rebuilt.similarity)
    assert 150 <= searched < len(after)  # the new rows and those that lost a neighbour, not all


def test_an_update_with_nothing_new_changes_nothing() -> None:
    vectors = unit_rows(50, 8, 9)
    ids = np.arange(50) * 3
    graph = build_graph(vectors, 5, ids)
    same, searched = update_graph(ids, graph, ids, vectors, 5)
    assert searched == 0
    assert np.array_equal(same.neighbours, graph.neighbours) and np.array_equal(same.similarity, graph.similarity)


def test_the_graph_does_not_depend_on_faiss_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """FAISS's scores round differently on one thread and on two; the lists are chosen by exact
    cosine, so a search on fewer threads (a busy machine: graph.search_threads) gives the same graph."""
    import faiss

    from clustering import graph as graph_module

    vectors = unit_rows(6000, 32, 9)
    vectors[1000:1100] = vectors[2000:2100]  # exact ties too
    built = {}
    for threads in (1, 2):
        monkeypatch.setattr(graph_module, "search_threads", lambda _before, threads=threads: threads)
        built[threads] = build_graph(vectors, 10)
    assert np.array_equal(built[1].neighbours, built[2].neighbours)
    assert np.array_equal(built[1].similarity, built[2].similarity)
    before = faiss.omp_get_max_threads()
    build_graph(vectors[:50], 5)
    assert faiss.omp_get_max_threads() == before  # restored after the search


def test_search_threads_leave_the_busy_cores_alone() -> None:
    from clustering.graph import search_threads

    assert search_threads(2, load=2.3) == 1 and search_threads(4, load=0.0) <= 4
    assert search_threads(1, load=0.0) == 1 and search_threads(8, load=100.0) == 1


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_faiss_loads_with_passive_threads_and_leaves_the_environment_as_it_was(preset: str | None) -> None:
    """graph.import_faiss sets OMP_WAIT_POLICY only while faiss loads, and never over a user's value."""
    import os
    import subprocess
    import sys

    script = """
import os, sys
from clustering.graph import import_faiss
faiss = import_faiss()
assert "faiss" in sys.modules and import_faiss() is faiss
print(os.environ.get("OMP_WAIT_POLICY"))
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(preset)


def clustered_rows(count: int, dimension: int, seed: int) -> np.ndarray:
    """Rows around a few dozen centres (stories), some repeated exactly (copies)."""
    rng = np.random.default_rng(seed)
    centres = unit_rows(40, dimension, seed + 100)
    rows = centres[rng.integers(0, 40, count)] + 0.6 * rng.normal(size=(count, dimension)) / np.sqrt(dimension)
    rows[rng.choice(count, count // 20, replace=False)] = rows[rng.choice(count, count // 20, replace=False)]
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed", [1, 2])
def test_window_pairs_hold_every_row_above_each_lists_last(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each list is the best rows of its row, best first: every row at or above the floor, and every
    row above the list's last; blocks of any size and compactions on the way give the same lists."""
    from clustering import graph
    from clustering.graph import window_pairs

    vectors = clustered_rows(700, 24, seed)
    pairs = window_pairs(vectors, 12, 0.8)
    assert pairs is not None and pairs.size == 700
    cosine = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    np.fill_diagonal(cosine, -np.inf)
    for row in range(700):
        listed = pairs.rows[pairs.starts[row]:pairs.starts[row + 1]]
        scores = pairs.scores[pairs.starts[row]:pairs.starts[row + 1]]
        assert row not in listed and len(set(listed.tolist())) == len(listed)
        assert np.all(np.diff(scores) <= 0)
        assert np.allclose(scores, cosine[row, listed], atol=1e-5)
        assert set(np.flatnonzero(cosine[row] >= 0.8 + 1e-5)) <= set(listed.tolist())
        if len(listed):
            assert set(np.flatnonzero(cosine[row] > scores[-1] + 1e-5)) <= set(listed.tolist())
    monkeypatch.setattr(graph, "PAIR_BLOCK_ROWS", 64)
    monkeypatch.setattr(graph, "PAIR_COMPACT_ENTRIES", 1000)
    again = window_pairs(vectors, 12, 0.8)
    assert again is not None
    assert np.array_equal(again.starts, pairs.starts) and np.array_equal(again.rows, pairs.rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_graph_from_the_window_pairs_equals_the_searched_one(seed: int) -> None:
    """build_graph takes each row's candidates from the pairs (restricted to the rows kept, as a
    first run keeps the canonical articles), searching the rows left with too few: the same lists."""
    from clustering.graph import window_pairs

    vectors = clustered_rows(800, 24, seed)
    pairs = window_pairs(vectors, 24, 0.9)
    assert pairs is not None
    keep = np.flatnonzero(np.random.default_rng(seed).random(800) > 0.1)
    ids = np.arange(5000, 5800)[keep]
    restricted = pairs.restricted(keep)
    assert (np.diff(restricted.starts) < 6 + 8).any()      # some rows are searched again
    searched = build_graph(vectors[keep], 6, ids)
    paired = build_graph(vectors[keep], 6, ids, pairs=restricted)
    assert np.array_equal(paired.neighbours, searched.neighbours)
    assert np.array_equal(paired.similarity, searched.similarity)


def test_restricted_pairs_drop_the_rows_left_out() -> None:
    from clustering.graph import WindowPairs

    pairs = WindowPairs(np.array([0, 2, 4, 5]), np.array([2, 1, 2, 0, 1]),
                        np.array([0.9, 0.8, 0.95, 0.8, 0.95], dtype=np.float32), 0.5)
    kept = pairs.restricted(np.array([1, 2]))
    assert kept.starts.tolist() == [0, 1, 2] and kept.rows.tolist() == [1, 0]
    assert kept.scores.tolist() == pytest.approx([0.95, 0.95])


def test_window_pairs_give_way_where_the_window_is_too_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    from clustering import graph
    from clustering.graph import window_pairs

    vectors = clustered_rows(500, 24, 4)
    assert window_pairs(vectors, 8, 0.9) is not None
    monkeypatch.setattr(graph, "PAIR_MAX_PER_ROW", 5)
    assert window_pairs(vectors, 8, 0.9) is None
    assert window_pairs(vectors[:5], 8, 0.9) is None        # fewer rows than a list


def test_window_pairs_of_some_rows_leave_the_others_out() -> None:
    from clustering.graph import window_pairs

    vectors = clustered_rows(600, 24, 5)
    rows = np.flatnonzero(np.arange(600) % 7 != 3)
    some = window_pairs(vectors, 10, 0.85, rows=rows)
    alone = window_pairs(vectors[rows], 10, 0.85)
    assert some is not None and alone is not None and some.size == 600
    assert np.array_equal(some.rows, rows[alone.rows]) and np.array_equal(some.scores, alone.scores)
    assert np.array_equal(np.diff(some.starts)[rows], np.diff(alone.starts))
    assert not np.diff(some.starts)[np.arange(600) % 7 == 3].any() and not np.isin(some.rows, np.arange(3, 600, 7)).any()
