"""Seeded, labelled near-duplicate benchmark built from real news articles.

    python bench/neardup.py --out /tmp/neardup.jsonl [--seed 13] [--shared DIR]

Originals are every ECB+ article plus BBC articles; a sample of them gets 1–3
synthetic copies made the way wire copy reaches feeds (new headline, cut lead,
outlet boilerplate, light edits, moved paragraphs, HTML).  Each output line is
{"id", "title", "text", "group", "event", "corpus", "transforms",
"ambiguous_with"}: documents of one ``group`` are copies of one article,
``event`` is the ECB+ subtopic (BBC: the group's id).  Different articles of
one ECB+ event are the hard negatives: same event, not duplicates.  An ECB+
text whose first line is a sentence (most pre-2014 ECB texts) has no headline:
its title is "".

Both corpora already hold real copies: ECB+ has one AP story reprinted and
re-edited by several outlets, BBC has 98 identical texts and ~85 lightly
updated reprints.  Originals whose 5-gram containment reaches
NATURAL_COPY_CONTAINMENT are put in one group ("natural_exact" /
"natural_near"); pairs in the grey zone below it are listed in
``ambiguous_with`` and are neither duplicates nor hard negatives.

Deterministic for a seed: only ``random.Random(seed)`` draws, inputs read in
file order, no iteration over sets of strings.
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from random import Random

ECB_PATH = "datasets/ecbplus-cybulska2014/ecbplus_docs.jsonl"
BBC_PATH = "datasets/bbc-news-greene2006/bbc_fulltext.jsonl"

BBC_SAMPLE = 300
"""BBC originals sampled besides those in natural duplicate groups."""
COPY_FRACTION = 0.35
"""Share of groups whose original gets 1–3 synthetic copies."""
NATURAL_COPY_CONTAINMENT = 0.5
"""Word 5-gram containment |A∩B|/min(|A|,|B|) at which two source articles are one article.

Inspected on ECB+: pairs at 0.45–0.6 are one AP story re-edited by outlets
(Klitschko–Thompson), pairs under 0.4 are different articles sharing quotes
(DeGeneres/Oscars).  BBC pairs above 0.5 are reprints updated with a paragraph."""
AMBIGUOUS_CONTAINMENT = 0.2
"""Pairs from here up to NATURAL_COPY_CONTAINMENT share long passages: no gold label."""
MIN_TRUNCATED_WORDS = 30
"""A cut copy keeps at least this many words, so a lead is not reduced to a dateline."""

OUTLETS = ["AP", "Reuters", "AFP", "Bloomberg", "UPI"]
CITIES = ["LONDON", "WASHINGTON", "NEW YORK", "LOS ANGELES", "PARIS", "SYDNEY", "BERLIN"]
AUTHORS = ["Jane Doe", "John Smith", "Maria Garcia", "David Chen", "Sarah Okafor"]
ROLES = ["Staff Writer", "Associated Press", "Senior Correspondent", "Reuters"]
FOOTERS = [
    "Read more…",
    "Copyright 2026 The Associated Press. All rights reserved. This material may not "
    "be published, broadcast, rewritten or redistributed.",
    "© Thomson Reuters 2026. All rights reserved.",
    "Follow us on Twitter and Facebook for the latest news.",
    "Related: more stories on this topic",
]
TITLE_SUFFIXES = [" | Reuters", " - BBC News", " — The Guardian", " - ABC News", " : NPR"]
HEADLINE_SWAPS = {
    "says": "said", "said": "says", "after": "following", "over": "about",
    "new": "latest", "killed": "slain", "rises": "climbs", "falls": "drops", "hits": "strikes",
    "wins": "takes", "big": "major", "plans": "proposes", "quits": "resigns",
    "U.S.": "US", "US": "U.S.", "and": "&",
}
MINOR_WORDS = {"a", "an", "the", "in", "of", "on", "to", "for", "at", "by", "with", "and"}
SPELLINGS = {
    "colour": "color", "centre": "center", "organisation": "organization",
    "programme": "program", "defence": "defense", "labour": "labor", "favour": "favor",
    "realise": "realize", "analyse": "analyze", "travelled": "traveled",
    "theatre": "theater", "criticised": "criticized", "recognised": "recognized",
    "apologised": "apologized", "honour": "honor", "neighbours": "neighbors",
    "per cent": "percent", "cheque": "check", "tyres": "tires", "licence": "license",
}
SPELLING_SWAP = {**SPELLINGS, **{us: gb for gb, us in SPELLINGS.items()}}
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

Doc = dict[str, object]


# ---- transformations: (title, paragraphs, rng) -> (title, paragraphs) ----------

def headline_reword(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    words = title.split()
    if not words:
        return title, paras
    swappable = [i for i, word in enumerate(words) if word in HEADLINE_SWAPS]
    for i in rng.sample(swappable, min(len(swappable), 2)):
        words[i] = HEADLINE_SWAPS[words[i]]
    words = [w for w in words if w.lower() not in ("the", "a", "an") or rng.random() < 0.5]
    new = " ".join(words)
    head, found, tail = new.partition(": ")  # clause order is the subeditor's choice
    if found and head.strip() and tail.strip() and rng.random() < 0.7:
        new = f"{tail.strip()}: {head.strip()}"
    if new == title:  # outlets differ in headline case: Title Case vs AP style
        new = " ".join(w[:1].upper() + w[1:] for w in new.split())
    if new == title:
        new = " ".join([new.split()[0]] + [w.lower() if w.lower() in MINOR_WORDS else w
                                           for w in new.split()[1:]])
    return new, paras


def headline_from_sentence(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    sentences = _sentences(" ".join(paras[:2]))[:2]  # the lead, not a quote further down
    short = [s for s in sentences if 6 <= len(s.split()) <= 16]
    if short:
        return rng.choice(short).rstrip("."), paras
    clauses = [c for s in sentences for c in [s.split(",")[0]] if 5 <= len(c.split()) <= 16]
    if not clauses:
        return title, paras
    return rng.choice(clauses).rstrip("."), paras


def truncate(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    units = paras if len(paras) > 1 else _sentences(paras[0]) if paras else []
    keep = rng.randint(1, 3)
    while keep < len(units) and sum(len(u.split()) for u in units[:keep]) < MIN_TRUNCATED_WORDS:
        keep += 1
    if keep >= len(units):
        return title, paras
    return title, units[:keep] if len(paras) > 1 else [" ".join(units[:keep])]


def paragraph_reorder(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    if len(paras) < 4:
        return title, paras
    tail = paras[1:]
    moved = tail.pop(rng.randrange(len(tail)))
    tail.insert(rng.randrange(len(tail) + 1), moved)
    return title, [paras[0], *tail]


def dateline(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    outlet = rng.choice(OUTLETS)
    prefix = rng.choice([f"({outlet}) — ", f"{rng.choice(CITIES)} ({outlet}) - "])
    return title, [prefix + paras[0], *paras[1:]]


def byline(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    return title, [f"By {rng.choice(AUTHORS)}, {rng.choice(ROLES)}", *paras]


def timestamp(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    stamp = f"Updated at {rng.randrange(24):02d}:{rng.randrange(60):02d} GMT"
    return title, [stamp, *paras] if rng.random() < 0.5 else [*paras, stamp]


def footer(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    return title, [*paras, rng.choice(FOOTERS)]


def title_suffix(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    return title + rng.choice(TITLE_SUFFIXES), paras


def word_edits(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    edited = []
    for para in paras:
        words = para.split()
        for _ in range(sum(rng.random() < 0.25 for _ in range(3)) if len(words) > 8 else 0):
            i = rng.randrange(1, len(words) - 1)
            if rng.random() < 0.5:
                del words[i]
            else:
                words[i], words[i + 1] = words[i + 1], words[i]
        edited.append(" ".join(words))
    return title, edited


def number_format(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    def reformat(match: re.Match[str]) -> str:
        digits = match.group(0)
        if "," in digits:
            return digits.replace(",", "")
        if len(digits) == 1 and rng.random() < 0.7:
            return NUMBER_WORDS[int(digits)]
        if len(digits) >= 4 and not (1900 <= int(digits) <= 2030):
            return f"{int(digits):,}"
        return digits

    def units(text: str) -> str:
        text = re.sub(r"(\d)%", r"\1 percent", text)
        text = re.sub(r"\$(\d+(?:\.\d+)?)bn\b", r"$\1 billion", text)
        return re.sub(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+\b", reformat, text)

    return title, [units(para) for para in paras]


def spelling_variant(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, SPELLING_SWAP)) + r")\b",
                         re.IGNORECASE)

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        new = SPELLING_SWAP[word.lower()]
        return new.capitalize() if word[0].isupper() else new

    return pattern.sub(swap, title), [pattern.sub(swap, para) for para in paras]


def html_wrap(title: str, paras: list[str], rng: Random) -> tuple[str, list[str]]:
    wrapped = []
    for para in paras:
        text = html.escape(para, quote=False)
        names = re.findall(r"\b[A-Z][a-z]{3,}\b", text)
        if names and rng.random() < 0.5:
            name = rng.choice(names)
            link = f'<a href="https://example.com/tag/{name.lower()}">{name}</a>'
            text = text.replace(name, link, 1)
        wrapped.append(f"<p>{text}</p>")
    return html.escape(title, quote=False), wrapped


Transform = Callable[[str, list[str], Random], tuple[str, list[str]]]
HEADLINES: list[Transform] = [headline_reword, headline_from_sentence]
BOILERPLATE: list[Transform] = [dateline, byline, timestamp, footer]
EDITS: list[Transform] = [word_edits, number_format, spelling_variant]


def _sentences(text: str) -> list[str]:
    # Not after an initial or a title: "U. S. Geological", "Mr. Smith".
    boundary = r"(?<!\b[A-Z]\.)(?<!Mr\.)(?<!Ms\.)(?<!Dr\.)(?<!St\.)(?<=[.!?])\s+(?=[A-Z\"“])"
    return [s for s in re.split(boundary, text.strip()) if s]


def make_copy(title: str, paras: list[str], rng: Random) -> tuple[str, list[str], list[str]]:
    """One synthetic copy; returns title, paragraphs and the transforms that changed it."""
    plan: list[Transform] = []
    if rng.random() < 0.6:
        plan.append(rng.choice(HEADLINES))
    if rng.random() < 0.35:
        plan.append(truncate)
    if rng.random() < 0.2:
        plan.append(paragraph_reorder)
    if rng.random() < 0.5:
        plan.extend(rng.sample(EDITS, rng.randint(1, 2)))
    if rng.random() < 0.6:
        plan.extend(rng.sample(BOILERPLATE, rng.randint(1, 2)))
    if rng.random() < 0.2:
        plan.append(title_suffix)
    if rng.random() < 0.2:
        plan.append(html_wrap)
    applied = []
    for transform in plan or [dateline]:
        new_title, new_paras = transform(title, paras, rng)
        if (new_title, new_paras) != (title, paras):
            applied.append(transform.__name__)
        title, paras = new_title, new_paras
    if not applied:
        title, paras = footer(title, paras, rng)
        applied.append("footer")
    return title, paras, applied


# ---- originals and their natural copies -------------------------------------------

def _shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + 5]) for i in range(len(words) - 4)}


def _containments(texts: list[str]) -> dict[tuple[int, int], float]:
    """Containment of every pair of texts sharing a 5-gram (index pairs i < j)."""
    shingles = [_shingles(text) for text in texts]
    postings: defaultdict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, doc_shingles in enumerate(shingles):
        for shingle in doc_shingles:
            postings[shingle].append(i)
    shared: Counter[tuple[int, int]] = Counter()
    for docs in postings.values():
        if len(docs) <= 50:  # very common 5-grams are boilerplate, not copying
            shared.update(itertools.combinations(docs, 2))
    return {pair: count / min(len(shingles[pair[0]]), len(shingles[pair[1]]))
            for pair, count in shared.items()}


def _natural_groups(texts: list[str]) -> tuple[list[int], dict[int, set[int]]]:
    """Union-find root per text, and grey-zone partners per root."""
    root = list(range(len(texts)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    containments = _containments(texts)
    for (i, j), value in sorted(containments.items()):
        if value >= NATURAL_COPY_CONTAINMENT:
            a, b = sorted((find(i), find(j)))
            root[b] = a
    roots = [find(i) for i in range(len(texts))]
    grey: defaultdict[int, set[int]] = defaultdict(set)
    for (i, j), value in containments.items():
        if AMBIGUOUS_CONTAINMENT <= value and roots[i] != roots[j]:
            grey[roots[i]].add(roots[j])
            grey[roots[j]].add(roots[i])
    return roots, grey


def _ecb_headline(text: str) -> tuple[str, str]:
    """ECB+ (2014) texts open with a headline line; most older ECB texts open with the lead."""
    first, _, rest = text.strip().partition("\n")
    first = first.strip()
    if not rest.strip() or len(first) >= 200 or first.endswith((".", '."', ".”")):
        return "", text.strip()
    return first, rest.strip()


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _originals(shared_dir: Path, rng: Random) -> list[Doc]:
    ecb = []
    for row in _read_jsonl(shared_dir / ECB_PATH):
        title, body = _ecb_headline(str(row["text"]))
        ecb.append({"id": str(row["doc_id"]), "title": title, "text": body,
                    "event": str(row["subtopic"]), "corpus": "ecb", "sep": "\n"})
    bbc = []
    for row in _read_jsonl(shared_dir / BBC_PATH):
        body = str(row["text"]).strip()
        if body.startswith(str(row["title"])):
            body = body[len(str(row["title"])):].strip()
        bbc.append({"id": str(row["id"]), "title": str(row["title"]), "text": body,
                    "corpus": "bbc", "sep": "\n\n"})
    bbc_roots, _ = _natural_groups([f"{d['title']}\n{d['text']}" for d in bbc])
    in_group = Counter(bbc_roots)
    singles = [i for i, r in enumerate(bbc_roots) if in_group[r] == 1]
    keep = set(rng.sample(singles, min(BBC_SAMPLE, len(singles))))
    bbc = [d for i, d in enumerate(bbc) if in_group[bbc_roots[i]] > 1 or i in keep]
    originals: list[Doc] = []
    for docs in (ecb, bbc):
        texts = [f"{d['title']}\n{d['text']}" for d in docs]
        roots, grey = _natural_groups(texts)
        for i, doc in enumerate(docs):
            root = docs[roots[i]]
            doc["group"] = str(root["id"])
            doc.setdefault("event", root["id"])
            doc["transforms"] = ([] if roots[i] == i else
                                 ["natural_exact" if texts[i] == texts[roots[i]]
                                  else "natural_near"])
            doc["ambiguous_with"] = sorted(str(docs[r]["id"]) for r in grey[roots[i]])
            originals.append(doc)
    return originals


def make_neardup_benchmark(shared_dir: Path, seed: int = 13) -> list[Doc]:
    """The benchmark's documents, shuffled; the same list for the same seed."""
    rng = Random(seed)
    originals = _originals(Path(shared_dir), rng)
    docs: list[Doc] = []
    for original in originals:
        sep = str(original.pop("sep"))
        docs.append(original)
        if original["transforms"] or rng.random() >= COPY_FRACTION:
            continue  # copies are made of a group's first article only
        paras = [p.strip() for p in str(original["text"]).split(sep) if p.strip()]
        if not paras:
            continue
        for k in range(1, rng.randint(1, 3) + 1):
            title, new_paras, applied = make_copy(str(original["title"]), paras, rng)
            docs.append({**original, "id": f"{original['id']}#copy{k}", "title": title,
                         "text": sep.join(new_paras), "transforms": applied})
    rng.shuffle(docs)
    return docs


def _members(docs: list[Doc], key: str, corpus: str | None = None) -> dict[object, list[int]]:
    members: defaultdict[object, list[int]] = defaultdict(list)
    for i, doc in enumerate(docs):
        if corpus is None or doc["corpus"] == corpus:
            members[doc[key]].append(i)
    return members


def duplicate_pairs(docs: list[Doc]) -> set[frozenset[int]]:
    """Index pairs of documents in the same group (copies of one article)."""
    return {frozenset(pair) for members in _members(docs, "group").values()
            for pair in itertools.combinations(members, 2)}


def ambiguous_pairs(docs: list[Doc]) -> set[frozenset[int]]:
    """Index pairs whose groups share long passages below the copy threshold."""
    by_group = _members(docs, "group")
    return {frozenset((i, j)) for i, doc in enumerate(docs)
            for other in doc.get("ambiguous_with", []) for j in by_group[other]}  # type: ignore[attr-defined]


def hard_negative_pairs(docs: list[Doc]) -> set[frozenset[int]]:
    """Index pairs of one ECB+ event from different groups, minus the ambiguous ones."""
    pairs = {frozenset((i, j)) for members in _members(docs, "event", "ecb").values()
             for i, j in itertools.combinations(members, 2)
             if docs[i]["group"] != docs[j]["group"]}
    return pairs - ambiguous_pairs(docs)


def summary(docs: list[Doc]) -> str:
    corpora = Counter(str(d["corpus"]) for d in docs)
    groups = Counter(str(d["group"]) for d in docs)
    transforms = Counter(t for d in docs for t in d["transforms"])  # type: ignore[attr-defined]
    copies = sum(1 for d in docs if "#copy" in str(d["id"]))
    lines = [
        f"docs: {len(docs)} ({', '.join(f'{k} {v}' for k, v in sorted(corpora.items()))}); "
        f"synthetic copies: {copies}",
        f"groups: {len(groups)}, with copies: {sum(1 for n in groups.values() if n > 1)}, "
        f"sizes: {dict(sorted(Counter(groups.values()).items()))}",
        f"duplicate pairs: {len(duplicate_pairs(docs))}",
        f"hard-negative pairs (same ECB+ event, different article): "
        f"{len(hard_negative_pairs(docs))}",
        f"ambiguous pairs (no gold label): {len(ambiguous_pairs(docs))}",
        "transforms (documents carrying each):",
        *(f"  {name:24} {count}" for name, count in transforms.most_common()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    repo_root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output JSONL path")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--shared", type=Path, default=repo_root.parent / "shared",
                        help="the shared folder holding datasets/ (default ../shared)")
    args = parser.parse_args(argv)
    if not (args.shared / ECB_PATH).exists():
        print(f"error: {args.shared / ECB_PATH} not found (is ../shared there?)",
              file=sys.stderr)
        return 1
    docs = make_neardup_benchmark(args.shared, args.seed)
    with args.out.open("w", encoding="utf-8") as out:
        for doc in docs:
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}\n{summary(docs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
