"""Evaluation: the embeddings file and retrieval metrics (numpy + faiss, no torch).

    from xbml.evaluation import retrieval_metrics, load_embeddings, save_embeddings
"""

from xbml.evaluation.embeddings_file import EmbeddingsFile, load_embeddings, save_embeddings
from xbml.evaluation.retrieval_metrics import l2_normalise, retrieval_metrics

__all__ = ["EmbeddingsFile", "l2_normalise", "load_embeddings", "retrieval_metrics", "save_embeddings"]
