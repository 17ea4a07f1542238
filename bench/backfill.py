"""Backfill benchmark: an archive embedded in this process and on a local Ray, and the stories
compared with those of cron runs over the same articles.

    python bench/backfill.py [--articles 20000] [--days 30] [--model all-MiniLM-L6-v2] [--ray-cpus 2]

``--articles`` synthetic articles (bench/scale.py's SyntheticNews: heavy-tailed stories, wire and
near copies) published over ``--days``, written to a JSON Lines file, then on SQLite:

1. in process: ``clustering import`` + ``Pipeline.backfill()``;
2. on Ray: the same with ``backfill(ray="auto")`` after ``ray.init(num_cpus=--ray-cpus)``: a pool of
   that many model actors, one CPU (one torch thread) each;
3. cron: the articles added in publication order, ``Pipeline.process()`` after each
   ``window_days`` of them (the steps a backfill takes).

Reports the embedding and clustering seconds of each, the ratio in-process / Ray, the largest
difference between the two backfills' vectors, and whether the stories (each story's id and
members) and the duplicate links of the three are equal.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import WINDOW_END, SyntheticNews  # noqa: E402

WINDOW_DAYS = 3.0


def outcome(pipeline: Any) -> dict[str, Any]:
    return {"stories": {s.id: s.article_ids for s in pipeline.store.stories()},
            "assignments": pipeline.store.article_assignments()}


def compare(name: str, got: dict[str, Any], reference: dict[str, Any]) -> str:
    if got == reference:
        return f"{name}: stories and duplicate links equal ({len(got['stories'])} stories)"
    differ = sum(1 for k, v in got["assignments"].items() if reference["assignments"].get(k) != v)
    return (f"{name}: {len(got['stories'])} stories against {len(reference['stories'])}; {differ} of "
            f"{len(got['assignments'])} articles assigned differently")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--skip-cron", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np

    from clustering import open_pipeline

    news = SyntheticNews(args.seed)
    articles = news.articles(args.articles, WINDOW_END - timedelta(days=args.days), WINDOW_END, key="b")
    articles.sort(key=lambda a: a["published"])
    inputs = [{k: a[k] for k in ("title", "text", "source", "url", "key", "published")} for a in articles]
    work = Path(tempfile.mkdtemp(prefix="clustering-backfill-"))
    path = work / "archive.jsonl"
    path.write_text("".join(json.dumps({**a, "published": a["published"].isoformat()}) + "\n" for a in inputs),
                    encoding="utf-8")
    config = {"settings": {"model": args.model, "window_days": WINDOW_DAYS}}
    print(f"{len(inputs)} articles over {args.days:g} days, model {args.model}, {os.cpu_count()} cores "
          f"(load {os.getloadavg()[0]:.1f}), window {WINDOW_DAYS:g} days", flush=True)

    results: dict[str, dict[str, Any]] = {}
    vectors: dict[str, Any] = {}
    seconds: dict[str, tuple[float, float]] = {}
    for name in ("in-process", "ray"):
        ray_address = None
        if name == "ray":
            import ray

            started = time.monotonic()
            ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
            print(f"ray.init(num_cpus={args.ray_cpus}): {time.monotonic() - started:.1f} s", flush=True)
            ray_address = "auto"
        with open_pipeline(work / f"{name}.db", config) as pipeline:
            started = time.monotonic()
            imported = pipeline.import_articles(path)
            import_seconds = time.monotonic() - started
            report = pipeline.backfill(ray=ray_address)
            seconds[name] = (report.embed_seconds, report.cluster_seconds)
            results[name] = outcome(pipeline)
            ids = sorted(results[name]["assignments"])
            vectors[name] = pipeline.store.vectors(ids, pipeline.model_name)
        print(f"{name}: import {imported.new_articles} in {import_seconds:.1f} s; embed {report.embedded} in "
              f"{report.embed_seconds:.1f} s ({report.embedded / max(report.embed_seconds, 1e-9):.0f}/s); "
              f"{report.passes} windowed passes in {report.cluster_seconds:.1f} s; {report.stories_total} stories, "
              f"{report.duplicates} duplicates", flush=True)
    print(f"embedding ratio in-process / Ray ({args.ray_cpus} actors): "
          f"{seconds['in-process'][0] / seconds['ray'][0]:.2f}; whole backfill "
          f"{sum(seconds['in-process']) / sum(seconds['ray']):.2f}")
    print(f"largest difference between the two backfills' vectors: "
          f"{float(np.abs(vectors['in-process'] - vectors['ray']).max()):.2e}")
    print(compare("Ray against in-process", results["ray"], results["in-process"]))
    if not args.skip_cron:
        step = timedelta(days=WINDOW_DAYS)
        with open_pipeline(work / "cron.db", config) as pipeline:
            started = time.monotonic()
            until, last, position, runs = inputs[0]["published"] + step, inputs[-1]["published"], 0, 0
            while True:
                batch = []
                while position < len(inputs) and inputs[position]["published"] <= min(until, last):
                    batch.append(inputs[position])
                    position += 1
                pipeline.add_articles(batch)
                pipeline.process()
                runs += 1
                if until >= last:
                    break
                until += step
            print(f"cron: {runs} runs in {time.monotonic() - started:.1f} s", flush=True)
            results["cron"] = outcome(pipeline)
        print(compare("in-process backfill against cron runs", results["in-process"], results["cron"]))
        print(compare("Ray backfill against cron runs", results["ray"], results["cron"]))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
