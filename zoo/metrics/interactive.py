"""NoC@t and mIoU after N clicks over many simulated click sessions (see `zoo.metrics.clicks`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from zoo.metrics.clicks import number_of_clicks


class ClickMetric(Metric):
    """Mean NoC at each IoU threshold and mean IoU after given click counts, DDP-safe (sums only).

    A session that stopped early (it reached the last threshold, or the prediction became exact) keeps its last
    IoU for later click counts: the simulator only stops once nothing is left to improve that NoC measures.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        thresholds: Sequence[float] = (0.85, 0.9),
        max_clicks: int = 20,
        report_clicks: Sequence[int] = (1,),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.thresholds = tuple(thresholds)
        self.max_clicks = max_clicks
        self.report_clicks = tuple(report_clicks)
        self.add_state("noc_sum", default=torch.zeros(len(self.thresholds), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state(
            "iou_sum", default=torch.zeros(len(self.report_clicks), dtype=torch.double), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, sessions: Sequence[Sequence[float]]) -> None:
        """Add sessions, each the IoU after click 1, 2, ... of one target."""
        for ious in sessions:
            if not ious:
                raise ValueError("a click session must have at least one click")
            nocs = [number_of_clicks(ious, t, self.max_clicks) for t in self.thresholds]
            self.noc_sum += torch.tensor(nocs, device=self.noc_sum.device)
            at = [ious[min(k, len(ious)) - 1] for k in self.report_clicks]
            self.iou_sum += torch.tensor(at, dtype=torch.double, device=self.iou_sum.device)
            self.count += 1

    def compute(self) -> dict[str, float]:
        """`noc85`, `noc90` (clicks) and `miou_1click` (fraction), named after the thresholds and click counts."""
        count = max(int(self.count), 1)
        out = {f"noc{round(100 * t)}": float(s) / count for t, s in zip(self.thresholds, self.noc_sum, strict=True)}
        out.update({f"miou_{k}click": float(s) / count for k, s in zip(self.report_clicks, self.iou_sum, strict=True)})
        return out
