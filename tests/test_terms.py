"""terms.py: words, names, Title Case, window-learned names."""

from __future__ import annotations

import random

import numpy as np

from clustering.terms import (
    NAME_EVIDENCE_ARTICLES,
    STOP_WORDS,
    ArticleTerms,
    TermTable,
    article_terms,
    is_title_case,
    name_evidence,
    name_terms,
    window_names,
    words,
)


# --- words (keywords, word channel) --------------------------------------------------------------
def test_words_drop_filler_and_fold_possessives() -> None:
    assert words("Mr Smith said Fiat's $2bn deal with the US should close") == ["smith", "fiat", "deal", "close"]
    assert words("GM’s and Cadbury’s shares") == ["gm", "cadbury", "shares"]
    assert words("") == []


def test_the_stop_list_holds_the_filler_issue_seven_names() -> None:
    assert {"mr", "bn", "us", "should", "said", "says"} <= STOP_WORDS


# --- names ---------------------------------------------------------------------------------------
def test_name_terms_drop_sentence_initial_capitals() -> None:
    assert name_terms("Police said the Harbour Authority closed the port.") == ["harbour", "authority"]
    assert name_terms("It rained. Officials in Berlin said so.") == ["berlin"]
    assert name_terms("Storm warning!  Residents of Kent told to stay home") == ["kent"]


def test_name_terms_keep_multiword_names_and_numbers() -> None:
    assert name_terms("Joe Biden visited Kyiv on Tuesday") == ["joe", "biden", "kyiv", "tuesday"]
    assert name_terms("The Bank of England raised rates") == ["bank", "england"]
    assert name_terms("a 6.1 magnitude quake killed 12 people") == ["6.1", "12"]
    assert name_terms("") == []
    assert name_terms("no capitals here at all") == []


def test_names_are_not_split_abbreviations_clock_times_or_possessives() -> None:
    assert name_terms("Talks in the U.S. ended at 10: 33 AM with Fiat's board") == ["us", "fiat"]
    assert name_terms("It happened at 9:27 a.m. near Santa Rosa") == ["santa", "rosa"]
    assert name_terms("New York and New Delhi") == ["new", "york", "new", "delhi"]  # "New" is a name here


def test_title_case_lines_are_recognised() -> None:
    assert is_title_case("Apple Unveils New MacBook Air, Next-Generation MacBook Pro")
    assert is_title_case("Warren Jeffs, Polygamist Leader, Convicted In Child Sexual Assault Case")
    assert is_title_case("JUNE 11, 2012 AT 10: 33 AM PT")
    assert not is_title_case("A light earthquake has struck Northern California, and there are no injuries.")
    assert not is_title_case("rescue teams search collapsed buildings after the quake")
    assert not is_title_case("Berlin")  # one word says nothing


def test_article_terms_read_title_case_words_as_candidates_only() -> None:
    terms = article_terms("Apple Unveils New MacBook Air", "The company said Apple's MacBook line got a refresh.")
    assert terms.names == ("apple", "macbook")
    assert terms.title_case_words == ("apple", "unveils", "new", "macbook", "air")
    assert terms.word_count == 5 + 9


def test_window_names_accept_title_case_words_the_window_uses_as_names() -> None:
    headline_only = ArticleTerms((), ("apple", "unveils", "macbook", "air", "2012"), 5)
    prose = [ArticleTerms(("apple", "macbook"), (), 40), ArticleTerms(("macbook", "apple", "cupertino"), (), 40)]
    names = window_names([headline_only, *prose])
    # "apple" and "macbook" are names in two articles; "unveils" never; numbers always
    assert names[0] == ["apple", "macbook", "2012"]
    assert names[1:] == [["apple", "macbook"], ["macbook", "apple", "cupertino"]]
    assert name_evidence(prose) == {"apple": 2, "macbook": 2, "cupertino": 1}


def test_numbers_alone_are_no_names() -> None:
    terms = [article_terms("", "magnitude 6.1 quake kills 12 near the coast"),
             article_terms("", "A 6.1 quake hit Northvale, killing 12")]
    assert window_names(terms) == [[], ["6.1", "northvale", "12"]]


def test_a_window_of_lower_case_or_title_case_text_has_no_names() -> None:
    lower = [article_terms("", "mourinho seek killer instinct basel champion league"),
             article_terms("", "chelsea mourinho basel tuesday knock stage")]
    assert window_names(lower) == [[], []]
    title_only = [article_terms("Mourinho Seeks Killer Instinct In Basel", ""),
                  article_terms("Chelsea Beat Basel As Mourinho Celebrates", "")]
    assert window_names(title_only) == [[], []]


# --- the window's terms in columns (window.py keeps them between runs) ----------------------------
def _reference_window_names(terms: list[ArticleTerms]) -> tuple[list[list[str]], dict[str, int]]:
    """window_names and the names' document frequency as they were computed per article, in Python,
    before TermTable (issue 19)."""
    evidence = name_evidence(terms)
    result = []
    for article in terms:
        names = list(article.names) + [w for w in article.title_case_words
                                       if w[0].isdigit() or evidence[w] >= NAME_EVIDENCE_ARTICLES]
        result.append(names if any(not n[0].isdigit() for n in names) else [])
    frequency: dict[str, int] = {}
    for names in result:
        for name in set(names):
            frequency[name] = frequency.get(name, 0) + 1
    return result, frequency


def _random_terms(rng: random.Random, count: int) -> list[ArticleTerms]:
    pool = ["northvale", "fiat", "basel", "apple", "harbour", "6.1", "12", "2012", "x", "ya", "zed", "quinn"]
    return [ArticleTerms(tuple(rng.choice(pool) for _ in range(rng.randint(0, 5))),
                         tuple(rng.choice(pool) for _ in range(rng.choice((0, 0, 3, 6)))), rng.randint(0, 400))
            for _ in range(count)]


def test_the_term_table_gives_the_names_and_frequencies_of_the_per_article_rule() -> None:
    rng = random.Random(5)
    for _ in range(200):
        terms = _random_terms(rng, rng.randint(0, 30))
        table = TermTable.of(terms)
        names, frequency = table.window_names()
        assert (names, frequency) == _reference_window_names(terms)
        assert window_names(terms) == names
        rows = sorted(rng.sample(range(len(terms)), len(terms) // 2))
        assert table.window_names(rows) == ([names[r] for r in rows], frequency)


def test_term_table_rows_survive_take_join_and_compaction() -> None:
    rng = random.Random(8)
    first, second = _random_terms(rng, 40), _random_terms(rng, 15)
    table = TermTable.of(first)
    joined = table.followed_by(TermTable.of(second, vocabulary=table.vocabulary))
    assert joined.rows() == first + second
    order = np.asarray(rng.sample(range(55), 30))
    taken = joined.take(order).compacted()
    assert taken.rows() == [(first + second)[i] for i in order]
    assert taken == TermTable.of([(first + second)[i] for i in order])
    assert set(taken.vocabulary) == {w for t in taken.rows() for w in (*t.names, *t.title_case_words)}
    assert TermTable.of([]).rows() == [] and TermTable.of([]).window_names() == ([], {})
