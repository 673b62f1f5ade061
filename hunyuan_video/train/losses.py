"""VAE training losses and measures: LPIPS (VGG16 in plain torch), a 3D patch discriminator, hinge loss, the
adaptive GAN weight, PSNR and SSIM.

LPIPS needs two pretrained files that nothing here downloads: torchvision's VGG16 state dict
(`vgg16-397923af.pth`, keys `features.N.weight`) and the LPIPS v0.1 linear layers (`lpips/weights/v0.1/vgg.pth`,
keys `linK.model.1.weight`). `load_lpips` reads both from local paths (`.pth`/`.pt` or `.safetensors`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# VGG16's convolution widths; "M" is a 2x2 max-pool. The layer indices match torchvision's `vgg16().features`.
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# LPIPS compares the ReLU outputs relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (indices in `features`).
_LPIPS_TAPS = (3, 8, 15, 22, 29)
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)


class VGG16Features(nn.Module):
    """The convolutional part of VGG16, returning the five activations LPIPS compares."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _LPIPS_TAPS:
                taps.append(x)
                if len(taps) == len(_LPIPS_TAPS):
                    break
        return taps


class LPIPS(nn.Module):
    """The LPIPS distance (Zhang et al. 2018, VGG variant) between images in [-1, 1]; frozen, always in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        # LPIPS' input scaling: ImageNet statistics expressed for [-1, 1] inputs.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.net = VGG16Features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _LPIPS_CHANNELS)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distance, shape (N,), for x, y shaped (N, 3, H, W)."""
        fx = self.net((x - self.shift) / self.scale)
        fy = self.net((y - self.shift) / self.scale)
        total = 0
        for a, b, lin in zip(fx, fy, self.lins):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((a - b).pow(2)).mean(dim=(1, 2, 3))
        return total


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"LPIPS weight file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def load_lpips(vgg_path: str | Path, lin_path: str | Path) -> LPIPS:
    """LPIPS from torchvision's VGG16 state dict and the LPIPS v0.1 VGG linear layers (local files)."""
    model = LPIPS()
    vgg = {k: v for k, v in _read_state_dict(vgg_path).items() if k.startswith("features.")}
    missing = set(model.net.state_dict()) - set(vgg)
    if missing:
        raise ValueError(f"{vgg_path} is not a torchvision VGG16 state dict: missing {sorted(missing)[:3]}...")
    model.net.load_state_dict(vgg)
    lin = _read_state_dict(lin_path)
    try:
        lins = {f"{k}.weight": lin[f"lin{k}.model.1.weight"] for k in range(len(_LPIPS_CHANNELS))}
    except KeyError as e:
        raise ValueError(f"{lin_path} is not an LPIPS v0.1 VGG linear-layer file: no key {e}") from e
    model.lins.load_state_dict(lins)
    return model


class PatchDiscriminator3D(nn.Module):
    """A PatchGAN over space-time: strided 3D convolutions that score overlapping patches of a video as real or fake.

    Time is strided by 2 with kernel 3 (so a single image, T=1, works too); space by 2 with kernel 4.
    GroupNorm instead of BatchNorm keeps the scores independent of the batch size (batches are 1-4 clips).
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, channels, (3, 4, 4), stride=(2, 2, 2), padding=1),
            nn.LeakyReLU(0.2),
        ]
        width = channels
        for i in range(1, n_layers + 1):
            last = i == n_layers
            out = channels * min(2**i, 8)
            stride = (1, 1, 1) if last else (2, 2, 2)
            layers += [
                nn.Conv3d(width, out, (3, 4, 4), stride=stride, padding=1, bias=False),
                nn.GroupNorm(min(32, out // 4), out),
                nn.LeakyReLU(0.2),
            ]
            width = out
        layers.append(nn.Conv3d(width, 1, (3, 4, 4), padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Patch logits for a video (B, C, T, H, W) in [-1, 1]."""
        return self.net(video)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss: push real scores above 1 and fake scores below -1."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4) -> torch.Tensor:
    """Balance the GAN loss against the reconstruction loss (Esser et al. 2021):
    `|grad_last(rec)| / (|grad_last(g)| + 1e-4)`, measured on the decoder's last layer and detached."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()


REC_LOSSES = ("l1", "mse", "log_mse")


def reconstruction_loss(error: torch.Tensor, kind: str) -> torch.Tensor:
    """The reconstruction term of a (B, ...) error (output - target): "l1", "mse", or "log_mse", the mean over samples
    of log(MSE), which is minus their mean PSNR times ln 10 / 10, so a clip's gradient is its squared error's divided by
    its MSE."""
    if kind == "l1":
        return error.abs().mean()
    if kind == "mse":
        return error.pow(2).mean()
    if kind == "log_mse":
        return error.pow(2).flatten(1).mean(1).clamp_min(1e-12).log().mean()
    raise ValueError(f"rec_loss {kind!r} is not one of {REC_LOSSES}")


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per sample, for tensors in [-1, 1] shaped (B, ...)."""
    mse = ((x.float() - y.float()) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per sample (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, on [0, 1] values),
    averaged over channels, frames and pixels; x, y in [-1, 1] shaped (B, C, T, H, W) or (B, C, H, W)."""
    if x.shape != y.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    b = x.shape[0]
    if x.ndim == 5:  # fold the frames into the batch
        x, y = (v.transpose(1, 2).flatten(0, 1) for v in (x, y))
    x, y = (x.float() + 1) / 2, (y.float() + 1) / 2
    c = x.shape[1]
    coords = torch.arange(window, dtype=torch.float32, device=x.device) - (window - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()
    blur = lambda t: F.conv2d(t, kernel, groups=c)
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx.pow(2), blur(y * y) - my.pow(2), blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx.pow(2) + my.pow(2) + c1) * (vx + vy + c2))
    return s.reshape(b, -1).mean(1)
