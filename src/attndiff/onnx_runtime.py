"""ONNX Runtime on the CPU: the same fp32 network, faster than torch here (benchmarks/README.md:
the Inception network at 2.7x, the default UNet at 2.0x at 28x28 and 1.1-1.2x at 16x16, on 2 cores).

The FID features (the Inception network) and the sampling network of a diffusion model (the
UNet that sampling and SFBD's backward step call thousands of times) both run through it when
onnxruntime and onnx are installed (the `fast` extra; `make setup` installs it). Without them
every caller falls back to torch.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

INSTALL = "pip install onnxruntime onnx"
OPSET = 17


def available() -> bool:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export(module: torch.nn.Module, example: tuple[torch.Tensor, ...], names: list[str], outputs: list[str],
           target: str | Path | io.BytesIO) -> None:
    """`module` as an ONNX graph with a dynamic batch axis on every input and output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(module, example, target if isinstance(target, io.BytesIO) else str(target), dynamo=False,
                          opset_version=OPSET, input_names=names, output_names=outputs,
                          dynamic_axes={name: {0: "batch"} for name in [*names, *outputs]})


def session(model: str | Path | bytes, threads: int):
    """A CPU inference session of an ONNX file or serialised graph, on `threads` threads that do
    not spin when idle (so that they leave torch the cores between calls)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                        providers=["CPUExecutionProvider"])
