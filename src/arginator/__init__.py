"""arginator: train, compare, shrink and serve classifiers of protein and text embeddings."""

__version__ = "0.1.0"
