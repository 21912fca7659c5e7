"""Small reference architectures for the bundled demo data."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["DigitsCNN", "MnistCNN", "TabularMLP", "build"]


class MnistCNN(nn.Module):
    """Two conv layers and two dense layers for 1x28x28 inputs in [0, 1]; ~100k parameters."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.features(x))
        return out


class DigitsCNN(nn.Module):
    """A tiny conv net for scikit-learn's 1x8x8 digits; trains in a couple of seconds."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out


class TabularMLP(nn.Module):
    """Two hidden layers for the 30 breast-cancer features scaled to [0, 1]."""

    def __init__(self, n_features: int = 30, num_classes: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, num_classes)
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out


def build(dataset: str) -> nn.Module:
    """The demo architecture for a bundled dataset."""
    architectures: dict[str, type[nn.Module]] = {"mnist": MnistCNN, "digits": DigitsCNN, "breast-cancer": TabularMLP}
    return architectures[dataset]()
