"""Metrics of jeancore's models (expression transformer; more with the rendering issue)."""

from .expression import linear_separability, mean_feature_l1

__all__ = ["linear_separability", "mean_feature_l1"]
