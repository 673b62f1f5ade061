import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from hunyuan_video.train.losses import (
    LPIPS,
    PatchDiscriminator3D,
    adaptive_weight,
    hinge_d_loss,
    load_lpips,
    psnr,
    reconstruction_loss,
    ssim,
)


def _lpips_files(tmp_path):
    """Random weights in the two standard layouts: torchvision's vgg16 state dict and LPIPS' linear layers."""
    torch.manual_seed(0)
    ref = LPIPS()
    vgg = {f"features.{k}": v.clone() for k, v in ref.net.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.randn(4, 4)  # torchvision's file also holds the classifier
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(vgg, tmp_path / "vgg16.pth")
    save_file(lin, tmp_path / "lpips_vgg.safetensors")
    return vgg, lin


def _reference_lpips(vgg, lin, x, y):
    """LPIPS written out layer by layer with functional ops, as a second opinion on the module."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    pools_before = {5, 10, 17, 24}
    taps = {2: 0, 7: 1, 14: 2, 21: 3, 28: 4}

    def feats(t):
        t = (t - shift) / scale
        out = []
        for i in convs:
            if i in pools_before:
                t = F.max_pool2d(t, 2)
            t = F.relu(F.conv2d(t, vgg[f"features.{i}.weight"], vgg[f"features.{i}.bias"], padding=1))
            if i in taps:
                out.append(t / (t.norm(dim=1, keepdim=True) + 1e-10))
        return out

    return sum(
        F.conv2d((a - b) ** 2, lin[f"lin{k}.model.1.weight"]).mean(dim=(1, 2, 3))
        for k, (a, b) in enumerate(zip(feats(x), feats(y)))
    )


def test_lpips_loads_the_standard_files_and_matches_a_functional_reference(tmp_path):
    vgg, lin = _lpips_files(tmp_path)
    model = load_lpips(tmp_path / "vgg16.pth", tmp_path / "lpips_vgg.safetensors")
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    d = model(x, y)
    torch.testing.assert_close(d, _reference_lpips(vgg, lin, x, y), rtol=1e-4, atol=1e-6)
    assert d.shape == (2,) and (d > 0).all()
    torch.testing.assert_close(model(x, x), torch.zeros(2))
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training
    x.requires_grad_(True)
    model(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_lpips_rejects_missing_or_wrong_files(tmp_path):
    _lpips_files(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        load_lpips(tmp_path / "nope.pth", tmp_path / "lpips_vgg.safetensors")
    with pytest.raises(ValueError, match="not a torchvision VGG16"):
        load_lpips(tmp_path / "lpips_vgg.safetensors", tmp_path / "lpips_vgg.safetensors")
    with pytest.raises(ValueError, match="not an LPIPS"):
        load_lpips(tmp_path / "vgg16.pth", tmp_path / "vgg16.pth")


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_patch_discriminator_scores_videos_and_images(frames):
    disc = PatchDiscriminator3D(channels=8, n_layers=2)
    logits = disc(torch.randn(2, 3, frames, 32, 32))
    assert logits.ndim == 5 and logits.shape[:2] == (2, 1) and logits.shape[-1] > 1


def test_hinge_loss_and_adaptive_weight():
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)) == 0
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)) == 1
    last = nn.Parameter(torch.ones(3))
    rec = (last * torch.tensor([1.0, 2.0, 2.0])).sum()  # gradient norm 3
    g = (last * 0.5).sum()  # gradient norm sqrt(3)/2
    w = adaptive_weight(rec, g, last)
    torch.testing.assert_close(w, torch.tensor(3.0 / (3**0.5 / 2 + 1e-4)))
    assert not w.requires_grad


def test_psnr_and_ssim():
    x = torch.rand(2, 3, 5, 24, 24) * 2 - 1
    y = x + 0.02  # a shift of 0.01 on the [0, 1] scale: MSE 1e-4, PSNR 40 dB
    torch.testing.assert_close(psnr(x, y), torch.full((2,), 40.0))
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    noisy = ssim(x, (x + 0.5 * torch.randn_like(x)).clamp(-1, 1))
    assert (noisy < 0.9).all() and (ssim(x, y) > noisy).all()
    with pytest.raises(ValueError, match="equal shapes"):
        ssim(x, x[:, :, :1])


def test_reconstruction_losses():
    x = torch.rand(2, 3, 5, 8, 8) * 2 - 1
    y = (x + torch.randn_like(x) * torch.tensor([0.01, 0.3]).view(2, 1, 1, 1, 1)).requires_grad_()
    error = y - x
    torch.testing.assert_close(reconstruction_loss(error, "l1"), error.abs().mean())
    torch.testing.assert_close(reconstruction_loss(error, "mse"), error.pow(2).mean())
    # log_mse is minus the mean PSNR in natural-log units, up to a constant: log(MSE) = log(4) - PSNR ln(10) / 10
    log_mse = reconstruction_loss(error, "log_mse")
    torch.testing.assert_close(log_mse, math.log(4) - psnr(y, x).mean() * math.log(10) / 10)
    # so each clip's gradient is the plain MSE's divided by that clip's MSE: the clean one (900x less) is not drowned
    (grad,) = torch.autograd.grad(log_mse, y, retain_graph=True)
    (mse_grad,) = torch.autograd.grad(reconstruction_loss(error, "mse"), y)
    clip_mse = error.detach().pow(2).flatten(1).mean(1).view(2, 1, 1, 1, 1)
    torch.testing.assert_close(grad, mse_grad / clip_mse)
    with pytest.raises(ValueError, match="rec_loss 'l2'"):
        reconstruction_loss(error, "l2")
