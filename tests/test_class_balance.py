"""Inception-Score-style class balance against a direct computation, and its bounds."""

import math

import numpy as np
import pytest

from extensions.metrics import MetricError
from extensions.metrics.class_balance import class_balance_score


def direct(probs):
    """exp of the mean over images of sum_y p(y|x) log(p(y|x) / p(y)), one image and class at a time."""
    n, classes = len(probs), len(probs[0])
    marginal = [sum(probs[i][y] for i in range(n)) / n for y in range(classes)]
    kl = [sum(probs[i][y] * math.log(probs[i][y] / marginal[y]) for y in range(classes) if probs[i][y] > 0)
          for i in range(n)]
    return math.exp(sum(kl) / n)


def test_equals_the_direct_computation_on_softmax_outputs():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3, size=(64, 10))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert class_balance_score(probs) == pytest.approx(direct(probs.tolist()), rel=1e-12)
    probs[:, 3] = 0  # a class no image can be: 0 log 0 = 0
    probs /= probs.sum(axis=1, keepdims=True)
    assert class_balance_score(probs) == pytest.approx(direct(probs.tolist()), rel=1e-12)


def test_confident_balanced_classes_reach_the_number_of_classes_and_one_class_scores_one():
    onehot = np.eye(10)[np.repeat(np.arange(10), 3)]
    assert class_balance_score(onehot) == pytest.approx(10)
    assert class_balance_score(np.eye(10)[np.zeros(30, dtype=int)]) == pytest.approx(1)
    assert class_balance_score(np.full((30, 10), 0.1)) == pytest.approx(1)  # balanced but never confident


def test_bad_probabilities_are_typed_errors():
    with pytest.raises(MetricError, match="sums to 2.0"):
        class_balance_score([[1.0, 1.0], [0.5, 0.5]])
    with pytest.raises(MetricError, match="non-finite"):
        class_balance_score([[np.nan, 1.0], [0.5, 0.5]])
    with pytest.raises(MetricError, match=r"shape \(n, C\)"):
        class_balance_score([0.5, 0.5])
