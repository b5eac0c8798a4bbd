"""Metrics of jeancore's models (expression transformer; more with the rendering issue)."""

from .expression import copy_previous_l1, linear_separability, mean_feature_l1
from . import face  # rendered faces: PSNR, SSIM, LMD, identity distance, Exp-Diff, ...

__all__ = ["copy_previous_l1", "linear_separability", "mean_feature_l1", "face"]
