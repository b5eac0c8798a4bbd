"""Metrics of jeancore's models (expression transformer; more with the rendering issue)."""

from .expression import copy_previous_l1, linear_separability, mean_feature_l1

__all__ = ["copy_previous_l1", "linear_separability", "mean_feature_l1"]
