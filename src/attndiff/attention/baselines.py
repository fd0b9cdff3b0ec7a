"""A reference classifier for the real-text tasks: logistic regression on bag-of-words features."""

from __future__ import annotations

import numpy as np
import torch

from attndiff.attention.task import PAD, Corpus


def bag_of_words_baseline(corpus: Corpus) -> float:
    """Test accuracy of a logistic regression on binary bag-of-words features (same vocabulary and split)."""
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    def features(split):
        tokens, labels = corpus.part(split)
        rows = torch.arange(len(tokens))[:, None].expand_as(tokens)[tokens != PAD].numpy()
        cols = tokens[tokens != PAD].numpy()
        x = csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(tokens), len(corpus.words)))
        x.data[:] = 1.0  # presence, not counts
        return x, labels.numpy()

    x, y = features("train")
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(x, y)
    xt, yt = features("test")
    return float(clf.score(xt, yt))
