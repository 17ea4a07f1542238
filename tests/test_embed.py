"""embed.py: the text an article is embedded as, the device setting, the embedders."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from clustering import open_pipeline
from clustering.config import EmbeddingSettings, parse_config
from clustering.embed import (
    DEFAULT_MODEL,
    EMBED_BATCH_SIZE,
    EMBED_BATCH_TOKENS,
    LENGTHS_PER_DOUBLING,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    is_device,
    make_embedder,
    padded_length,
    plan_batches,
    share_batches,
    split_batches,
    resolve_device,
    resolve_precision,
    resolve_threads,
)
from clustering.errors import ConfigError
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
    config = parse_config({"settings": {"embedding": {"device": "cpu", "batch_size": 8, "precision": "fp32",
                                                      "threads": 3}}})
    with open_pipeline(tmp_path / "news.db", config) as pipeline:
        embedder = pipeline.embedder
        assert isinstance(embedder, SentenceTransformerEmbedder)
        assert (embedder.device, embedder.batch_size, embedder.precision, embedder.threads) == ("cpu", 8, "fp32", 3)


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


def test_the_embedding_defaults_follow_the_machine() -> None:
    assert parse_config({}).embedding == EmbeddingSettings(device="auto", batch_size="auto", precision="auto",
                                                           threads="auto")


@pytest.mark.parametrize(("embedding", "message"), [
    ({"precision": "fp16"}, "settings.embedding.precision: expected auto, fp32 or bf16"),
    ({"precision": 16}, "settings.embedding.precision: expected text"),
    ({"threads": 0}, "settings.embedding.threads: must be at least 1"),
    ({"threads": "all"}, "settings.embedding.threads: expected auto or a number"),
    ({"threads": 1.5}, "settings.embedding.threads: expected"),
    ({"batch_size": "big"}, "settings.embedding.batch_size: expected auto or a number"),
    ({"batch_size": 0}, "settings.embedding.batch_size: must be at least 1"),
])
def test_bad_embedding_settings_name_the_key(embedding: dict, message: str) -> None:
    key, _, detail = message.partition(": ")
    with pytest.raises(ConfigError, match=f"key '{re.escape(key)}': {re.escape(detail)}"):
        parse_config({"settings": {"embedding": embedding}})


@pytest.mark.parametrize(("setting", "device", "supported", "precision"), [
    ("auto", "cpu", True, "bf16"),
    ("auto", "cpu", False, "fp32"),
    ("auto", "cuda", True, "fp32"),
    ("fp32", "cpu", True, "fp32"),
    ("bf16", "cpu", False, "bf16"),   # asked for: kept (slower without native bfloat16)
])
def test_resolve_precision(setting: str, device: str, supported: bool, precision: str) -> None:
    assert resolve_precision(setting, device, bf16_supported=supported) == precision


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(EmbeddingError, match="unknown precision"):
        resolve_precision("int8", "cpu", bf16_supported=True)


@pytest.mark.parametrize(("cpus", "load", "threads"), [
    (2, 0.3, 2), (2, 0.6, 1), (2, 1.2, 1), (2, 9.0, 1), (16, 3.2, 13), (16, 0.0, 16), (1, 0.0, 1)])
def test_auto_threads_are_the_cpus_the_load_leaves(cpus: int, load: float, threads: int) -> None:
    assert resolve_threads("auto", cpus=cpus, load=load) == threads


def test_a_thread_count_is_kept_and_a_bad_one_refused() -> None:
    assert resolve_threads(3, cpus=2, load=5.0) == 3
    for bad in (0, -1, "many", True):
        with pytest.raises(EmbeddingError, match="threads"):
            resolve_threads(bad)  # type: ignore[arg-type]


def test_texts_are_padded_to_a_length_of_their_own() -> None:
    assert [padded_length(n, 256) for n in (1, 15, 16, 17, 33, 100, 129, 256, 300)] == [
        1, 15, 16, 18, 36, 104, 144, 256, 256]
    assert LENGTHS_PER_DOUBLING == 8
    for tokens in range(1, 2000):  # padding adds less than 1/8
        assert 0 <= padded_length(tokens, 4096) - tokens < tokens / 8


def test_batches_group_texts_of_one_padded_length() -> None:
    lengths = [10, 300, 20, 10, 34, 33]
    assert plan_batches(lengths, 2, 256) == [(10, [0, 3]), (20, [2]), (36, [4, 5]), (256, [1])]
    many = [16] * 300 + [256] * 20
    batches = plan_batches(many, "auto", 256)
    assert [(length, len(rows)) for length, rows in batches] == [
        (16, EMBED_BATCH_TOKENS // 16), (16, 300 - EMBED_BATCH_TOKENS // 16), (256, 16), (256, 4)]
    assert sorted(row for _, rows in batches for row in rows) == list(range(320))


def test_workers_get_shares_of_the_batches_by_word_pieces() -> None:
    batches = [(10, [0, 1]), (20, [2]), (256, [3, 4, 5]), (36, [6, 7])]
    assert split_batches(batches, 2) == batches
    assert split_batches([(256, [3, 4, 5])], 2) == [(256, [3, 4]), (256, [5])]
    assert split_batches([(256, [3])], 2) == [(256, [3])]
    assert split_batches([], 2) == []
    assert share_batches(batches, 2) == [[(256, [3, 4, 5])], [(36, [6, 7]), (10, [0, 1]), (20, [2])]]
    assert share_batches(batches[:1], 3) == [[(10, [0, 1])]]


TEXTS = ["Quake hits Northvale", "Bank raises rates by a quarter point as inflation stays high",
         "Final goes to penalties", "Northvale earthquake: rescuers search collapsed buildings after the "
         "magnitude 6.1 tremor that struck before dawn on Monday, officials said. " * 6]


@pytest.mark.slow
def test_bf16_vectors_are_close_to_fp32_and_the_same_whatever_the_batch() -> None:
    fp32 = SentenceTransformerEmbedder(device="cpu", precision="fp32", threads=2).embed(TEXTS)
    bf16 = SentenceTransformerEmbedder(device="cpu", precision="bf16", threads=2)
    together = bf16.embed(TEXTS)
    assert bf16.resolved_precision == "bf16" and bf16.variant() == f"{DEFAULT_MODEL}-bf16"
    assert (together * fp32).sum(axis=1).min() >= 0.999
    alone = np.concatenate([bf16.embed([text]) for text in TEXTS])
    reversed_ = bf16.embed(TEXTS[::-1])[::-1]
    bf16.threads = 1
    one_thread = bf16.embed(TEXTS)
    assert np.array_equal(together, alone) and np.array_equal(together, reversed_)
    assert np.array_equal(together, one_thread)


@pytest.mark.slow
def test_workers_give_each_text_its_own_vector_whatever_the_order() -> None:
    words = "quake rescuers bank rates final penalties officials storm markets vote".split()
    texts = [" ".join(words[(i + j) % len(words)] for j in range(1 + i % 30)) for i in range(400)]
    embedder = SentenceTransformerEmbedder(device="cpu", precision="bf16", threads=2)
    together = embedder.embed(texts)
    order = np.random.default_rng(7).permutation(len(texts))
    shuffled = np.empty_like(together)
    shuffled[order] = embedder.embed([texts[i] for i in order])
    embedder.threads = 1
    assert np.array_equal(together, shuffled)  # (rarely) fails if two workers tokenize at once: the lock
    assert np.array_equal(together, embedder.embed(texts))
