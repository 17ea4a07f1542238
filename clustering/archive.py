"""Archives: articles read from a file (``clustering import``) and embedded on Ray (``clustering backfill --ray``).

An import file is JSON Lines (one object a line) or CSV (a header row naming the fields); its
records are what ``Pipeline.add_articles`` takes (``title``, ``text``, ``url``, ``published``,
``source``, ``key``) and follow the same rules, ``published`` given as ISO-8601 with a time zone
(``Z`` or an offset) or Unix seconds.  A bad record is a ConfigError naming the file and the line.

``embed_on_ray`` embeds the articles that have no vector yet on a Ray cluster (``pip install
clustering[ray]``): the articles the store read become a Ray dataset in blocks, ``map_batches`` runs them
through a pool of model actors (one GPU each where the cluster has GPUs, ``settings.embedding.device``
otherwise) and the vectors come back to be stored here, in one transaction per block.  Ray is
imported only inside these functions.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ConfigError, EmbeddingError

IMPORT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
"""File suffixes ``clustering import`` reads, and the format each one names."""

RAY_BLOCK = 2048
"""Articles in one Ray Data batch (one actor call) and one transaction of vectors written back:
large enough that an actor's model works on full batches (64 × its batch of 32), small enough
that a killed backfill loses at most a block per actor."""


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each article of a JSON Lines or CSV file; ``published`` parsed."""
    path = Path(path)
    kind = IMPORT_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: cannot tell the format from the suffix {path.suffix!r} (expected "
                          f"{', '.join(sorted(IMPORT_FORMATS))})")
    try:
        handle = open(path, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        try:
            if kind == "jsonl":
                for line_number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError as exc:
                        raise ConfigError(f"not a JSON object: {exc}", path=str(path), line=line_number) from None
                    if not isinstance(record, dict):
                        raise ConfigError(f"expected a JSON object, got {type(record).__name__}", path=str(path),
                                          line=line_number)
                    yield line_number, _with_time(record, path, line_number)
            else:
                reader = csv.DictReader(handle)
                for record in reader:
                    line_number = reader.line_num
                    if None in record:
                        raise ConfigError("more values than the header names", path=str(path), line=line_number)
                    present = {k: v for k, v in record.items() if v not in (None, "")}
                    yield line_number, _with_time(present, path, line_number)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text: {exc.reason}", path=str(path)) from None


def _with_time(record: dict[str, Any], path: Path, line: int) -> dict[str, Any]:
    """The record with ``published`` as an aware datetime (ISO-8601 with a zone, or Unix seconds)."""
    value = record.get("published")
    if value is None or isinstance(value, datetime):
        return record
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            moment = datetime.fromtimestamp(value, tz=timezone.utc)
        elif isinstance(value, str) and _is_number(value):  # CSV holds every value as text
            moment = datetime.fromtimestamp(float(value), tz=timezone.utc)
        elif isinstance(value, str):
            text = value.strip()
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        raise ConfigError(f"published {str(value)[:60]!r} is not an ISO-8601 time or Unix seconds", path=str(path),
                          line=line) from None
    if moment.tzinfo is None:
        raise ConfigError(f"published {value!r} has no time zone (add Z or an offset such as +02:00)",
                          path=str(path), line=line)
    return {**record, "published": moment}


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# --- Ray ---------------------------------------------------------------------------------------
class _ModelActor:
    """One model, loaded once per actor; embeds a batch of articles (Ray Data ``map_batches``)."""

    def __init__(self, model: str, device: str, batch_size: int | str, threads: int) -> None:
        import torch

        from .embed import make_embedder

        torch.set_num_threads(max(1, threads))
        self.embedder = make_embedder(model, device=device, batch_size=batch_size, threads=max(1, threads))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from .embed import article_text

        texts = [article_text(str(t), str(s)) for t, s in zip(batch["title"], batch["summary"], strict=True)]
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        return {"id": np.asarray(batch["id"], dtype=np.int64), "vector": vectors}


def embed_on_ray(rows: list[Any], *, model: str, device: str, batch_size: int | str, address: str,
                 save: Callable[[list[int], Any], None], progress: Callable[[int, int], None] | None = None) -> int:
    """Embed ``rows`` (id, title, summary) on Ray and ``save(ids, vectors)`` each block as it comes
    back; returns the number embedded.  ``address``: ``auto`` (the running cluster, or this process's
    Ray when it already started one) or a cluster address (``ray://HOST:10001``)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'clustering[ray]'") from None
    if not rows:
        return 0
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot reach a Ray cluster at {address!r}: {exc}") from exc
    resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    actors = gpus or cpus
    options: dict[str, Any] = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    actor_device = "cuda" if gpus else device
    dataset = ray.data.from_items([{"id": int(r["id"]), "title": r["title"], "summary": r["summary"]}
                                   for r in rows], override_num_blocks=max(actors, math.ceil(len(rows) / RAY_BLOCK)))
    embedded = dataset.map_batches(_ModelActor, batch_size=RAY_BLOCK,
                                   compute=ray.data.ActorPoolStrategy(size=actors),
                                   fn_constructor_kwargs={"model": model, "device": actor_device,
                                                          "batch_size": batch_size, "threads": 1 if not gpus else 4},
                                   **options)
    done = 0
    try:
        for batch in embedded.iter_batches(batch_size=RAY_BLOCK, batch_format="numpy"):
            save([int(i) for i in batch["id"]], batch["vector"])
            done += len(batch["id"])
            if progress is not None:
                progress(done, len(rows))
    except ray.exceptions.RayError as exc:
        raise EmbeddingError(f"embedding on Ray failed after {done} of {len(rows)} articles: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from exc
    return done

