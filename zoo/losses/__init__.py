"""Losses: the Hungarian set criterion and its matcher and point sampling."""

from zoo.losses.criterion import SetCriterion
from zoo.losses.matcher import HungarianMatcher
from zoo.losses.points import point_sample, uncertainty_points
from zoo.losses.seem import SeemCriterion

__all__ = ["HungarianMatcher", "SeemCriterion", "SetCriterion", "point_sample", "uncertainty_points"]
