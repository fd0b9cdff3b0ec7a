"""The sampling network in ONNX Runtime.

Sampling and SFBD's backward step call one fixed network thousands of times. In fp32 on the CPU,
ONNX Runtime runs the UNet's forward pass faster than torch on 2 AVX2 cores (about 2x for the
default UNet at 28x28, 1.1-1.2x at 16x16), with outputs equal to about 1e-6 relative
(benchmarks/throughput.py --parts inference). `OnnxNet` wraps the torch network and exports it
again whenever one of its parameters or buffers has changed (training goes on between evaluations
and updates the EMA in place), so it never runs stale weights. Whatever it cannot
run (gradients, autocast, class labels, training mode, another device) goes to the torch network.
"""

from __future__ import annotations

import io
import itertools

import torch
from torch import nn

from attndiff import onnx_runtime


class OnnxNet(nn.Module):
    """F(x, c_noise) of `net` run by ONNX Runtime, re-exported when `net`'s weights change."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self._session, self._weights = None, None

    def _weights_state(self) -> tuple:
        """Where each weight lives and how often it was changed in place: differs after any update."""
        return tuple((t.data_ptr(), t._version) for t in itertools.chain(self.net.parameters(), self.net.buffers()))

    def _export(self, x: torch.Tensor, c_noise: torch.Tensor) -> None:
        graph = io.BytesIO()
        onnx_runtime.export(self.net, (x[:2], c_noise[:2]), ["x", "c_noise"], ["f"], graph)
        self._session = onnx_runtime.session(graph.getvalue(), torch.get_num_threads())
        self._weights = self._weights_state()

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None):
        if (class_labels is not None or self.net.training or torch.is_grad_enabled() or x.device.type != "cpu"
                or x.dtype != torch.float32 or torch.is_autocast_enabled("cpu")):
            return self.net(x, c_noise, class_labels)
        if self._weights != self._weights_state():
            self._export(x, c_noise)
        inputs = {"x": x.contiguous().numpy(), "c_noise": c_noise.float().contiguous().numpy()}
        return torch.from_numpy(self._session.run(None, inputs)[0])
