"""The ResNet of detectron2's C4 detectors, with detectron2's parameter names.

``stem`` (conv1 + frozen BN + ReLU + max pool) and ``res2``..``res4`` are the backbone;
``res5`` is built separately, because a C4 Faster R-CNN runs it per region, inside the
box head. Every conv carries its frozen batch norm as a child named ``norm``, so the
state-dict keys are detectron2's own (``backbone.res2.0.conv1.norm.running_mean``) and a
detectron2 checkpoint loads without renaming.

Caffe-trained weights (the MSRA ResNets under bottom-up attention) put a block's stride
on its first 1x1 conv (``stride_in_1x1``) and pool the stem with Caffe's rounding
(``ceil_mode``, no padding); both are options.

Batches of different-sized images are zero-padded to one size. A conv reading across an
image's edge would then see the padding's activations (ReLU of a BN shift) where a
single image sees its conv's zero padding, and edge features would drift. So with
``sizes`` given, every activation outside each image's own extent is zeroed before the
next spatial op reads it: a padded batch then computes what one image alone computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

#: Bottleneck blocks per stage (res2, res3, res4, res5) by depth.
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def halved(sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Extents after a stride-2 conv with "same" padding (ceil of half)."""
    return [((h + 1) // 2, (w + 1) // 2) for h, w in sizes]


def caffe_pooled(sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Extents after a 3x3/2 max pool without padding, rounding up."""
    return [(-(-(h - 3) // 2) + 1, -(-(w - 3) // 2) + 1) for h, w in sizes]


def mask_outside(x: torch.Tensor, sizes: list[tuple[int, int]] | None) -> torch.Tensor:
    """``x`` with every position outside image i's (h, w) set to zero."""
    if sizes is None:
        return x
    h_max, w_max = x.shape[-2:]
    if all(h == h_max and w == w_max for h, w in sizes):
        return x
    rows = torch.arange(h_max, device=x.device)
    cols = torch.arange(w_max, device=x.device)
    hs = torch.tensor([h for h, _ in sizes], device=x.device)
    ws = torch.tensor([w for _, w in sizes], device=x.device)
    mask = (rows[None, :, None] < hs[:, None, None]) & (cols[None, None, :] < ws[:, None, None])
    return x * mask[:, None].to(x.dtype)


class ConvNorm(nn.Conv2d):
    """A bias-free conv followed by its frozen BN, kept as the child ``norm``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1):
        padding = dilation * (kernel - 1) // 2
        super().__init__(cin, cout, kernel, stride, padding, dilation=dilation, bias=False)
        self.norm = FrozenBatchNorm2d(cout, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 with a projection shortcut when the shape changes."""

    def __init__(
        self,
        cin: int,
        cout: int,
        mid: int,
        stride: int,
        stride_in_1x1: bool,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride) if cin != cout or stride != 1 else None
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(cin, mid, 1, s1)
        self.conv2 = ConvNorm(mid, mid, 3, s3, dilation)
        self.conv3 = ConvNorm(mid, cout, 1)
        self.stride, self.stride_in_1x1 = stride, stride_in_1x1

    def out_sizes(self, sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return halved(sizes) if self.stride == 2 else sizes

    def forward(self, x: torch.Tensor, sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        if sizes is not None:  # the 3x3 conv reads neighbours: clear the padding first
            inner = self.out_sizes(sizes) if self.stride_in_1x1 else sizes
            out = mask_outside(out, inner)
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        identity = x if self.shortcut is None else self.shortcut(x)
        out = F.relu_(out + identity)
        return out if sizes is None else mask_outside(out, self.out_sizes(sizes))


def stage(
    blocks: int, cin: int, cout: int, stride: int, stride_in_1x1: bool, dilation: int = 1
) -> nn.Sequential:
    """``blocks`` bottlenecks; the first changes the width and applies ``stride``."""
    mid = cout // 4
    layers = [Bottleneck(cin, cout, mid, stride, stride_in_1x1, dilation)]
    layers += [Bottleneck(cout, cout, mid, 1, stride_in_1x1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class Stem(nn.Module):
    """7x7/2 conv, frozen BN, ReLU, 3x3/2 max pool (Caffe rounding when ``caffe_pool``)."""

    def __init__(self, caffe_pool: bool) -> None:
        super().__init__()
        self.conv1 = ConvNorm(3, 64, 7, 2)
        self.caffe_pool = caffe_pool

    def forward(self, x: torch.Tensor, sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        x = mask_outside(F.relu_(self.conv1(x)), None if sizes is None else halved(sizes))
        # post-ReLU values are >= 0, so the zeros around an image never win a max
        if self.caffe_pool:
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)

    def out_sizes(self, sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return caffe_pooled(halved(sizes)) if self.caffe_pool else halved(halved(sizes))


class ResNetC4(nn.Module):
    """stem + res2..res4: a stride-16, 1024-channel feature map."""

    def __init__(self, depth: int = 101, stride_in_1x1: bool = True, caffe_pool: bool = True):
        super().__init__()
        if depth not in BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(BLOCKS)}, got {depth}")
        n2, n3, n4, _ = BLOCKS[depth]
        self.stem = Stem(caffe_pool)
        self.res2 = stage(n2, 64, 256, 1, stride_in_1x1)
        self.res3 = stage(n3, 256, 512, 2, stride_in_1x1)
        self.res4 = stage(n4, 512, 1024, 2, stride_in_1x1)

    def forward(self, x: torch.Tensor, sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """res4 features; ``sizes`` (each image's (h, w) in the padded batch) keeps
        padding out of every image's features. Returns the features (stride 16)."""
        x = self.stem(x, sizes)
        sizes = None if sizes is None else self.stem.out_sizes(sizes)
        for stage_ in (self.res2, self.res3, self.res4):
            for block in stage_:
                x = block(x, sizes)
                sizes = None if sizes is None else block.out_sizes(sizes)
        return x

    def out_sizes(self, sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Each image's extent in the res4 map."""
        sizes = self.stem.out_sizes(sizes)
        for stage_ in (self.res2, self.res3, self.res4):
            for block in stage_:
                sizes = block.out_sizes(sizes)
        return sizes


def res5_head(depth: int = 101, stride_in_1x1: bool = True, dilation: int = 1) -> nn.Sequential:
    """res5 (1024 -> 2048 channels), run on each pooled region."""
    stride = 1 if dilation > 1 else 2
    return stage(BLOCKS[depth][3], 1024, 2048, stride, stride_in_1x1, dilation)
