"""lite-vit-mae: the lite ViT trained as a masked autoencoder; the encoder is the member.

    from rosetta_lite.train.recipes import train
    result = train("lite-vit-mae", "runs/zoo", steps=600, seed=1000)

MAE (He et al. 2022) at 32 px: the image is cut into 8 x 8 patches of 4 x 4 pixels; a
random 75% of the patches are hidden, the encoder (a timm VisionTransformer, built by
``build_member("lite-vit-mae")``, mean-patch-token pooling) sees only the visible ones
plus the class token, and a small decoder (dim 64, 2 blocks) fills in the pixels of every
patch from the encoded visible tokens and mask tokens. The loss is the mean squared error
on the hidden patches, in the member's normalised pixel space. Only the encoder is saved
as ``lite-vit-mae.safetensors``; the checkpoint keeps the decoder (``mae_psnr`` needs it).

Hidden patches are blanked (set to the normalised mean, 0) before the encoder's stem, so
a convolutional stem (``stem="conv"``), whose windows overlap the patch borders, cannot
see them; for the patch projection, whose windows are the patches, blanking changes no
visible token. The variants tried and their probes: the book's appendix (``book/zoo_training.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rosetta_lite.train.augment import augment
from rosetta_lite.train.checkpoints import checkpoint_path, load_checkpoint
from rosetta_lite.train.loop import Recipe, RecipeOptions, seed_everything
from rosetta_lite.zoo.lite_arch import PREPROCESS, build_lite_vit, build_member, normalize

MEMBER = "lite-vit-mae"


class MaskedAutoencoder(nn.Module):
    """A timm ViT encoder with MAE masking and a small pixel decoder.

        mae = MaskedAutoencoder(build_member("lite-vit-mae")); loss = mae.loss(images, generator)
    """

    def __init__(self, encoder: nn.Module, decoder_dim: int = 64, decoder_depth: int = 2,
                 decoder_heads: int = 4, mask_ratio: float = 0.75, member: str = MEMBER,
                 norm_pix: bool = False) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder, self.mask_ratio, self.member, self.norm_pix = encoder, mask_ratio, member, norm_pix
        self.patch = encoder.patch_embed.patch_size[0]
        self.num_patches = encoder.patch_embed.num_patches
        dim = encoder.embed_dim
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, self.num_patches + 1, decoder_dim))
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, decoder_heads, mlp_ratio=4.0)
                                              for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * 3)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos, std=0.02)
        stats = PREPROCESS[member]
        self.register_buffer("mean", torch.tensor(stats["mean"]), persistent=False)
        self.register_buffer("std", torch.tensor(stats["std"]), persistent=False)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, p*p*3), patches in row-major order, channels last."""
        b, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def random_masking(self, b: int, gen: torch.Generator, device: torch.device | str = "cpu"):
        """ids_keep (B, K), mask (B, N) with 1 = hidden, ids_restore (B, N)."""
        n = self.num_patches
        keep = max(1, int(round(n * (1 - self.mask_ratio))))
        noise = torch.rand(b, n, generator=gen).to(device)
        ids_shuffle = noise.argsort(1)
        ids_restore = ids_shuffle.argsort(1)
        mask = torch.ones(b, n, device=device)
        mask[:, :keep] = 0
        return ids_shuffle[:, :keep], torch.gather(mask, 1, ids_restore), ids_restore

    def blank_hidden(self, x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 3, H, W) with every pixel outside the kept patches set to 0."""
        b, side = x.shape[0], x.shape[-1] // self.patch
        visible = torch.zeros(b, self.num_patches, dtype=x.dtype, device=x.device).scatter_(1, ids_keep, 1.0)
        pixels = visible.view(b, 1, side, side).repeat_interleave(self.patch, 2).repeat_interleave(self.patch, 3)
        return x * pixels

    def encode_visible(self, x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        tokens = enc.patch_embed(self.blank_hidden(x, ids_keep)) + enc.pos_embed[:, 1:]
        tokens = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        tokens = enc.norm_pre(torch.cat([cls, tokens], 1))
        return enc.norm(enc.blocks(tokens))

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)
        b, n = ids_restore.shape
        masked = self.mask_token.expand(b, n + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], masked], 1)
        patches = torch.gather(patches, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], patches], 1) + self.decoder_pos
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x[:, 1:])

    def forward(self, images: torch.Tensor, gen: torch.Generator):
        """Images in [0, 1] -> (prediction, target, mask) in normalised pixel space."""
        x = normalize(images, self.member)
        ids_keep, mask, ids_restore = self.random_masking(x.shape[0], gen, x.device)
        pred = self.decode(self.encode_visible(x, ids_keep), ids_restore)
        return pred, self.patchify(x), mask

    def loss(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Mean squared error on the hidden patches; with ``norm_pix`` against each patch's
        pixels standardised by their own mean and variance (MAE's ``norm_pix_loss``)."""
        pred, target, mask = self(images, gen)
        target = target.float()
        if self.norm_pix:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = ((pred.float() - target) ** 2).mean(-1)
        return (per_patch * mask).sum() / mask.sum()

    def _unnormalise(self, patches: torch.Tensor) -> torch.Tensor:
        p = patches.view(*patches.shape[:2], -1, 3)
        return (p * self.std + self.mean).view(patches.shape)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, gen: torch.Generator):
        """(prediction, target, mask) with patches as pixels in [0, 1]: (B, N, p*p*3), (B, N)."""
        pred, target, mask = self(images, gen)
        return self._unnormalise(pred), self._unnormalise(target), mask

    @torch.no_grad()
    def reconstruct_images(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Visible patches from the input, hidden ones from the decoder: (B, 3, H, W)."""
        pred, target, mask = self.reconstruct(images, gen)
        mixed = torch.where(mask.bool()[..., None], pred.clamp(0, 1), target)
        b, _, h, w = images.shape
        p = self.patch
        x = mixed.view(b, h // p, w // p, p, p, 3).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, 3, h, w)


def build_mae(stem: str = "patch", decoder_depth: int = 2, decoder_dim: int = 64,
              norm_pix: bool = False) -> MaskedAutoencoder:
    """The masked autoencoder around an untrained lite ViT (mean-patch-token pooling).

        mae = build_mae(stem="conv", decoder_depth=4, decoder_dim=128)

    ``stem="patch"`` is the member's architecture (``build_member("lite-vit-mae")``);
    ``"conv"`` trains the convolutional-stem ViT that ``lite-vit-dino`` is.
    """
    if decoder_depth < 1 or decoder_dim < 4 or decoder_dim % 4:
        raise ValueError(f"the decoder needs depth >= 1 and a dim that 4 heads divide, got depth "
                         f"{decoder_depth}, dim {decoder_dim}")
    encoder = build_member(MEMBER) if stem == "patch" else build_lite_vit(stem=stem, pool="avg")
    return MaskedAutoencoder(encoder, decoder_dim=decoder_dim, decoder_depth=decoder_depth, norm_pix=norm_pix)


@dataclass(frozen=True)
class MAEOptions(RecipeOptions):
    """The MAE recipe's options: the common ones, the encoder's stem and the decoder (``build_mae``).

        MAEOptions(stem="conv", decoder_depth=4, decoder_dim=128, norm_pix=True)
    """

    lr: float = 1.5e-3
    norm_pix: bool = False
    stem: str = "patch"
    decoder_depth: int = 2
    decoder_dim: int = 64


OPTIONS = MAEOptions()


def make_recipe(options: MAEOptions = OPTIONS, seed: int = 1000) -> Recipe:
    """``lite-vit-mae``'s recipe: the masked autoencoder on flipped, cropped world scenes.

        recipe = make_recipe(MAEOptions(stem="conv"), seed=1000)
    """
    seed_everything(seed)
    mae = build_mae(options.stem, options.decoder_depth, options.decoder_dim, options.norm_pix)
    opt = torch.optim.AdamW(mae.parameters(), lr=options.lr, betas=(0.9, 0.95), weight_decay=0.05)

    def step(batch, step_index, gen):
        x = augment(batch.images, gen, scale=(0.5, 1.0))
        return {"loss": mae.loss(x, gen)}

    config = {"method": "mae", "mask_ratio": mae.mask_ratio, "stem": options.stem,
              "decoder": f"dim {options.decoder_dim}, {options.decoder_depth} blocks",
              "decoder_dim": options.decoder_dim, "decoder_depth": options.decoder_depth,
              "norm_pix": options.norm_pix, "loss": "MSE on hidden patches (normalised pixels)"}
    return Recipe(member=MEMBER, modules={"mae": mae}, optimizer=opt, step_fn=step,
                  export=lambda: mae.encoder, batch_size=options.batch_size, lr=options.lr, warmup=20,
                  precision=options.precision, world=dict(options.world), config=config)


def load_mae(out_dir: str | Path) -> MaskedAutoencoder:
    """The full masked autoencoder (encoder + decoder) from a recipe's checkpoint."""
    ckpt = load_checkpoint(checkpoint_path(out_dir, MEMBER))
    if ckpt is None:
        raise FileNotFoundError(f"no {MEMBER} checkpoint in {out_dir}; train it first")
    config = ckpt.get("config", {})
    mae = build_mae(config.get("stem", "patch"), config.get("decoder_depth", 2), config.get("decoder_dim", 64),
                    config.get("norm_pix", False))
    mae.load_state_dict(ckpt["modules"]["mae"])
    return mae.eval()
