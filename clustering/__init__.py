"""clustering: news feeds -> deduplicated articles -> stories with stable ids -> topics.

Quick start::

    import clustering
    with clustering.open_pipeline("news.db") as pipeline:
        pipeline.add_articles([{"title": "...", "text": "...", "url": "...", "source": "wire"}])
        pipeline.process()
        for story in pipeline.stories():
            print(story.id, story.label)

Importing this package loads no model, torch, faiss or hdbscan; they load when needed.
"""

import logging

from .config import Config, FeedConfig, load_config
from .core import Pipeline, open_pipeline
from .errors import (
    ClusteringError,
    ConfigError,
    EmbeddingError,
    FeedError,
    LockedError,
    NotFoundError,
    StorageError,
)
from .types import (
    Article,
    ArticleInput,
    DuplicateLink,
    FeedStatus,
    RunRecord,
    RunReport,
    Story,
    StoryDetail,
    StoryEvent,
    Topic,
)

__version__ = "0.1.0"

__all__ = [
    "Article",
    "ArticleInput",
    "ClusteringError",
    "Config",
    "ConfigError",
    "DuplicateLink",
    "EmbeddingError",
    "FeedConfig",
    "FeedError",
    "FeedStatus",
    "LockedError",
    "NotFoundError",
    "Pipeline",
    "RunRecord",
    "RunReport",
    "StorageError",
    "Story",
    "StoryDetail",
    "StoryEvent",
    "Topic",
    "__version__",
    "load_config",
    "open_pipeline",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
