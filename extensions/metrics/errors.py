"""Typed errors of the metric code."""

from __future__ import annotations

from .._checks import HubnessError


class MetricError(HubnessError):
    """Bad input to a metric (features, statistics, options); a ValueError, so callers can catch either."""


class DetectorUnavailableError(FileNotFoundError):
    """A feature detector pickle could neither be found locally nor downloaded.

    The message names the file and every place it is looked up, so a user on an offline machine knows
    where to put it.
    """
