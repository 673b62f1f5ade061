import math

import pytest
import torch

from hunyuan_video.scheduler import add_noise, euler_step, sample_time, sampling_sigmas, time_shift, velocity_target


@pytest.mark.parametrize("steps,shift", [(1, 7.0), (4, 1.0), (30, 7.0), (50, 17.0)])
def test_sigmas_follow_the_formula(steps, shift):
    sigmas = sampling_sigmas(steps, shift)
    want = []
    for i in range(steps + 1):
        s = 1 - i / steps
        want.append(shift * s / (1 + (shift - 1) * s))
    assert sigmas.dtype == torch.float32 and sigmas.shape == (steps + 1,)
    torch.testing.assert_close(sigmas, torch.tensor(want, dtype=torch.float32), rtol=0, atol=1e-7)
    assert sigmas[0] == 1 and sigmas[-1] == 0 and (sigmas.diff() < 0).all()


def test_sigmas_and_steps_match_diffusers_flow_match_euler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    steps, shift = 12, 7.0
    ref = FlowMatchEulerDiscreteScheduler(shift=shift)
    ref.set_timesteps(sigmas=torch.linspace(1, 0, steps + 1)[:-1].tolist())
    sigmas = sampling_sigmas(steps, shift)
    torch.testing.assert_close(sigmas, ref.sigmas, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(sigmas[:-1] * 1000, ref.timesteps, rtol=1e-6, atol=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = want = torch.randn(2, 3, 4, generator=gen)
    for i, t in enumerate(ref.timesteps):
        v = torch.randn(2, 3, 4, generator=gen)
        want = ref.step(v, t, want, return_dict=False)[0]
        x = euler_step(x, v, sigmas[i], sigmas[i + 1])
    torch.testing.assert_close(x, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("steps,shift", [(1, 7.0), (7, 7.0), (25, 17.0)])
def test_constant_velocity_lands_where_the_ode_says(steps, shift):
    gen = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 5, generator=gen, dtype=torch.float64), torch.randn(3, 5, generator=gen,
                                                                                    dtype=torch.float64)
    v = velocity_target(x0, noise)  # the exact velocity of the straight path from x0 to noise
    sigmas = sampling_sigmas(steps, shift).double()
    x = noise
    for i in range(steps):
        x = euler_step(x, v, sigmas[i], sigmas[i + 1])
        # every intermediate point lies on the training path x_t = (1 - t) x0 + t noise
        torch.testing.assert_close(x, add_noise(x0, noise, sigmas[i + 1].expand(3)), rtol=0, atol=1e-12)
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-12)


def test_euler_step_keeps_the_latent_dtype():
    x = torch.zeros(2, dtype=torch.float32)
    out = euler_step(x, torch.ones(2, dtype=torch.bfloat16), 1.0, 0.75)
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((2,), -0.25))


def test_training_mix_and_target():
    x0, noise = torch.zeros(2, 1, 2), torch.ones(2, 1, 2)
    t = torch.tensor([0.25, 1.0])
    xt = add_noise(x0, noise, t)
    assert torch.equal(xt[0], torch.full((1, 2), 0.25)) and torch.equal(xt[1], noise[1])
    assert torch.equal(velocity_target(x0, noise), noise)


def test_time_samplers():
    gen = lambda: torch.Generator().manual_seed(0)
    uniform = sample_time(20000, "uniform", generator=gen())
    logit = sample_time(20000, "logit_normal", mean=1.0, std=0.5, generator=gen())
    shifted = sample_time(20000, "shifted", shift=3.0, generator=gen())
    for t in (uniform, logit, shifted):
        assert t.shape == (20000,) and (t > 0).all() and (t < 1).all()
    assert abs(uniform.mean() - 0.5) < 0.01
    assert abs(logit.median() - 1 / (1 + math.exp(-1.0))) < 0.01
    torch.testing.assert_close(shifted, time_shift(uniform, 3.0))  # same draws, shifted
    assert shifted.mean() > 0.6
    with pytest.raises(ValueError, match="logit_normal"):
        sample_time(4, "cosine")
    with pytest.raises(ValueError, match="at least 1"):
        sampling_sigmas(0)
    with pytest.raises(ValueError, match="positive"):
        sampling_sigmas(10, shift=0.0)
