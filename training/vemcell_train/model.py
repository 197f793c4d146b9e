"""The 2D attention U-Net of Kousaka et al. (Table 2), with a configurable width.

Four down and four up stages; every stage is two 3×3 convolutions each followed by batch
normalisation and ReLU; every decoder stage gates its encoder skip connection with an additive
attention gate (Oktay et al. 2018) before concatenation; a 1×1 convolution gives one score per
class. The paper's network starts at 64 channels (64-128-256-512-1024); ``base`` sets the first
width and the others double, so ``base=64`` is the paper's layout and the default ``base=16``
(1/16 of the multiply-adds) is what trains and runs in reasonable time on a 2-core CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DoubleConv(nn.Sequential):
    """Two (3×3 conv → batch norm → ReLU), with optional dropout between them."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        layers += [
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
        super().__init__(*layers)


class AttentionGate(nn.Module):
    """Additive attention gate: weights a skip connection by what the decoder asks for.

    ``alpha = sigmoid(psi(relu(W_g g + W_x x)))`` and the output is ``x * alpha``, with ``g``
    the (already upsampled) decoder features and ``x`` the encoder skip at the same size.
    """

    def __init__(self, c_gate: int, c_skip: int, c_inter: int) -> None:
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(c_gate, c_inter, 1, bias=False), nn.BatchNorm2d(c_inter))
        self.w_x = nn.Sequential(nn.Conv2d(c_skip, c_inter, 1, bias=False), nn.BatchNorm2d(c_inter))
        self.psi = nn.Sequential(nn.Conv2d(c_inter, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        alpha = self.psi(F.relu(self.w_g(g) + self.w_x(x)))
        return x * alpha


class UpStage(nn.Module):
    """Upsample ×2 (transposed conv), gate the skip, concatenate, two convolutions."""

    def __init__(self, cin: int, cskip: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.gate = AttentionGate(cout, cskip, max(cskip // 2, 1))
        self.conv = DoubleConv(cout + cskip, cout, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return self.conv(torch.cat([self.gate(x, skip), x], dim=1))


class AttentionUNet(nn.Module):
    """2D U-Net with attention-gated skips; returns class logits of shape (N, C, H, W).

    Parameters
    ----------
    n_classes : int
        Number of output classes.
    base : int
        Channels of the first stage; stage ``k`` has ``base * 2**k`` (paper: 64).
    depth : int
        Number of down (and up) stages (paper: 4). Inputs must be multiples of ``2**depth``.
    dropout : float
        Spatial dropout inside the bottleneck and the decoder stages (0 disables it).
    in_channels : int
        Input channels (1 for greyscale EM).
    """

    def __init__(
        self,
        n_classes: int = 6,
        base: int = 16,
        depth: int = 4,
        dropout: float = 0.1,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        widths = [base * 2**k for k in range(depth + 1)]
        self.depth = depth
        self.in_channels = in_channels
        self.down = nn.ModuleList()
        cin = in_channels
        for k, w in enumerate(widths):
            self.down.append(DoubleConv(cin, w, dropout if k == depth else 0.0))
            cin = w
        self.up = nn.ModuleList(
            UpStage(widths[k + 1], widths[k], widths[k], dropout) for k in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    @property
    def divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for k, stage in enumerate(self.down):
            if k:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for stage in self.up:
            x = stage(x, skips.pop())
        return self.head(x)


class SoftmaxModel(nn.Module):
    """Wraps a logits network so its output is per-class probabilities (what ONNX ships)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(image), dim=1)


def build_model(arch: dict) -> AttentionUNet:
    """A network from the ``arch`` dict stored in checkpoints (keys as the constructor)."""
    return AttentionUNet(
        n_classes=int(arch["n_classes"]),
        base=int(arch.get("base", 16)),
        depth=int(arch.get("depth", 4)),
        dropout=float(arch.get("dropout", 0.1)),
        in_channels=int(arch.get("in_channels", 1)),
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def add_context_into(dst: AttentionUNet, src: AttentionUNet) -> None:
    """Copy a single-slice ``src`` into ``dst``, which also sees neighbouring slices.

    The first convolution's weights go to the centre input channel and the neighbours' are
    zeroed, so ``dst`` starts out computing exactly what ``src`` does and learns from there
    how to use the slices above and below. Both networks must differ in their inputs only.
    """
    if src.in_channels != 1 or dst.in_channels % 2 == 0:
        raise ValueError("add_context_into: needs a 1-channel source and an odd channel count")
    state = src.state_dict()
    first = state["down.0.0.weight"]
    wide = torch.zeros(first.shape[0], dst.in_channels, *first.shape[2:], dtype=first.dtype)
    wide[:, dst.in_channels // 2] = first[:, 0]
    state["down.0.0.weight"] = wide
    dst.load_state_dict(state)


def widen_into(dst: AttentionUNet, src: AttentionUNet) -> None:
    """Copy ``src``'s weights into the wider ``dst`` so that ``dst`` computes the same function.

    Old channels keep their weights; the weights by which old channels would read the new ones
    are zeroed, so the output is unchanged, while the new channels start from their random
    initialisation and learn from the first step on (their outgoing weights are trained from zero).
    This is how a trained network gains capacity without starting over ("net2wider" with
    zero-initialised outgoing weights). Both networks must differ in ``base`` only.
    """
    layout = [len(dst.down) == len(src.down), len(list(dst.modules())) == len(list(src.modules()))]
    layout += [dst.head.out_channels == src.head.out_channels]
    layout += [dst.down[0][0].in_channels == src.down[0][0].in_channels]
    if not all(layout):
        raise ValueError("widen_into: the networks differ in more than their width")
    if any(d.out_channels < s.out_channels for d, s in _convs(dst, src)):
        raise ValueError("widen_into: the target network is narrower than the source")

    def span(n: int) -> torch.Tensor:
        return torch.arange(n)

    def conv(d: nn.Conv2d, s: nn.Conv2d, rows: torch.Tensor, cols: torch.Tensor) -> None:
        d.weight[rows] = 0.0
        d.weight[rows[:, None], cols[None, :]] = s.weight
        if s.bias is not None:
            d.bias[rows] = s.bias

    def norm(d: nn.BatchNorm2d, s: nn.BatchNorm2d, rows: torch.Tensor) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(d, name)[rows] = getattr(s, name)
        d.num_batches_tracked.copy_(s.num_batches_tracked)

    def double(d: DoubleConv, s: DoubleConv, cols: torch.Tensor) -> torch.Tensor:
        rows = span(s[0].out_channels)
        for dm, sm in zip(d, s, strict=True):
            if isinstance(sm, nn.Conv2d):
                conv(dm, sm, rows, cols)
                cols = rows
            elif isinstance(sm, nn.BatchNorm2d):
                norm(dm, sm, rows)
        return rows

    with torch.no_grad():
        cols = span(src.down[0][0].in_channels)
        for d, s in zip(dst.down, src.down, strict=True):
            cols = double(d, s, cols)
        for d, s in zip(dst.up, src.up, strict=True):
            rows = span(s.up.out_channels)
            d.up.weight[:, rows] = 0.0
            d.up.weight[cols[:, None], rows[None, :]] = s.up.weight
            d.up.bias[rows] = s.up.bias
            inter, skip = span(s.gate.w_g[0].out_channels), span(s.gate.w_x[0].in_channels)
            conv(d.gate.w_g[0], s.gate.w_g[0], inter, rows)
            norm(d.gate.w_g[1], s.gate.w_g[1], inter)
            conv(d.gate.w_x[0], s.gate.w_x[0], inter, skip)
            norm(d.gate.w_x[1], s.gate.w_x[1], inter)
            conv(d.gate.psi[0], s.gate.psi[0], span(1), inter)
            norm(d.gate.psi[1], s.gate.psi[1], span(1))
            # the decoder concatenates [gated skip, upsampled]: old channels sit at two offsets
            joined = torch.cat([skip, d.gate.w_x[0].in_channels + rows])
            cols = double(d.conv, s.conv, joined)
        conv(dst.head, src.head, span(src.head.out_channels), cols)


def _convs(dst: nn.Module, src: nn.Module):
    """Pairs of corresponding convolutions of two networks of the same layout."""
    pairs = zip(dst.modules(), src.modules(), strict=True)
    return [(d, s) for d, s in pairs if isinstance(s, nn.Conv2d | nn.ConvTranspose2d)]
