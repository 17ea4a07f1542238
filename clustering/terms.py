"""Words and names of an article: the lexical side of the story stage and of story labels.

Pure Python (no heavy imports).  Two products:

* :func:`words`: lower-cased content words (no stop words, possessives folded:
  "Fiat's" -> "fiat"), for keywords and the optional word channel;
* names: what tells two events of one kind apart (which earthquake, which bank):
  capitalised words that do not open a sentence, and numbers.  A line in Title Case
  ("Apple Unveils New MacBook Air") capitalises every word and so carries no such
  evidence by itself; its words count as names only where the window's own
  sentence-case text uses them as names (:func:`window_names`).  Lower-cased corpora
  (GoogleNews) have no names at all, which the similarity then ignores (cluster.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

STOP_WORDS = frozenset("""
a about above across after afterwards again against all almost alone along already also although always am
among amongst an and another any anyhow anyone anything anyway anywhere are around as at back be became
because become becomes becoming been before beforehand behind being below beside besides between beyond both
but by can cannot could couldn did didn do does doesn doing don done down due during each either else
elsewhere enough etc even ever every everyone everything everywhere except few for former formerly from
further get gets getting give given gives go goes going gone got had hadn has hasn have haven having he hence
her here hereafter hereby herein hereupon hers herself him himself his how however i ie if in inc indeed into
is isn it its itself just last latter latterly least less ll ltd made make makes many may me meanwhile might
mine more moreover most mostly much must my myself namely neither never nevertheless next no nobody none
noone nor not nothing now nowhere of off often on once one only onto or other others otherwise our ours
ourselves out over own per perhaps please put rather re really same see seem seemed seeming seems several
she should shouldn since so some somehow someone something sometime sometimes somewhere still such than that
the their theirs them themselves then thence there thereafter thereby therefore therein thereupon these they
this those though through throughout thru thus to together too toward towards under until up upon us ve very
via was wasn we well were weren what whatever when whence whenever where whereafter whereas whereby wherein
whereupon wherever whether which while whither who whoever whole whom whose why will with within without won
would wouldn yet you your yours yourself yourselves
said say says saying told tell tells according reported reports report added adds asked
mr mrs ms dr st bn m mn k pm am gmt bst est
new news year years week weeks day days time times today yesterday tomorrow monday tuesday wednesday
thursday friday saturday sunday like including told around two three four five six seven eight nine ten
""".split())  # noqa: SIM905 - a word list reads best as text
"""Words that say nothing about which story an article tells: a standard English
stop-word list plus the filler of news prose ("said", "mr", "bn", weekdays).  Used for
keywords, the word channel, and to keep sentence-initial function words out of names."""

FUNCTION_WORDS = frozenset("""a an and are as at be but by for from has have he her his i in is it its of on or
our she that the their them they this to was we were which who will with you your after before over under
about into than then there these those not no yes also more most""".split())  # noqa: SIM905
"""Words that are never names even when capitalised (sentence starts aside): grammar,
not filler.  "New" (York), "Monday" and "Prime" (Minister) stay names; STOP_WORDS is
for keywords."""

_WORD = re.compile(r"[^\W\d_][\w'’-]*[\w]|[^\W\d_]", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s?$")
_ABBREVIATION = re.compile(r"\b(?:[A-Z]\.){2,}")
_CLOCK = re.compile(r"\b\d{1,2}\s?:\s?\d{2}\b(?:\s?[ap]\.?\s?m\b\.?)?", re.IGNORECASE)
_NAME = re.compile(r"\b(?:[A-Z][\w'’-]*[\w]|[A-Z])(?:\s+[A-Z][\w'’-]*[\w])*|\b\d[\d.,]*\d\b|\b\d\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?\"“”:|]\s+|\n)$")
_TOKEN = re.compile(r"[^\W_][\w'’.-]*[\w]|[^\W_]", re.UNICODE)

MAX_TERM_CHARS = 2000
"""Characters of an article's text that are searched for names and words: the same
span the embedding sees (embed.MAX_EMBED_CHARS)."""

TITLE_CASE_SHARE = 0.6
"""A line whose longer content words (4+ letters) are capitalised at least this often is
in Title Case (headline style): ordinary sentences capitalise 10–30 % of them."""

NAME_EVIDENCE_ARTICLES = 2
"""A word of a Title-Case line counts as a name when at least this many articles of the
window use it as a name in ordinary sentences.  ECB+ story B-cubed F1 (batch, lab):
0.932 with 2, 0.922 with 1 (chance capitals in one quote), 0.900 ignoring Title-Case
lines, 0.917 taking every capitalised word of them as a name."""


def fold(word: str) -> str:
    """Lower-case and drop a possessive ending: "Fiat's" / "Fiats’" -> "fiat" / "fiats"."""
    return _POSSESSIVE.sub("", word.lower())


def words(text: str) -> list[str]:
    """Content words of ``text``: lower-cased, possessives folded, stop words and
    one-letter words dropped.  (Labels read every member of the stories a run touches:
    :func:`fold` runs only on the few words with an apostrophe.)"""
    result = []
    for word in _WORD.findall(text[:MAX_TERM_CHARS]):
        word = fold(word) if "'" in word or "’" in word else word.lower()
        if len(word) > 1 and word not in STOP_WORDS:
            result.append(word)
    return result


def _clean(line: str) -> str:
    """"U.S." -> "US" (one name, not two letters); clock times are not names."""
    line = _ABBREVIATION.sub(lambda m: m.group(0).replace(".", ""), line)
    return _CLOCK.sub(" ", line)


def is_title_case(line: str) -> bool:
    """True for a headline-style line that capitalises (nearly) every content word."""
    content = [w for w in _WORD.findall(line) if fold(w) not in FUNCTION_WORDS]
    if len(content) < 2:
        return False
    longer = [w for w in content if len(w) >= 4]
    pool = longer if len(longer) >= 3 else content
    return sum(1 for w in pool if w[0].isupper()) / len(pool) >= TITLE_CASE_SHARE


def name_terms(line: str) -> list[str]:
    """Capitalised words not opening a sentence, and numbers: the names of an event,
    read from one line of ordinary (sentence-case) text."""
    line = _clean(line)
    terms: list[str] = []
    for match in _NAME.finditer(line):
        before = line[max(0, match.start() - 3):match.start()]
        token = match.group(0)
        if token[0].isupper() and (match.start() == 0 or _SENTENCE_START.search(before)):
            # sentence-initial capital: keep only the rest of a multi-word name
            parts = token.split()
            if len(parts) == 1 or fold(parts[0]) in FUNCTION_WORDS:
                parts = parts[1:]
            token = " ".join(parts)
            if not token:
                continue
        for part in token.split():
            folded = fold(part).strip("'’")
            if folded and _is_name_word(part, folded):
                terms.append(folded)
    return terms


def _is_name_word(token: str, folded: str) -> bool:
    """Function words are not names, except as acronyms ("US" from "U.S.", "IT")."""
    return folded not in FUNCTION_WORDS or (len(token) > 1 and token.isupper())


@dataclass(frozen=True)
class ArticleTerms:
    """What the story stage reads of an article's text, computed once per article."""

    names: tuple[str, ...]              # names from sentence-case lines (may repeat)
    title_case_words: tuple[str, ...]   # content words of Title-Case lines: names or not
    word_count: int                     # words of the compared text


def article_terms(title: str, summary: str) -> ArticleTerms:
    """Names and candidate names of an article (headline and text, each line judged
    on its own: a Title-Case headline above sentence-case prose is common)."""
    names: list[str] = []
    candidates: list[str] = []
    budget = MAX_TERM_CHARS
    word_count = 0
    for part in (title, summary):
        part = part[:budget]
        budget -= len(part)
        word_count += len(part.split())
        for line in part.splitlines():
            if not line.strip():
                continue
            if is_title_case(line):
                for token in _TOKEN.findall(_clean(line)):
                    folded = fold(token).strip("'’")
                    if folded and _is_name_word(token, folded):
                        candidates.append(folded)
            else:
                names.extend(name_terms(line))
    return ArticleTerms(tuple(names), tuple(candidates), word_count)


def name_evidence(terms: Iterable[ArticleTerms]) -> Counter[str]:
    """For each name: in how many of these articles' sentence-case lines it occurs."""
    evidence: Counter[str] = Counter()
    for article in terms:
        evidence.update(set(article.names))
    return evidence


def window_names(terms: Sequence[ArticleTerms], evidence: Counter[str] | None = None) -> list[list[str]]:
    """Each article's names: its sentence-case names, plus the words of its Title-Case
    lines that are numbers or that ``NAME_EVIDENCE_ARTICLES`` articles of the window
    use as names (``evidence``: :func:`name_evidence` of the window, computed here when
    not given).  Numbers alone are no names: an article needs a word among them.
    (:meth:`TermTable.window_names`, on these articles.)"""
    return TermTable.of(terms).window_names(evidence=evidence)[0]


@dataclass(frozen=True, eq=False)
class TermTable:
    """The terms of many articles in columns, a row per article: how the window's state keeps
    them between runs (window.py: arrays, not 100k objects to rebuild and serialise each run), and
    what :meth:`window_names` reads in one pass of NumPy.  Tokens are ids into ``vocabulary``
    (distinct words); row ``i``'s names are ``name_tokens[name_offsets[i]:name_offsets[i + 1]]``,
    in their order, and likewise its Title-Case words.  Equal tables hold equal terms, whatever
    their vocabularies' order."""

    vocabulary: tuple[str, ...]
    name_offsets: np.ndarray     # (n + 1,) int64, from 0 to len(name_tokens)
    name_tokens: np.ndarray      # int64 ids into vocabulary
    title_offsets: np.ndarray    # (n + 1,) int64
    title_tokens: np.ndarray     # int64
    word_counts: np.ndarray      # (n,) int64

    @classmethod
    def of(cls, terms: Iterable[ArticleTerms], vocabulary: Sequence[str] = ()) -> TermTable:
        """``terms`` in columns; the words of ``vocabulary`` (distinct) keep their ids, new ones follow."""
        import numpy as np

        index = {word: number for number, word in enumerate(vocabulary)}
        names: list[int] = []
        titles: list[int] = []
        name_ends: list[int] = [0]
        title_ends: list[int] = [0]
        counts: list[int] = []
        for article in terms:
            for tokens, target, ends in ((article.names, names, name_ends),
                                         (article.title_case_words, titles, title_ends)):
                for token in tokens:
                    target.append(index.setdefault(token, len(index)))
                ends.append(len(target))
            counts.append(article.word_count)
        return cls(tuple(index), np.asarray(name_ends, dtype=np.int64), np.asarray(names, dtype=np.int64),
                   np.asarray(title_ends, dtype=np.int64), np.asarray(titles, dtype=np.int64),
                   np.asarray(counts, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.word_counts)

    def rows(self) -> list[ArticleTerms]:
        """Each row as the ArticleTerms it was made of."""
        vocabulary = self.vocabulary
        names, titles = self.name_tokens.tolist(), self.title_tokens.tolist()
        name_ends, title_ends = self.name_offsets.tolist(), self.title_offsets.tolist()
        return [ArticleTerms(tuple(vocabulary[t] for t in names[name_ends[i]:name_ends[i + 1]]),
                             tuple(vocabulary[t] for t in titles[title_ends[i]:title_ends[i + 1]]), count)
                for i, count in enumerate(self.word_counts.tolist())]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TermTable) and self.rows() == other.rows()

    __hash__ = None  # type: ignore[assignment]

    def take(self, rows: np.ndarray) -> TermTable:
        """The table of ``rows`` (indices, in that order; the same vocabulary)."""
        import numpy as np

        rows = np.asarray(rows, dtype=np.int64)
        name_offsets, name_tokens = _take_segments(self.name_offsets, self.name_tokens, rows)
        title_offsets, title_tokens = _take_segments(self.title_offsets, self.title_tokens, rows)
        return TermTable(self.vocabulary, name_offsets, name_tokens, title_offsets, title_tokens,
                         self.word_counts[rows])

    def followed_by(self, other: TermTable) -> TermTable:
        """This table's rows, then ``other``'s, whose vocabulary must begin with this one's
        (``TermTable.of(terms, vocabulary=self.vocabulary)``)."""
        import numpy as np

        if other.vocabulary[:len(self.vocabulary)] != self.vocabulary:
            raise ValueError("the other table's vocabulary does not extend this one's")
        return TermTable(other.vocabulary,
                         np.r_[self.name_offsets, other.name_offsets[1:] + self.name_offsets[-1]],
                         np.r_[self.name_tokens, other.name_tokens],
                         np.r_[self.title_offsets, other.title_offsets[1:] + self.title_offsets[-1]],
                         np.r_[self.title_tokens, other.title_tokens], np.r_[self.word_counts, other.word_counts])

    def compacted(self) -> TermTable:
        """The same rows with only the words they use in the vocabulary (its order kept)."""
        import numpy as np

        used = np.zeros(len(self.vocabulary), dtype=bool)
        used[self.name_tokens] = True
        used[self.title_tokens] = True
        if used.all():
            return self
        renumber = np.cumsum(used) - 1
        kept = np.flatnonzero(used).tolist()
        return TermTable(tuple(self.vocabulary[i] for i in kept), self.name_offsets, renumber[self.name_tokens],
                         self.title_offsets, renumber[self.title_tokens], self.word_counts)

    def window_names(self, rows: Sequence[int] | None = None, evidence: Counter[str] | None = None
                     ) -> tuple[list[list[str]], dict[str, int]]:
        """:func:`window_names` of the articles ``rows`` (default all) in a window of every row
        of the table, and in how many of the window's articles each name occurs (the name
        document frequency).  ``evidence`` as in :func:`window_names` (default the table's own)."""
        import numpy as np

        names = self.window_name_tokens(rows, evidence)
        result: list[list[str]] = [[] for _ in range(len(self) if rows is None else len(rows))]
        vocabulary = self.vocabulary
        for document, token in zip(names.documents.tolist(), names.tokens.tolist(), strict=True):
            result[document].append(vocabulary[token])
        frequency = names.frequency
        return result, {vocabulary[t]: int(frequency[t]) for t in np.flatnonzero(frequency).tolist()}

    def window_name_tokens(self, rows: Sequence[int] | None = None, evidence: Counter[str] | None = None
                           ) -> NameTokens:
        """:meth:`window_names` as token ids: the names of ``rows`` (default all) in order, and the
        document frequency of every word of the vocabulary (0: no article names it)."""
        import numpy as np

        from .graph import unique_keys

        n, size = len(self), max(len(self.vocabulary), 1)
        digit = np.asarray([word[0].isdigit() for word in self.vocabulary], dtype=bool)
        name_rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.name_offsets))
        title_rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.title_offsets))
        if evidence is None:   # name_evidence: the articles naming each word in sentence-case lines
            pairs = unique_keys(name_rows * size + self.name_tokens)
            counts = np.bincount(pairs % size, minlength=len(self.vocabulary))
        else:
            counts = np.asarray([evidence.get(word, 0) for word in self.vocabulary], dtype=np.int64)
        title_kept = digit[self.title_tokens] | (counts[self.title_tokens] >= NAME_EVIDENCE_ARTICLES)
        named = np.zeros(n, dtype=bool)   # holds a name that is not a number
        named[name_rows[~digit[self.name_tokens]]] = True
        named[title_rows[title_kept & ~digit[self.title_tokens]]] = True
        kept_rows = np.r_[name_rows, title_rows[title_kept]]
        kept_tokens = np.r_[self.name_tokens, self.title_tokens[title_kept]]
        inside = named[kept_rows]
        frequency = np.bincount(unique_keys(kept_rows[inside] * size + kept_tokens[inside]) % size,
                                minlength=len(self.vocabulary))
        # the names of the rows asked for, each row's sentence-case names then its kept Title-Case words
        chosen = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        chosen = chosen.reshape(-1)
        name_offsets, name_tokens = _take_segments(self.name_offsets, self.name_tokens, chosen)
        title_offsets, title_tokens = _take_segments(self.title_offsets, self.title_tokens, chosen)
        _, title_keep = _take_segments(self.title_offsets, title_kept, chosen)
        documents = np.r_[np.repeat(np.arange(len(chosen), dtype=np.int64), np.diff(name_offsets)),
                          np.repeat(np.arange(len(chosen), dtype=np.int64), np.diff(title_offsets))[title_keep]]
        tokens = np.r_[name_tokens, title_tokens[title_keep]]
        order = np.argsort(documents, kind="stable")   # names first within a row, each part in its order
        documents, tokens = documents[order], tokens[order]
        keep = named[chosen][documents]
        return NameTokens(documents[keep], tokens[keep], frequency)


@dataclass(frozen=True)
class NameTokens:
    """:meth:`TermTable.window_name_tokens`: the names of some rows as (document, token) pairs in
    document order and, within one, in the order of the names; each word's document frequency."""

    documents: np.ndarray    # index into the rows asked for, non-decreasing
    tokens: np.ndarray       # ids into the table's vocabulary
    frequency: np.ndarray    # (vocabulary,) int64


def _take_segments(offsets: np.ndarray, tokens: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ragged rows ``rows`` of (offsets, tokens), as new (offsets, tokens)."""
    import numpy as np

    lengths = (offsets[1:] - offsets[:-1])[rows]
    new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    gather = np.repeat(offsets[:-1][rows] - new_offsets[:-1], lengths) + np.arange(new_offsets[-1], dtype=np.int64)
    return new_offsets, tokens[gather]

