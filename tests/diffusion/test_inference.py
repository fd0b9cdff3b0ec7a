import pytest
import torch

from attndiff import UserError
from attndiff.diffusion import model
from attndiff.diffusion.edm import EDMConfig
from attndiff.diffusion.inference import OnnxNet
from attndiff.diffusion.sampling import edm_sigmas, generate
from attndiff.diffusion.unet import UNet, UNetConfig, count_parameters

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

UNET = UNetConfig(channels=8, channel_mult=(1, 2), num_blocks=1, attn_levels=(1,))


def unet() -> UNet:
    torch.manual_seed(0)
    net = UNet(UNET, 1, 8).eval()
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised output layers would make every output 0
            p.normal_(0, 0.3)
    return net


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert (a - b).abs().max() <= 1e-4 * b.abs().max()
    assert b.abs().max() > 0.01  # not a trivially zero output


@torch.no_grad()
def test_onnx_network_equals_torch_at_other_batch_sizes():
    net = unet()
    fast = OnnxNet(net)
    for batch in (5, 1, 3):
        x, c = torch.randn(batch, 1, 8, 8), torch.randn(batch)
        assert_close(fast(x, c), net(x, c))


@torch.no_grad()
def test_onnx_network_follows_weights_changed_in_place():
    net, x, c = unet(), torch.randn(4, 1, 8, 8), torch.randn(4)
    fast = OnnxNet(net)
    before = fast(x, c)
    ema = unet()
    for p in ema.parameters():
        p.mul_(-0.5)
    for p_net, p_ema in zip(net.parameters(), ema.parameters()):  # an EMA update, in place
        p_net.lerp_(p_ema, 0.5)
    after = fast(x, c)
    assert_close(after, net(x, c))
    assert (after - before).abs().max() > 0.1
    net.load_state_dict(unet().state_dict())  # a checkpoint loaded into the same network
    assert_close(fast(x, c), before)


def test_what_onnx_cannot_run_goes_to_torch():
    net, x, c = unet(), torch.randn(2, 1, 8, 8), torch.randn(2)
    out = OnnxNet(net)(x, c)  # gradients enabled: torch's graph
    assert out.requires_grad
    with torch.no_grad():
        assert torch.equal(OnnxNet(net.train())(x, c), net(x, c))  # training mode (dropout): torch


def spec(**kw) -> model.ModelSpec:
    return model.ModelSpec(model.recipe("none"), None, UNET, EDMConfig(), (1, 8, 8), **kw)


def test_the_spec_chooses_onnx_for_the_plain_unet_in_fp32_on_the_cpu():
    net = unet()
    assert isinstance(spec(precision="fp32", backend="onnx").inference_net(net), OnnxNet)
    assert spec(precision="fp32").inference_net(net) is net  # auto: too small to repay an export
    large = UNet(UNetConfig(channels=32, channel_mult=(1, 2), num_blocks=1, attn_levels=(1,)), 1, 8)
    assert count_parameters(large) >= model.ONNX_MIN_PARAMETERS
    assert isinstance(spec(precision="fp32").inference_net(large), OnnxNet)
    assert spec(precision="fp32", backend="torch").inference_net(net) is net
    assert spec(precision="bf16").inference_net(net) is net
    with pytest.raises(UserError, match="onnx"):
        spec(precision="bf16", backend="onnx").inference_net(net)
    with pytest.raises(UserError, match="backend"):
        spec(backend="tensorrt").inference_net(net)


def test_samples_through_onnx_equal_torch_samples():
    net, sigmas = unet(), edm_sigmas(4)
    a = generate(spec(precision="fp32", backend="onnx").sampling_denoiser(net), 6, (1, 8, 8), sigmas, batch_size=4,
                 progress=False)
    b = generate(spec(precision="fp32", backend="torch").sampling_denoiser(net), 6, (1, 8, 8), sigmas, batch_size=4,
                 progress=False)
    assert_close(a, b)
