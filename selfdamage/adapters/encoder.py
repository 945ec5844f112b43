"""The module that every adapter wraps: ``backbone -> flatten(1) -> head [-> predictor]``."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Encoder"]


class Encoder(nn.Module):
    """``backbone -> flatten(start_dim=1) -> head [-> predictor]``: what the twin is made of.

    Its names (``backbone.*``, ``head.*``, ``predictor.*``) are those a ``prunable``
    predicate sees and the checkpoint keys under ``wrapper.model.``.

    Args:
        backbone: Gives ``feature_dim`` features per sample after ``flatten(start_dim=1)``.
        head: The projection head.
        feature_dim: The backbone's number of features per sample.
        predictor: The prediction head after ``head``; None for no predictor.
    """

    predictor: nn.Module | None

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        feature_dim: int,
        predictor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.predictor = predictor
        self.feature_dim = feature_dim

    def features(self, x: Tensor) -> Tensor:
        """The backbone's output flattened to ``(N, feature_dim)``.

        Raises:
            ValueError: If the flattened output does not have ``feature_dim`` columns.
        """
        features: Tensor = self.backbone(x).flatten(start_dim=1)
        if features.shape[1] != self.feature_dim:
            raise ValueError(
                f"The backbone's output flattens to {features.shape[1]} features per sample "
                f"but feature_dim={self.feature_dim}. Pass the backbone's output size as "
                "feature_dim; a backbone that returns a feature map (N, C, H, W) needs its "
                "global pooling included, e.g. nn.Sequential(*children, nn.AdaptiveAvgPool2d(1))."
            )
        return features

    def forward(
        self, x: Tensor, *, with_projection: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The projection, or the prediction where there is a predictor.

        Args:
            x: An input batch.
            with_projection: Return ``(projection, prediction)`` of the same pass (SimSiam,
                NNCLR); needs a predictor.
        """
        projection: Tensor = self.head(self.features(x))
        if self.predictor is None:
            if with_projection:
                raise ValueError(
                    "with_projection=True returns (projection, prediction), but this "
                    "encoder has no predictor."
                )
            return projection
        prediction: Tensor = self.predictor(projection)
        return (projection, prediction) if with_projection else prediction
