"""LeNet-5-style CNN for 8x8 digits, built in each framework from one set of weights (torch layout).

conv1 6@3x3 pad 1 -> ReLU -> maxpool 2 -> conv2 16@3x3 pad 1 -> ReLU -> maxpool 2 -> conv3 120@2x2
-> ReLU -> fc1 84 -> ReLU -> fc2 10. Weight counts 54 / 864 / 7680 / 10080 / 840.
"""
from __future__ import annotations

import numpy as np


def torch_module():
    import torch
    from torch import nn

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
            self.conv2 = nn.Conv2d(6, 16, 3, padding=1)
            self.conv3 = nn.Conv2d(16, 120, 2)
            self.fc1 = nn.Linear(120, 84)
            self.fc2 = nn.Linear(84, 10)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(torch.relu(self.conv1(x)))
            x = self.pool(torch.relu(self.conv2(x)))
            x = torch.relu(self.conv3(x)).flatten(1)
            return self.fc2(torch.relu(self.fc1(x)))

    return LeNet5()


def torch_model(weights: dict[str, np.ndarray]):
    import torch

    model = torch_module()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    return model.eval()
