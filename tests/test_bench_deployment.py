"""bench/deployment.py on a handful of articles: its feed server, its plan and runs through the
real CLI (with the built-in hashing embedder), so that the bench cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import httpx
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "deployment.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_deployment", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sources(bench: ModuleType) -> list:
    """Eight short BBC-like articles, two sections (the text starts with its headline, as the corpus' do)."""
    rows = [
        ("business/001", "business", "Ad sales boost Time Warner profit",
         "Quarterly profits at US media giant TimeWarner jumped 76% to $1.13bn for the three months to December. "
         "The firm, which is now one of the biggest investors in Google, benefited from sales of high-speed "
         "internet connections."),
        ("business/002", "business", "Dollar gains on Greenspan speech",
         "The dollar has hit its highest level against the euro in almost three months after the Federal Reserve "
         "head said the US trade deficit is set to stabilise."),
        ("business/003", "business", "Yukos unit buyer faces loan claim",
         "The owners of embattled Russian oil giant Yukos are to ask the buyer of its former production unit to "
         "pay back a $900m loan."),
        ("business/004", "business", "High fuel prices hit BA's profits",
         "British Airways has blamed high fuel prices for a 40% drop in profits. Reporting its results for the "
         "three months to 31 December 2004, the airline made a pre-tax profit of £75m."),
        ("sport/001", "sport", "Claxton hunting first major medal",
         "British hurdler Sarah Claxton is confident she can win her first major medal at next month's European "
         "Indoor Championships in Madrid."),
        ("sport/002", "sport", "O'Sullivan could run in Worlds",
         "Sonia O'Sullivan has indicated that she would like to participate in next month's World Cross Country "
         "Championships in St Etienne."),
        ("sport/003", "sport", "Greene sets sights on world title",
         "Maurice Greene aims to wipe out the pain of losing his Olympic 100m title in Athens by winning a fourth "
         "World Championship crown this summer."),
        ("sport/004", "sport", "IAAF launches fight against drugs",
         "The IAAF - athletics' world governing body - has met anti-doping officials, coaches and athletes to "
         "co-ordinate the fight against drugs in sport."),
    ]
    return [bench.Source(bbc_id, section, title, f"{title}\n\n{body}") for bbc_id, section, title, body in rows]


def test_lead_is_one_or_two_sentences_without_the_headline(bench: ModuleType) -> None:
    by_id = {s.bbc_id: s for s in sources(bench)}
    assert bench.lead(by_id["business/004"]) == ("British Airways has blamed high fuel prices for a 40% drop in "
                                                 "profits. Reporting its results for the three months to 31 "
                                                 "December 2004, the airline made a pre-tax profit of £75m.")
    long_first = " ".join(["word"] * bench.LEAD_WORDS) + "."
    alone = bench.Source("tech/001", "tech", "Headline", f"Headline\n\n{long_first} A second sentence.")
    assert bench.lead(alone) == long_first  # a long first sentence stands alone


def test_plan_is_seeded_and_plants_copies_at_other_outlets(bench: ModuleType) -> None:
    outlets = ["a", "b", "c"]
    first = bench.plan(sources(bench), articles=8, seed=5, outlets=outlets, days=2, wire_share=0.5)
    assert first == bench.plan(sources(bench), articles=8, seed=5, outlets=outlets, days=2, wire_share=0.5)
    originals = {i.bbc_id: i for i in first if i.copy_of is None}
    copies = [i for i in first if i.copy_of is not None]
    assert len(originals) == 8 and copies
    for copy in copies:
        original = originals[copy.bbc_id]
        assert copy.outlet != original.outlet and copy.copy_of == original.outlet
        assert copy.day == original.day and copy.published > original.published
    assert {i.day for i in first} == {0, 1}


def test_feed_server_answers_conditional_gets(bench: ModuleType) -> None:
    items = bench.plan(sources(bench), articles=8, seed=5, outlets=["a", "b"], days=2, wire_share=0.0)
    with bench.FeedServer(items) as server:
        server.now = bench.FIRST_DAY + timedelta(days=1)
        first = httpx.get(server.url("a"))
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("application/rss+xml")
        shown = [i for i in items if i.outlet == "a" and i.day == 0]
        assert first.text.count("<item>") == len(shown)
        again = httpx.get(server.url("a"), headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        since = httpx.get(server.url("a"), headers={"If-Modified-Since": first.headers["last-modified"]})
        assert since.status_code == 304
        server.now += timedelta(days=1)
        later = httpx.get(server.url("a"), headers={"If-None-Match": first.headers["etag"]})
        assert later.status_code == (200 if any(i.outlet == "a" and i.day == 1 for i in items) else 304)
        assert httpx.get(f"{server.base_url}/a/other").status_code == 404


def test_one_day_through_the_cli(bench: ModuleType, tmp_path: Path) -> None:
    outlets = ["a", "b", "c"]
    items = bench.plan(sources(bench), articles=8, seed=5, outlets=outlets, days=1, wire_share=0.5)
    deployment = bench.simulate(items, tmp_path, outlets=outlets, days=1, model="hashing")
    run, again = deployment.runs
    assert run["feeds_ok"] == 3 and run["feeds_failed"] == 0 and run["http"] == {"200": 3}
    assert run["new_articles"] == len(items)
    assert again["feeds_not_modified"] == again["conditional_requests"] == 3 and again["new_articles"] == 0
    assert again["http"] == {"200": 0, "304": 3}
    outcome = bench.read_outcome(deployment, tmp_path)
    assert outcome.stored == outcome.served == len(items)
    assert outcome.copies_linked == outcome.copies_planted > 0
    assert outcome.groups_found == outcome.groups_planted and outcome.false_links == []
    for view in outcome.stories:  # every member traced back to its BBC article
        assert all(m.section in ("business", "sport") for m in view.members)
    figures = bench.summary(outcome)
    assert figures["stories"] == len(outcome.stories)
    lines = bench.summary_lines(figures, outcome)
    heads = [line.split(":")[0] for line in lines if not line.startswith(" ")]
    assert heads[:3] == ["articles", "stories", "stories mixing BBC sections"] and "wire copies" in heads
    assert heads[-1].startswith("close pairs apart")
    assert all(pair[0] >= bench.CLOSE_PAIR_COSINE for pair in outcome.close_pairs)
