"""Fit the "same story?" model: P(same story | hybrid similarity, text length) on article pairs of the
dev corpora, printed as the constants scoring.py ships (``SAME_STORY_MODEL``).

    python bench/calibrate.py [--shared ../shared]

Pairs: every edge of each corpus's neighbour graph (the pairs the engine decides on: each article and
its ``neighbours`` nearest), labelled by the gold story, in ECB+, GoogleNews TS / T / S, ECB+ first
lines (cased posts), ECB+ with unrelated BBC articles, and thinned views of each (seed
``FIT_THIN_SEED``, not the one bench/quality.py scores), plus the English–English SemEval-2022 pairs
of its *train* split (overall ≤ 1.5 same, ≥ 3.5 not; the test split stays a check).  Each corpus
weighs the same in the fit, whatever its number of pairs.  Features: the hybrid similarity s of the
pair (scoring.edge_similarity), the pair's length share L (0 at 5 words, 1 at 320: scoring.length_share)
and s·L, so that the similarity's slope and the threshold both follow length:

    logit P = b0 + b_s·s + b_L·L + b_sL·s·L
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quality import EMBEDDING_CACHE, SEMEVAL, load_corpus, stress_corpora, thin  # noqa: E402

from clustering.config import Config  # noqa: E402
from clustering.corpora import LabelledDoc, split_headline  # noqa: E402
from clustering.embed import article_text, make_embedder  # noqa: E402
from clustering.eval import CachedEmbedder  # noqa: E402

FIT_THIN_SEED = 101
"""Seed of the thinned views fitted on (bench/quality.py scores seed 15)."""


def pair_features(docs: list[LabelledDoc], vectors, pairs: list[tuple[int, int]] | None = None):  # noqa: ANN001, ANN201
    """(features, same) of the graph's edges among ``docs`` (or of the given row pairs): the engine's
    own features, the window being ``docs``."""
    import numpy as np

    from clustering.graph import build_graph
    from clustering.scoring import edge_similarity, length_share
    from clustering.stories import StoryDoc, story_features

    params = Config().stories
    when = datetime(2000, 1, 1, tzinfo=timezone.utc)
    story_docs = [StoryDoc(article_id=i + 1, title=d.title or "", text=d.text, published=when, source="corpus")
                  for i, d in enumerate(docs)]
    features = story_features(story_docs, vectors, params)
    if pairs is None:
        heads, tails = build_graph(np.asarray(vectors, dtype=np.float32), params.neighbours).edges()
    else:
        heads, tails = np.asarray([a for a, _ in pairs]), np.asarray([b for _, b in pairs])
    similarity = edge_similarity(features, heads, tails, params)
    length = (length_share(features.log_words[heads]) + length_share(features.log_words[tails])) / 2
    gold = np.asarray([d.label for d in docs], dtype=object)
    return np.column_stack([similarity, length, similarity * length]), (gold[heads] == gold[tails]).astype(float)


def semeval_train(shared: Path) -> tuple[list[LabelledDoc], list[tuple[int, int]], list[float]]:
    texts: dict[str, str] = {}
    judged = []
    for line in (shared / "datasets" / SEMEVAL).read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line.strip() else None
        if row and row["lang1"] == row["lang2"] == "en":
            first, second = row["pair_id"].split("_")
            texts[first], texts[second] = row["text1"], row["text2"]
            if row["split"] == "train" and (row["overall"] <= 1.5 or row["overall"] >= 3.5):
                judged.append((first, second, row["overall"] <= 1.5))
    keys = sorted(texts)
    row_of = {key: i for i, key in enumerate(keys)}
    docs = [LabelledDoc(text=b, title=t, label=key) for key in keys for t, b in [split_headline(texts[key])]]
    return docs, [(row_of[a], row_of[b]) for a, b, _ in judged], [float(same) for _, _, same in judged]


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args(argv)
    embedder = CachedEmbedder(make_embedder(Config().model), EMBEDDING_CACHE)
    corpora: dict[str, list[LabelledDoc]] = {}
    for name in ("ECB+", "GoogleNews TS", "GoogleNews T", "GoogleNews S"):
        docs = [d for d in load_corpus(args.shared, name) if (d.title or "").strip() or d.text.strip()]
        corpora[name] = docs
        corpora[f"{name}, thinned"] = thin(docs, FIT_THIN_SEED)
    stress = list(stress_corpora(args.shared).items())
    for name, docs in stress[:2]:
        corpora[name.split(" (")[0]] = docs
        corpora[name.split(" (")[0] + ", thinned"] = thin(docs, FIT_THIN_SEED)
    blocks = []
    try:
        for name, docs in corpora.items():
            vectors = embedder.embed([article_text(d.title or "", d.text) for d in docs])
            blocks.append((name, *pair_features(docs, vectors)))
        docs, pairs, same = semeval_train(args.shared)
        vectors = embedder.embed([article_text(d.title or "", d.text) for d in docs])
        features, _ = pair_features(docs, vectors, pairs)
        blocks.append(("SemEval English, train split", features, np.asarray(same)))
    finally:
        embedder.save()
    x = np.vstack([b[1] for b in blocks])
    y = np.concatenate([b[2] for b in blocks])
    weight = np.concatenate([np.full(len(b[2]), len(y) / (len(blocks) * len(b[2]))) for b in blocks])
    model = LogisticRegression(C=100.0, max_iter=5000).fit(x, y, sample_weight=weight)
    b0 = float(model.intercept_[0])
    b_s, b_l, b_sl = (float(v) for v in model.coef_[0])
    print(f"SAME_STORY_MODEL = SameStoryModel(intercept={b0:.3f}, similarity={b_s:.3f}, length={b_l:.3f}, "
          f"similarity_x_length={b_sl:.3f})")
    print("\n| corpus | pairs | same | mean P(same), same pairs | mean P(same), other pairs | accuracy at P = 0.5 |")
    print("|---|---|---|---|---|---|")
    for name, features, labels in blocks:
        p = model.predict_proba(features)[:, 1]
        print(f"| {name} | {len(labels)} | {labels.mean():.0%} | {p[labels == 1].mean():.2f} | "
              f"{p[labels == 0].mean():.2f} | {((p >= 0.5) == (labels == 1)).mean():.3f} |")
    for length in (0.0, 0.5, 1.0):
        for probability in (0.3, 0.5, 0.7):
            z = np.log(probability / (1 - probability))
            print(f"length share {length}: P = {probability} at similarity "
                  f"{(z - b0 - b_l * length) / (b_s + b_sl * length):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
