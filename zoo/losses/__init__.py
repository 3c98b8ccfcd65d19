"""Losses: the criterion contract, the Hungarian set criterion (and SEEM's), its matcher and point sampling."""

from zoo.losses.base import Criterion
from zoo.losses.criterion import SetCriterion
from zoo.losses.matcher import HungarianMatcher
from zoo.losses.points import point_sample, uncertainty_points
from zoo.losses.seem import SeemCriterion

__all__ = ["Criterion", "HungarianMatcher", "SeemCriterion", "SetCriterion", "point_sample", "uncertainty_points"]
