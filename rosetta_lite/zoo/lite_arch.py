"""Untrained architectures of the lite zoo, built from timm and open_clip offline.

    net = build_lite_resnet(num_classes=6)      # then load weights into it
    vit = build_lite_vit()
    clip = build_lite_clip()

The builders are the single definition of each member's architecture: the training
recipes (``rosetta_lite.train``) and the zoo loader both call them, so a saved
state dict always fits. Every member sees 32 x 32 images in [0, 1] and normalises
them itself with the mean/std in ``PREPROCESS`` (``normalize(x, member)``).

Layer names to mine (``DEFAULT_LAYERS``) follow the full-scale zoo: ResNets
``layer1..layer4``, ViTs ``blocks.i.mlp.act``, CLIP ``visual.layer1..layer4``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rosetta_lite.zoo.preprocess import CLIP_MEAN as OPENAI_MEAN
from rosetta_lite.zoo.preprocess import CLIP_STD as OPENAI_STD
from rosetta_lite.zoo.preprocess import IMAGENET_MEAN, IMAGENET_STD

IMAGE_SIZE = 32

# lite ResNet: timm ResNet, BasicBlock, one block per stage
RESNET_LAYERS = (1, 1, 1, 1)
RESNET_CHANNELS = (16, 32, 64, 128)
# lite ViT: timm VisionTransformer, 8 x 8 patches of 4 x 4 pixels
VIT_PATCH = 4
VIT_DIM = 128
VIT_DEPTH = 4
VIT_HEADS = 4
VIT_STEMS = ("patch", "conv")
# lite CLIP: open_clip CLIP, ModifiedResNet vision tower, tiny causal text transformer
CLIP_EMBED_DIM = 64
CLIP_VISION_LAYERS = (1, 1, 1, 1)
CLIP_VISION_WIDTH = 8
CLIP_CONTEXT_LENGTH = 32
CLIP_TEXT_WIDTH = 32
CLIP_TEXT_HEADS = 4
CLIP_TEXT_LAYERS = 2
CLIP_VOCAB_SIZE = 49408  # open_clip's SimpleTokenizer (BPE vocabulary ships in the wheel)

MEMBERS = ("lite-resnet-sup", "lite-resnet-dino", "lite-vit-dino", "lite-vit-mae", "lite-clip")

PREPROCESS: dict[str, dict] = {
    "lite-resnet-sup": {"size": IMAGE_SIZE, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "lite-resnet-dino": {"size": IMAGE_SIZE, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "lite-vit-dino": {"size": IMAGE_SIZE, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "lite-vit-mae": {"size": IMAGE_SIZE, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "lite-clip": {"size": IMAGE_SIZE, "mean": OPENAI_MEAN, "std": OPENAI_STD},
}

DEFAULT_LAYERS: dict[str, list[str]] = {
    "lite-resnet-sup": [f"layer{i}" for i in range(1, 5)],
    "lite-resnet-dino": [f"layer{i}" for i in range(1, 5)],
    "lite-vit-dino": [f"blocks.{i}.mlp.act" for i in range(VIT_DEPTH)],
    "lite-vit-mae": [f"blocks.{i}.mlp.act" for i in range(VIT_DEPTH)],
    "lite-clip": [f"visual.layer{i}" for i in range(1, 5)],
}


def normalize(images: torch.Tensor, member: str) -> torch.Tensor:
    """Map images in [0, 1], (B, 3, H, W), to the input statistics ``member`` expects."""
    if member not in PREPROCESS:
        raise KeyError(f"unknown lite member {member!r}; known: {list(PREPROCESS)}")
    cfg = PREPROCESS[member]
    mean = torch.tensor(cfg["mean"], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def build_lite_resnet(num_classes: int = 6) -> nn.Module:
    """A timm ResNet (BasicBlock, layers 1-1-1-1, widths 16-32-64-128) for 32 px input.

    The stem is a 3 x 3 stride-1 conv (16 channels) without max pool, so ``layer1..layer4``
    give 16/32/64/128 channel maps of 32, 16, 8 and 4 pixels (240 units). Stages 2-4
    downsample with a 2 x 2 max pool at their entry (``layerN.0``; the blocks are
    ``layerN.1``) instead of timm's stride-2 convs: at this scale strided-conv ResNets
    learn shapes several times slower (measured: 32% vs 96% shape accuracy after 150
    steps on one-object scenes). ``num_classes=0`` builds the head-less encoder
    (the self-supervised member); the supervised member has 6 classes (shapes).
    """
    from timm.models.resnet import BasicBlock, ResNet

    ch = RESNET_CHANNELS
    net = ResNet(BasicBlock, list(RESNET_LAYERS), num_classes=num_classes, channels=ch)
    net.conv1 = nn.Conv2d(3, ch[0], kernel_size=3, stride=1, padding=1, bias=False)
    net.bn1 = nn.BatchNorm2d(ch[0])  # timm's plain stem has 64 channels; a narrow one is 5x cheaper
    net.maxpool = nn.Identity()
    inplanes = ch[0]
    for i, (planes, count) in enumerate(zip(ch, RESNET_LAYERS)):
        blocks: list[nn.Module] = [nn.MaxPool2d(2)] if i > 0 else []
        for _ in range(count):
            down = None
            if inplanes != planes:
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes))
            blocks.append(BasicBlock(inplanes, planes, downsample=down))
            inplanes = planes
        setattr(net, f"layer{i + 1}", nn.Sequential(*blocks))
    net.init_weights(zero_init_last=False)  # timm's init for the rebuilt modules
    net.default_cfg = dict(getattr(net, "default_cfg", {}) or {})
    net.default_cfg.update(input_size=(3, IMAGE_SIZE, IMAGE_SIZE), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return net


def build_lite_vit(num_classes: int = 0, stem: str = "patch", pool: str = "token") -> nn.Module:
    """A timm VisionTransformer: 32 px, an 8 x 8 grid of tokens + class token, dim 128, 4 blocks.

        vit = build_lite_vit(stem="conv")

    ``stem="patch"`` embeds 4 x 4 pixel patches with one linear projection, as ViT-B/16
    embeds 16 x 16 ones. ``stem="conv"`` replaces the projection with 3 x 3 convolutions of
    stride 1, 2 and 2 (32, 64, 128 channels, BatchNorm, ReLU) and a 1 x 1 projection, the
    same 8 x 8 grid of tokens (Xiao et al. 2021, "Early convolutions help transformers see
    better"): the patch projection is what makes the lite ViT slow to learn shapes.
    ``pool`` is the global feature: "token", the class token (DINO), or "avg", the mean
    patch token (for MAE, whose loss never trains the class token); the parameters are the
    same. Mine ``blocks.i.mlp.act`` (512 units each); the tokens after the class token
    reshape to the 8 x 8 grid.
    """
    from timm.models.vision_transformer import VisionTransformer

    if stem not in VIT_STEMS:
        raise ValueError(f"stem must be one of {VIT_STEMS}, got {stem!r}")
    if pool not in ("token", "avg"):
        raise ValueError(f"pool must be 'token' (the class token) or 'avg' (the mean patch token), got {pool!r}")
    vit = VisionTransformer(img_size=IMAGE_SIZE, patch_size=VIT_PATCH, embed_dim=VIT_DIM,
                            depth=VIT_DEPTH, num_heads=VIT_HEADS, mlp_ratio=4.0,
                            num_classes=num_classes, global_pool=pool, fc_norm=False)
    if stem == "conv":
        layers: list[nn.Module] = []
        for c_in, c_out, stride in ((3, 32, 1), (32, 64, 2), (64, 128, 2)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
        vit.patch_embed.proj = nn.Sequential(*layers, nn.Conv2d(128, VIT_DIM, 1))
    return vit


def build_lite_clip() -> nn.Module:
    """An open_clip CLIP with a tiny config: ModifiedResNet vision tower, 2-layer text transformer.

    Vision: ModifiedResNet (layers 1-1-1-1, width 8, i.e. 32/64/128/256 channels out of
    ``visual.layer1..4``). Its stem is adapted to 32 px the same way as the lite ResNet:
    stride-1 first conv and no stem average pool, so ``visual.layer1..4`` give 32, 16, 8
    and 4 pixel maps; the attention pool is sized for the 4 x 4 map (open_clip builds
    it for ``image_size // 32``, so the tower is built for 128 px and then told it sees
    32 px). Blocks that downsample use 2 x 2 max pools where open_clip has average pools
    (same module names, no parameters), as the lite ResNet does. Text: open_clip's
    SimpleTokenizer vocabulary (49,408 BPE tokens), context 32, width 32, 4 heads, 2 layers
    (the token table is most of the 1.96 M parameters).
    Tokenize with ``clip_tokenizer()`` (``open_clip.tokenizer.SimpleTokenizer(32)``).
    """
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    stem_stride = 4  # ModifiedResNet's stem: stride-2 conv then 2 x 2 average pool
    vision = CLIPVisionCfg(layers=CLIP_VISION_LAYERS, width=CLIP_VISION_WIDTH,
                           image_size=IMAGE_SIZE * stem_stride)
    text = CLIPTextCfg(context_length=CLIP_CONTEXT_LENGTH, vocab_size=CLIP_VOCAB_SIZE,
                       width=CLIP_TEXT_WIDTH, heads=CLIP_TEXT_HEADS, layers=CLIP_TEXT_LAYERS)
    model = open_clip.CLIP(embed_dim=CLIP_EMBED_DIM, vision_cfg=vision, text_cfg=text)
    visual = model.visual
    old = visual.conv1
    visual.conv1 = nn.Conv2d(old.in_channels, old.out_channels, kernel_size=3, stride=1,
                             padding=1, bias=False)
    visual.avgpool = nn.Identity()
    visual.image_size = IMAGE_SIZE
    for layer in (visual.layer2, visual.layer3, visual.layer4):
        for block in layer:  # max instead of average pooling where a block downsamples
            if block.stride > 1:
                block.avgpool = nn.MaxPool2d(block.stride)
                block.downsample[0] = nn.MaxPool2d(block.stride)
    return model


def clip_tokenizer():
    """open_clip's BPE tokenizer with the lite CLIP's context length (works offline).

        tokens = clip_tokenizer()(["a large red circle on green ground under a grey sky"])  # (1, 32)

    Its ``encode`` keeps each word's tokens of plain captions (lower-case ASCII words and
    digits, single spaces) in a cache: the CLIP recipe tokenizes about 900 captions a step,
    all made of a few dozen words, and open_clip cleans each with ftfy and runs BPE on every
    word again. Such captions get exactly the tokens open_clip gives; any other text goes
    through open_clip unchanged.
    """
    import re

    from open_clip.tokenizer import SimpleTokenizer

    plain = re.compile(r"[a-z0-9]+( [a-z0-9]+)*")

    class WordCachedTokenizer(SimpleTokenizer):
        def __init__(self, **kw) -> None:
            super().__init__(**kw)
            self.word_tokens: dict[str, list[int]] = {}

        def encode(self, text: str) -> list[int]:
            # the regex splits at every space and cleaning leaves plain text as it is, so the
            # words' tokens concatenate to the caption's
            if not plain.fullmatch(text):
                return super().encode(text)
            tokens = []
            for word in text.split(" "):
                if word not in self.word_tokens:
                    self.word_tokens[word] = super().encode(word)
                tokens.extend(self.word_tokens[word])
            return tokens

        def __call__(self, texts, context_length: int | None = None) -> torch.Tensor:
            # open_clip's truncation, filled through one array: a tensor per row costs as much
            # as the cached encoding
            texts = [texts] if isinstance(texts, str) else texts
            length = context_length or self.context_length
            rows = np.zeros((len(texts), length), dtype=np.int64)
            for i, text in enumerate(texts):
                tokens = [self.sot_token_id] + self.encode(text) + [self.eot_token_id]
                if len(tokens) > length:
                    tokens = tokens[:length]
                    tokens[-1] = self.eot_token_id
                rows[i, :len(tokens)] = tokens
            return torch.from_numpy(rows)

    return WordCachedTokenizer(context_length=CLIP_CONTEXT_LENGTH)


def build_member(name: str, state: dict | None = None) -> nn.Module:
    """The untrained architecture of a lite member by name (shaped for ``state``'s weights if given).

        net = build_member("lite-resnet-sup", state); net.load_state_dict(state)

    The supervised ResNet's head has one output per class of the world it trained on (6
    shapes, or 30 fill-and-shape classes in the textured world): ``state`` says which.
    """
    if name == "lite-resnet-sup":
        return build_lite_resnet(num_classes=state["fc.weight"].shape[0] if state and "fc.weight" in state else 6)
    if name == "lite-resnet-dino":
        return build_lite_resnet(num_classes=0)
    if name == "lite-vit-dino":
        return build_lite_vit(stem="conv")
    if name == "lite-vit-mae":
        return build_lite_vit(pool="avg")
    if name == "lite-clip":
        return build_lite_clip()
    raise KeyError(f"unknown lite member {name!r}; known: {list(MEMBERS)}")
