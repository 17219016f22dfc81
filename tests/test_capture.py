import open_clip
import pytest
import timm
import torch
from torch import nn

from rosetta_lite.capture import CaptureError, TokenLayout, Trace, list_layers


@pytest.fixture(scope="module")
def resnet():
    return timm.create_model("resnet18", pretrained=False, num_classes=0).eval()


@pytest.fixture(scope="module")
def vit():
    # registers and a non-square grid: 5 prefix tokens, 4 x 6 patches
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=(32, 48), patch_size=8,
                             reg_tokens=4, num_classes=0).eval()


def test_cnn_maps_come_back_as_they_are(resnet):
    x = torch.randn(2, 3, 64, 64)
    with Trace(resnet, ["layer1", "layer4"]) as t:
        resnet(x)
    assert t["layer1"].shape == (2, 64, 16, 16) and t["layer4"].shape == (2, 512, 2, 2)
    assert not t["layer1"].requires_grad


def test_vit_tokens_match_timm_forward_intermediates(vit):
    x = torch.randn(2, 3, 32, 48)
    assert vit.num_prefix_tokens == 5
    with Trace(vit, ["blocks.0", "blocks.2"]) as t:
        vit(x)
    reference = vit.forward_intermediates(x, indices=[0, 2], output_fmt="NCHW", intermediates_only=True)
    assert t["blocks.0"].shape == (2, 192, 4, 6)
    torch.testing.assert_close(t["blocks.0"], reference[0])
    torch.testing.assert_close(t["blocks.2"], reference[1])


def test_vit_mlp_activations_are_spatial(vit):
    with Trace(vit, "blocks.1.mlp.act") as t:
        vit(torch.randn(3, 3, 32, 48))
    assert t["blocks.1.mlp.act"].shape == (3, 768, 4, 6)


def test_stop_ends_the_forward_after_the_last_layer(resnet):
    ran = []
    handle = resnet.layer3.register_forward_hook(lambda *a: ran.append("layer3"))
    with Trace(resnet, ["layer2", "layer1"], stop=True) as t:
        resnet(torch.randn(1, 3, 64, 64))
    handle.remove()
    assert ran == [] and set(t.outputs) == {"layer1", "layer2"}


def test_clone_protects_against_in_place_changes():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(inplace=True))
    x = torch.randn(1, 3, 5, 5)
    with Trace(net, ["0"]) as cloned:
        net(x)
    with Trace(net, ["0"], clone=False) as shared:
        net(x)
    assert (cloned["0"] < 0).any() and not (shared["0"] < 0).any()


def test_detach_false_keeps_gradients():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    x = torch.randn(1, 3, 6, 6, requires_grad=True)
    with Trace(net, ["0"], detach=False) as t:
        net(x)
    t["0"].sum().backward()
    assert x.grad is not None


def test_sequence_first_tokens_are_recognised():
    class SeqFirst(nn.Module):
        num_prefix_tokens = 1

        def __init__(self):
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=False)

        def forward(self, x):  # x: (B, 8, 3, 3) -> (1 + 9, B, 8) sequence-first
            tokens = x.flatten(2).permute(2, 0, 1)
            tokens = torch.cat([tokens.mean(0, keepdim=True), tokens])
            return self.layer(tokens)

    net = SeqFirst().eval()
    x = torch.randn(4, 8, 3, 3)
    with Trace(net, ["layer"]) as t:
        out = net(x)
    assert t["layer"].shape == (4, 8, 3, 3)
    torch.testing.assert_close(t["layer"], out[1:].permute(1, 2, 0).reshape(4, 8, 3, 3))


def test_open_clip_tiny_towers():
    config = dict(embed_dim=32, text_cfg=dict(context_length=16, vocab_size=1000, width=32, heads=2, layers=1))
    vit_clip = open_clip.CLIP(vision_cfg=dict(image_size=32, layers=2, width=64, patch_size=4,
                                              head_width=32), **config).eval()
    with Trace(vit_clip, ["visual.transformer.resblocks.1.mlp.gelu"]) as t:
        vit_clip.encode_image(torch.randn(3, 3, 32, 32))
    assert t["visual.transformer.resblocks.1.mlp.gelu"].shape == (3, 256, 8, 8)
    rn_clip = open_clip.CLIP(vision_cfg=dict(image_size=32, layers=(1, 1, 1, 1), width=16), **config).eval()
    with Trace(rn_clip, ["visual.layer1", "visual.layer4"]) as t:
        rn_clip.encode_image(torch.randn(2, 3, 32, 32))
    assert t["visual.layer1"].shape[0] == 2 and t["visual.layer4"].dim() == 4


def test_list_layers_gives_map_shapes(resnet, vit):
    shapes = {i.name: i.shape for i in list_layers(resnet, torch.zeros(1, 3, 64, 64))}
    assert shapes["layer2"] == (128, 8, 8) and "fc" not in shapes
    vit_shapes = {i.name: i.shape for i in list_layers(vit, torch.zeros(1, 3, 32, 48))}
    assert vit_shapes["blocks.3.mlp.act"] == (768, 4, 6)
    assert {i.name for i in list_layers(resnet, torch.zeros(1, 3, 64, 64), spatial_only=False)} >= {"global_pool"}


def test_unknown_layer_names_the_closest(resnet):
    with pytest.raises(CaptureError, match=r"unknown layer 'layer5'.*closest.*layer4.*list_layers"):
        Trace(resnet, ["layer5"])


def test_non_spatial_output_names_layer_and_shape(resnet):
    with pytest.raises(CaptureError, match=r"'global_pool' gave shape \(1, 512\)"):
        with Trace(resnet, ["global_pool"]):
            resnet(torch.randn(1, 3, 64, 64))


def test_non_tensor_output_is_refused():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    net = nn.Sequential(Pair())
    with pytest.raises(CaptureError, match="'0' returned tuple, not a tensor"):
        with Trace(net, ["0"]):
            net(torch.randn(1, 2, 2, 2))


def test_tokens_without_a_known_layout_ask_for_one():
    net = nn.Sequential(nn.Linear(4, 4))
    tokens = torch.randn(2, 7, 4)
    with pytest.raises(CaptureError, match="token_layout"):
        with Trace(net, ["0"]):
            net(tokens)
    with Trace(net, ["0"], token_layout=TokenLayout(1, (2, 3))) as t:
        net(tokens)
    assert t["0"].shape == (2, 4, 2, 3)


def test_plain_sequential():
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 2, 3, stride=2, padding=1))
    with Trace(net, ["1", "2"]) as t:
        net(torch.randn(2, 3, 8, 8))
    assert t["1"].shape == (2, 6, 8, 8) and t["2"].shape == (2, 2, 4, 4)
