"""Weight-enabling layers: one weight tensor, several block-diagonal patterns.

A layer with ``n`` groups enables only the ``n`` diagonal blocks of its full
weight matrix (WeNet, Ma & Reda 2023), which is exactly a grouped operation.
The blocks are gathered from the single stored tensor at forward time (a
temporary, never kept), so switching ``n`` copies nothing and the parameters
never change shape.
"""

import torch
from torch import nn
import torch.nn.functional as F

GROUP_CHOICES = (1, 2, 4, 8, 16)


def supported_groups(in_channels, out_channels, choices=GROUP_CHOICES):
    """Group counts from ``choices`` that evenly divide both channel counts."""
    return tuple(n for n in choices if in_channels % n == 0 and out_channels % n == 0)


def _check_groups(layer, groups):
    if groups not in layer.group_choices:
        raise ValueError(
            f'{layer.name}: {groups!r} groups do not fit {layer.in_channels} input / '
            f'{layer.out_channels} output channels; allowed: {layer.group_choices}')


class GroupConv2d(nn.Module):
    """A convolution whose weight can be enabled as 1, 2, 4, ... diagonal blocks."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 name='conv', choices=GROUP_CHOICES):
        super().__init__()
        self.name = name
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.group_choices = supported_groups(in_channels, out_channels, choices)
        if not self.group_choices:
            raise ValueError(f'{name}: no group count in {choices} divides {in_channels} '
                             f'input and {out_channels} output channels')
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels,
                                               kernel_size, kernel_size))
        # Initialised as the dense layer would be; every pattern shares this tensor.
        nn.init.kaiming_normal_(self.weight, mode='fan_out', nonlinearity='relu')
        self.groups = 1

    def set_groups(self, groups):
        _check_groups(self, groups)
        self.groups = groups

    def enabled_weight(self):
        """The diagonal blocks in the ``[out, in / n, k, k]`` layout of a grouped conv."""
        n = self.groups
        if n == 1:
            return self.weight
        out_per, in_per, k = self.out_channels // n, self.in_channels // n, self.kernel_size
        blocks = self.weight.view(n, out_per, n, in_per, k, k)
        diagonal = torch.diagonal(blocks, dim1=0, dim2=2)  # [out/n, in/n, k, k, n]
        return diagonal.permute(4, 0, 1, 2, 3).reshape(self.out_channels, in_per, k, k)

    def forward(self, x):
        if self.kernel_size == 1 and self.padding == 0:
            return self._pointwise(x)
        return F.conv2d(x, self.enabled_weight(), None, self.stride, self.padding, 1,
                        self.groups)

    def _pointwise(self, x):
        # PyTorch's CPU grouped 1x1 conv loops over the groups, so more groups run
        # *slower* than the dense layer at batch 1; as one batched matmul over the
        # enabled blocks the time falls with the work instead.
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        batch, _, height, width = x.shape
        n = self.groups
        x = x.reshape(batch, n, self.in_channels // n, height * width)
        weight = self.enabled_weight().reshape(n, self.out_channels // n, self.in_channels // n)
        return torch.matmul(weight, x).view(batch, self.out_channels, height, width)

    def extra_repr(self):
        return (f'{self.name}: {self.in_channels}->{self.out_channels}, k={self.kernel_size}, '
                f's={self.stride}, groups={self.groups} of {self.group_choices}')


class GroupLinear(nn.Module):
    """A fully connected layer with the same block-diagonal weight enabling."""

    def __init__(self, in_features, out_features, name='linear', choices=GROUP_CHOICES):
        super().__init__()
        self.name = name
        self.in_channels, self.out_channels = in_features, out_features
        self.group_choices = supported_groups(in_features, out_features, choices)
        if not self.group_choices:
            raise ValueError(f'{name}: no group count in {choices} divides {in_features} '
                             f'input and {out_features} output features')
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.groups = 1

    def set_groups(self, groups):
        _check_groups(self, groups)
        self.groups = groups

    def enabled_weight(self):
        """The diagonal blocks as ``[n, out / n, in / n]`` for a batched matmul."""
        n = self.groups
        blocks = self.weight.view(n, self.out_channels // n, n, self.in_channels // n)
        return torch.diagonal(blocks, dim1=0, dim2=2).permute(2, 0, 1)

    def forward(self, x):
        n = self.groups
        if n == 1:
            return F.linear(x, self.weight, self.bias)
        batch = x.shape[:-1]
        x = x.reshape(-1, n, self.in_channels // n).transpose(0, 1)  # [n, B, in/n]
        y = torch.bmm(x, self.enabled_weight().transpose(1, 2))    # [n, B, out/n]
        return y.transpose(0, 1).reshape(*batch, self.out_channels) + self.bias

    def extra_repr(self):
        return (f'{self.name}: {self.in_channels}->{self.out_channels}, '
                f'groups={self.groups} of {self.group_choices}')


class SwitchableBatchNorm(nn.Module):
    """Private batch-norm statistics and affine parameters per group count.

    Each enabled pattern produces differently distributed activations, so
    sharing one set of running statistics between them would fit none. In
    eval mode ``statistics`` (mean, var), when set, replaces the running
    statistics: those are calibrated for one whole-network configuration.
    """

    def __init__(self, num_features, choices, dims=2):
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f'dims: must be 1 (features) or 2 (images), got {dims!r}')
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.group_choices = tuple(choices)
        self.norms = nn.ModuleDict({str(n): norm(num_features) for n in self.group_choices})
        self.groups = self.group_choices[0]
        self.statistics = None

    def set_groups(self, groups):
        if groups not in self.group_choices:
            raise ValueError(f'batch norm: no private statistics for {groups!r} groups; '
                             f'has {self.group_choices}')
        self.groups = groups

    def active(self):
        return self.norms[str(self.groups)]

    def forward(self, x):
        norm = self.active()
        if self.training or self.statistics is None:
            return norm(x)
        mean, var = self.statistics
        return F.batch_norm(x, mean, var, norm.weight, norm.bias, False, 0.0, norm.eps)


def channel_shuffle(x, groups):
    """Interleave the channels of ``groups`` groups so the next grouped layer mixes them."""
    if groups == 1:
        return x
    batch, channels = x.shape[:2]
    return (x.reshape(batch, groups, channels // groups, *x.shape[2:])
            .transpose(1, 2).reshape(x.shape))


def channel_unshuffle(x, groups):
    """Inverse of :func:`channel_shuffle`."""
    if groups == 1:
        return x
    batch, channels = x.shape[:2]
    return (x.reshape(batch, channels // groups, groups, *x.shape[2:])
            .transpose(1, 2).reshape(x.shape))
