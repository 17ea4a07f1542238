"""embed.py: the text an article is embedded as, the device setting, the embedders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clustering import open_pipeline
from clustering.config import EmbeddingSettings, parse_config
from clustering.embed import (
    DEFAULT_MODEL,
    EMBED_BATCH_SIZE,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    is_device,
    make_embedder,
    resolve_device,
)
from clustering.errors import EmbeddingError


@pytest.mark.parametrize(("setting", "cuda_available", "device"), [
    ("auto", False, "cpu"),
    ("auto", True, "cuda"),
    ("cpu", True, "cpu"),
    ("cuda", False, "cuda"),   # asked for: kept (loading the model says there is no GPU)
    ("cuda:1", True, "cuda:1"),
    ("mps", False, "mps"),
])
def test_resolve_device(setting: str, cuda_available: bool, device: str) -> None:
    assert resolve_device(setting, cuda_available=cuda_available) == device


def test_auto_asks_torch_whether_there_is_a_gpu() -> None:
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("setting", ["gpu", "cuda:", "cuda:a", "CPU", "", "cuda:0:1"])
def test_unknown_devices_are_refused(setting: str) -> None:
    assert not is_device(setting)
    with pytest.raises(EmbeddingError, match="unknown device"):
        resolve_device(setting, cuda_available=True)


def test_make_embedder_passes_device_and_batch_size_without_loading_the_model() -> None:
    embedder = make_embedder("some/model", device="cuda:1", batch_size=7)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert (embedder.model, embedder.device, embedder.batch_size, embedder._model) == ("some/model", "cuda:1", 7, None)
    default = make_embedder(DEFAULT_MODEL)
    assert (default.device, default.batch_size) == ("auto", EMBED_BATCH_SIZE)  # type: ignore[attr-defined]
    assert isinstance(make_embedder("hashing-16", device="cuda", batch_size=3), HashingEmbedder)


def test_the_pipeline_builds_its_embedder_from_settings_embedding(tmp_path: Path) -> None:
    config = parse_config({"settings": {"embedding": {"device": "cpu", "batch_size": 8}}})
    assert config.embedding == EmbeddingSettings(device="cpu", batch_size=8)
    with open_pipeline(tmp_path / "news.db", config) as pipeline:
        embedder = pipeline.embedder
        assert isinstance(embedder, SentenceTransformerEmbedder)
        assert (embedder.device, embedder.batch_size) == ("cpu", 8)


def test_the_model_runs_on_the_resolved_device_with_the_batch_size() -> None:
    import torch

    embedder = SentenceTransformerEmbedder(device="auto", batch_size=2)
    vectors = embedder.embed(["Quake hits Northvale", "Bank raises rates", "Final goes to penalties"])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder._model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")  # type: ignore[attr-defined]
    alone = SentenceTransformerEmbedder(device="cpu", batch_size=32).embed(["Bank raises rates"])
    assert np.allclose(vectors[1], alone[0], atol=1e-5)  # the batch size changes nothing but speed


def test_a_gpu_asked_for_where_there_is_none_is_an_embedding_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(EmbeddingError, match="no CUDA GPU"):
        SentenceTransformerEmbedder(device="cuda").embed(["text"])
