"""A MobileNetV2-shaped torch network (Sandler et al. 2018 layout) with random weights.

Same layer list as torchvision's ``mobilenet_v2`` (52 convolutions incl. 17 depthwise, one classifier,
BatchNorm + ReLU6, inverted residuals with skip connections), written out here so the benchmark needs
no extra package and no download. Only its shapes matter: the scoring benchmark times forwards.
"""
from __future__ import annotations

# (expansion t, output channels c, repeats n, first stride s) per stage
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1))


def mobilenet_v2(num_classes: int = 1000, width: float = 1.0, seed: int = 0):
    """An eval-mode MobileNetV2 with seeded random weights and BatchNorm statistics."""
    import torch
    from torch import nn

    def conv_bn(cin, cout, k, stride, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hidden = cin * t
            layers = [conv_bn(cin, hidden, 1, 1)] if t != 1 else []
            layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, 1, act=False)]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            c = int(32 * width)
            feats = [conv_bn(3, c, 3, 2)]
            for t, cout, n, s in STAGES:
                cout = int(cout * width)
                for i in range(n):
                    feats.append(InvertedResidual(c, cout, s if i == 0 else 1, t))
                    c = cout
            feats.append(conv_bn(c, 1280, 1, 1))
            self.features = nn.Sequential(*feats)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def forward(self, x):
            x = self.features(x)
            x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
            return self.classifier(x)

    torch.manual_seed(seed)
    model = MobileNetV2()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, as in a trained network
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
    return model.eval()
