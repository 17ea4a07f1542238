"""Clustering and duplicate-detection metrics, pure over label sequences.

Every function takes a gold labelling and a predicted labelling of the same
documents, in the same order.  Labels are any hashable values.  ``None`` in a
prediction means "unassigned" (HDBSCAN noise, a document no story took) and
counts as a cluster of its own: an unassigned document is a singleton, never
grouped with the other unassigned ones.  ``None`` in a gold labelling is read
the same way (a document that belongs to no event).

Conventions for empty denominators, chosen so that the degenerate clusterings
score the way the literature reports them:

* pairwise precision with no predicted pairs (all singletons) is 1.0: the
  prediction made no claim that could be wrong;
* pairwise recall with no gold pairs is 1.0: there was nothing to find;
* F1 is 0.0 when precision and recall are both 0.0.

B-cubed and pairwise counts come from the contingency table of (predicted,
gold) label pairs, so they cost O(n), not O(n²).  scikit-learn is imported only
inside :func:`ari` and :func:`ami`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

__all__ = [
    "ami",
    "ari",
    "bcubed",
    "cluster_scores",
    "grab_bags",
    "id_churn",
    "orphan_rate",
    "pair_prf",
    "pairwise_prf",
]


def _codes(labels: Sequence[Hashable | None]) -> np.ndarray:
    """Integer codes for ``labels``; every ``None`` gets a code of its own."""
    code_of: dict[Hashable, int] = {}
    codes = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        if label is None:
            codes[i] = -1 - i  # negative: never a label's code, unique per position
        else:
            codes[i] = code_of.setdefault(label, len(code_of))
    # Make the codes dense (0..k-1) so that bincount-style uses stay small.
    _, dense = np.unique(codes, return_inverse=True)
    return dense.astype(np.int64)


def _check(gold: Sequence[Hashable | None], pred: Sequence[Hashable | None]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} labels but pred has {len(pred)}")
    if len(gold) == 0:
        raise ValueError("cannot score an empty labelling")


def _contingency(
    gold: Sequence[Hashable | None], pred: Sequence[Hashable | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cell sizes with their gold and predicted cluster ids, and the cluster sizes."""
    _check(gold, pred)
    gold_codes, pred_codes = _codes(gold), _codes(pred)
    gold_sizes = np.bincount(gold_codes)
    pred_sizes = np.bincount(pred_codes)
    cells = gold_codes * len(pred_sizes) + pred_codes
    cell_ids, cell_sizes = np.unique(cells, return_counts=True)
    cell_gold, cell_pred = np.divmod(cell_ids, len(pred_sizes))
    return cell_sizes, cell_gold, cell_pred, gold_sizes, pred_sizes


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 0.0 if total == 0 else 2 * precision * recall / total


def bcubed(
    gold: Sequence[Hashable | None], pred: Sequence[Hashable | None]
) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 (Bagga & Baldwin 1998; Amigó et al. 2009).

    For document ``i`` with predicted cluster ``C`` and gold cluster ``G``,
    precision_i = |C ∩ G| / |C| and recall_i = |C ∩ G| / |G|; both are averaged
    over documents.  Summed per contingency cell of size ``n``, the cell's ``n``
    documents contribute ``n * n / |C|`` to the precision sum.
    """
    cell_sizes, cell_gold, cell_pred, gold_sizes, pred_sizes = _contingency(gold, pred)
    squared = cell_sizes.astype(np.float64) ** 2
    n = len(gold)
    precision = float(np.sum(squared / pred_sizes[cell_pred]) / n)
    recall = float(np.sum(squared / gold_sizes[cell_gold]) / n)
    return precision, recall, _f1(precision, recall)


def _pairs(sizes: np.ndarray) -> int:
    sizes = sizes.astype(np.int64)
    return int(np.sum(sizes * (sizes - 1) // 2))


def pairwise_prf(
    gold: Sequence[Hashable | None], pred: Sequence[Hashable | None]
) -> tuple[float, float, float]:
    """Precision, recall and F1 over all unordered document pairs.

    A pair is predicted positive when both documents share a predicted
    cluster and gold positive when they share a gold cluster.  Counted from the
    contingency table: true positives = Σ C(n_cell, 2).  No predicted pairs
    gives precision 1.0, no gold pairs gives recall 1.0 (module docstring).
    """
    cell_sizes, _, _, gold_sizes, pred_sizes = _contingency(gold, pred)
    true_pairs = _pairs(cell_sizes)
    pred_pairs = _pairs(pred_sizes)
    gold_pairs = _pairs(gold_sizes)
    precision = true_pairs / pred_pairs if pred_pairs else 1.0
    recall = true_pairs / gold_pairs if gold_pairs else 1.0
    return precision, recall, _f1(precision, recall)


def ari(gold: Sequence[Hashable | None], pred: Sequence[Hashable | None]) -> float:
    """Adjusted Rand index (scikit-learn); ``None`` labels are singletons."""
    from sklearn.metrics import adjusted_rand_score

    _check(gold, pred)
    return float(adjusted_rand_score(_codes(gold), _codes(pred)))


def ami(gold: Sequence[Hashable | None], pred: Sequence[Hashable | None]) -> float:
    """Adjusted mutual information (scikit-learn, arithmetic normalisation)."""
    from sklearn.metrics import adjusted_mutual_info_score

    _check(gold, pred)
    return float(adjusted_mutual_info_score(_codes(gold), _codes(pred)))


def cluster_scores(
    gold: Sequence[Hashable | None], pred: Sequence[Hashable | None]
) -> dict[str, float]:
    """All clustering scores at once, for a benchmark table row.

    ``n_clusters`` counts the distinct non-``None`` predicted labels (a label
    held by a single document counts; unassigned documents do not), and
    ``unassigned`` is the fraction of ``None`` predictions.
    """
    b3_p, b3_r, b3_f = bcubed(gold, pred)
    pair_p, pair_r, pair_f = pairwise_prf(gold, pred)
    labels = [label for label in pred if label is not None]
    return {
        "b3_precision": b3_p,
        "b3_recall": b3_r,
        "b3_f1": b3_f,
        "pair_precision": pair_p,
        "pair_recall": pair_r,
        "pair_f1": pair_f,
        "ari": ari(gold, pred),
        "ami": ami(gold, pred),
        "n_clusters": len(set(labels)),
        "unassigned": (len(pred) - len(labels)) / len(pred),
    }


def pair_prf(
    gold_pairs: set[frozenset[int]], pred_pairs: set[frozenset[int]]
) -> tuple[float, float, float]:
    """Precision, recall and F1 of predicted duplicate pairs against gold pairs.

    Pairs are ``frozenset({i, j})`` of document indices.  An empty prediction
    has precision 1.0 and an empty gold set recall 1.0, as in
    :func:`pairwise_prf`.
    """
    true_pairs = len(gold_pairs & pred_pairs)
    precision = true_pairs / len(pred_pairs) if pred_pairs else 1.0
    recall = true_pairs / len(gold_pairs) if gold_pairs else 1.0
    return precision, recall, _f1(precision, recall)


def id_churn(history: Sequence[Sequence[Hashable | None]]) -> float:
    """Fraction of documents whose story id, once given, later changed.

    ``history[t][i]`` is the story id of document ``i`` after run ``t``;
    ``None`` means not yet seen or unassigned.  Rows may grow as documents
    arrive: a position past the end of a row is read as ``None``.  A document
    churns when, after first receiving an id, a later run gives it a different
    id or takes its id away (``None``).  The denominator is the number of
    documents that ever received an id; with none, churn is 0.0.
    """
    n_docs = max((len(row) for row in history), default=0)
    assigned = churned = 0
    for i in range(n_docs):
        current: Hashable | None = None
        ever_assigned = changed = False
        for row in history:
            story_id = row[i] if i < len(row) else None
            if ever_assigned and story_id != current:
                changed = True
                break
            if story_id is not None:
                current, ever_assigned = story_id, True
        assigned += ever_assigned
        churned += changed
    return churned / assigned if assigned else 0.0


def headline_churn(history: Sequence[Mapping[str, str]]) -> float:
    """Share of headline changes among stories that carry over from one run to the next.

    ``history[t]`` maps each story id to its headline after run ``t``.  Every story present
    after two consecutive runs is one comparison; it counts as a change when its headline
    differs.  With no comparison, 0.0."""
    compared = changed = 0
    for before, after in zip(history, history[1:], strict=False):
        for story_id, headline in after.items():
            if story_id in before:
                compared += 1
                changed += before[story_id] != headline
    return changed / compared if compared else 0.0


GRAB_BAG_MIN_SIZE = 3
"""Predicted stories of this many members or more are judged for :func:`grab_bags`."""

GRAB_BAG_SHARE = 2 / 3
"""A judged story is a grab-bag when its largest gold story holds less than this share of it."""


def grab_bags(gold: Sequence[Hashable | None], pred: Sequence[Hashable | None]) -> tuple[int, int]:
    """(grab-bags, judged stories): among the predicted stories of ``GRAB_BAG_MIN_SIZE`` or more
    members, those whose largest gold story holds less than ``GRAB_BAG_SHARE`` of them.  A gold
    ``None`` (a document of no event) is a gold story of its own, as in :func:`bcubed`."""
    _check(gold, pred)
    members: dict[Hashable, list[int]] = {}
    for i, label in enumerate(pred):
        if label is not None:
            members.setdefault(label, []).append(i)
    gold_codes = _codes(gold)
    judged = bags = 0
    for rows in members.values():
        if len(rows) < GRAB_BAG_MIN_SIZE:
            continue
        judged += 1
        largest = int(np.bincount(gold_codes[rows]).max())
        bags += largest < GRAB_BAG_SHARE * len(rows)
    return bags, judged


def orphan_rate(pred: Sequence[Hashable | None], neighbours: np.ndarray) -> float:
    """Share of unassigned documents (``None``) whose nearest neighbours (``neighbours[i]``: the
    rows nearest to ``i``, best first, −1 for none; the first three are read) all sit in one story:
    an article its neighbours place in a story, left in none.  0.0 when nothing is unassigned."""
    unassigned = [i for i, label in enumerate(pred) if label is None]
    if not unassigned:
        return 0.0
    orphans = 0
    for i in unassigned:
        near = [int(j) for j in neighbours[i][:3] if j >= 0]
        stories = {pred[j] for j in near}
        orphans += len(near) == 3 and len(stories) == 1 and None not in stories
    return orphans / len(unassigned)
