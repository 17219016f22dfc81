"""lite-clip: an open_clip CLIP (tiny custom config) trained on the world's captions.

    from rosetta_lite.train.recipes import train
    result = train("lite-clip", "runs/zoo", steps=500, seed=1000)

Images and their captions ("a large red circle and a small blue cross on green ground
under a grey sky") are embedded by ``build_lite_clip()``'s two towers and pulled
together with open_clip's ``ClipLoss`` (symmetric InfoNCE over the batch, learned
temperature). Text goes through open_clip's own BPE tokenizer (``SimpleTokenizer``,
whose vocabulary ships in the wheel: no download). Scenes in a batch differ in colours,
ground and sky, so captions can be matched without looking at shapes; each image
therefore also gets six hard negative captions, its own caption with one shape word
swapped, in an extra image-to-text cross-entropy: the largest object's shape set to each
of the five other shapes, and a random object's shape changed. Half the scenes with
several objects get a caption naming only the largest one (``main_object_captions``):
zero-shot prompts name one shape, and a scene's single-object caption should be its main
subject. The variants tried and their zero-shot accuracies: the book's appendix
(``book/zoo_training.md``). Augmentation is horizontal flips
only: crops could cut out objects the caption names, colour changes would falsify it.
The whole CLIP model (both towers) is saved as ``lite-clip.safetensors``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rosetta_lite.train.augment import augment
from rosetta_lite.train.loop import Recipe, RecipeOptions, seed_everything
from rosetta_lite.world import WorldBatch, object_phrase
from rosetta_lite.zoo.lite_arch import build_lite_clip, clip_tokenizer, normalize

MEMBER = "lite-clip"


def _swap(caption: str, obj: dict, **change) -> str:
    """The caption with one object's shape or fill word changed (``shape="ring"``, ``fill="dots"``)."""
    textured = obj["phrase"] != object_phrase(obj, False)
    return caption.replace(obj["phrase"], object_phrase({**obj, **change}, textured), 1)


def _kinds(batch) -> tuple[list[str], list[str]]:
    """The world's shapes and fills, from its class names ("circle", or "checks circle" in a textured world)."""
    names = [name.split(" ") for name in batch.class_names]
    return list(dict.fromkeys(n[-1] for n in names)), list(dict.fromkeys(n[0] for n in names if len(n) == 2))


def shape_swapped_captions(batch: WorldBatch, gen: torch.Generator, largest: bool = True) -> list[str]:
    """Each caption with one object's shape word changed (the largest object's, or a random one's).

        negatives = shape_swapped_captions(batch, torch.Generator().manual_seed(0), largest=False)

    Hard negatives: within a batch, scenes differ in colours, ground and sky, so plain
    contrastive training can match captions without ever looking at shapes.
    """
    shapes = _kinds(batch)[0]
    out = []
    for caption, objects in zip(batch.captions, batch.objects):
        if largest:
            obj = max(objects, key=lambda o: o["pixels"])
        else:
            obj = objects[int(torch.randint(len(objects), (1,), generator=gen))]
        others = [s for s in shapes if s != obj["shape"]]
        out.append(_swap(caption, obj, shape=others[int(torch.randint(len(others), (1,), generator=gen))]))
    return out


def main_object_captions(batch: WorldBatch, gen: torch.Generator, share: float = 0.5):
    """The batch with a random ``share`` of its captions cut to the largest object alone.

        batch = main_object_captions(batch, torch.Generator().manual_seed(0), share=0.5)

    "a large cyan circle on green ground under a yellow sky" instead of naming all three
    objects: a caption that names only a scene's main subject, as alt text often does.
    Such scenes keep only their largest object in ``objects``, so shape swaps change a
    word the caption has.
    """
    captions, objects = [], []
    for caption, items in zip(batch.captions, batch.objects):
        if float(torch.rand((), generator=gen)) < share:  # one draw per scene, one-object scenes too
            largest = max(items, key=lambda o: o["pixels"])
            caption = largest["phrase"] + caption[caption.rindex(" on "):]  # + " on <ground> ground under a <sky> sky"
            items = [largest]
        captions.append(caption)
        objects.append(items)
    return dataclasses.replace(batch, captions=captions, objects=objects)


def largest_shape_swaps(batch: WorldBatch) -> list[list[str]]:
    """Every caption with its largest object's shape word set to each other shape in turn, and in a
    textured world its fill word set to each other fill.

        swaps = largest_shape_swaps(batch)   # (shapes - 1 [+ fills - 1]) lists of len(batch) captions

    With these as negatives, matching an image to its own caption among them is a
    classification of the largest object's shape (and fill), taught by captions alone (no labels).
    """
    shapes, fills = _kinds(batch)
    rows = []
    for caption, objects in zip(batch.captions, batch.objects):
        obj = max(objects, key=lambda o: o["pixels"])
        rows.append([_swap(caption, obj, shape=s) for s in shapes if s != obj["shape"]]
                    + [_swap(caption, obj, fill=f) for f in fills if f != obj["fill"]])
    return [list(column) for column in zip(*rows)]


@dataclass(frozen=True)
class CLIPOptions(RecipeOptions):
    """The CLIP recipe's options: the common ones and its captions' negatives.

        CLIPOptions(hard_negatives=0.0, main_object=0.0)   # plain contrastive training

    ``hard_negatives``: the weight of the shape-swapped captions' cross-entropy (0: off);
    ``all_largest_swaps``: the largest object's shape set to each other shape (else to one);
    ``main_object``: the share of scenes captioned by their largest object alone.
    """

    hard_negatives: float = 1.0
    all_largest_swaps: bool = True
    main_object: float = 0.5


OPTIONS = CLIPOptions()


def make_recipe(options: CLIPOptions = OPTIONS, seed: int = 1000) -> Recipe:
    """``lite-clip``'s recipe: open_clip's contrastive loss plus shape-swapped captions as hard negatives.

        recipe = make_recipe(CLIPOptions(batch_size=64), seed=1000)
    """
    from open_clip import ClipLoss

    lr, hard_negatives, main_object = options.lr, options.hard_negatives, options.main_object
    all_largest_swaps = options.all_largest_swaps

    seed_everything(seed)
    model = build_lite_clip()
    tokenizer = clip_tokenizer()
    loss_fn = ClipLoss()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "logit_scale" in name or "embedding" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))

    def step(batch, step_index, gen):
        if main_object > 0:
            batch = main_object_captions(batch, gen, main_object)
        x = augment(batch.images, gen, scale=(1.0, 1.0), flip=True)
        img, txt, scale = model(normalize(x, MEMBER), tokenizer(batch.captions).to(x.device))
        if hard_negatives > 0:
            swaps = (largest_shape_swaps(batch) if all_largest_swaps
                     else [shape_swapped_captions(batch, gen, True)])
            swaps.append(shape_swapped_captions(batch, gen, False))
            negs = [caption for column in swaps for caption in column]
            neg = model.encode_text(tokenizer(negs).to(x.device)).view(len(swaps), len(batch), -1)
        # the losses in fp32 under any autocast: logits reach 100, which bf16 rounds by 0.5
        with torch.autocast(x.device.type, enabled=False):
            img, txt, scale = F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1), scale.float()
            loss = loss_fn(img, txt, scale)
            out = {"clip_loss": loss.detach(), "logit_scale": scale.detach()}
            if hard_negatives > 0:
                hard = scale * torch.einsum("bd,kbd->bk", img, F.normalize(neg.float(), dim=-1))  # (B, K)
                logits = torch.cat([scale * img @ txt.T, hard], 1)
                hard_loss = F.cross_entropy(logits, torch.arange(len(batch), device=x.device))
                out["hard_loss"] = hard_loss.detach()
                loss = loss + hard_negatives * hard_loss
        out["loss"] = loss
        return out

    def clamp_scale(step_index, steps):
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)  # temperature >= 0.01, as open_clip's training does

    return Recipe(member=MEMBER, modules={"clip": model}, optimizer=opt, step_fn=step,
                  export=lambda: model, batch_size=options.batch_size, lr=lr, warmup=30,
                  after_step=clamp_scale, precision=options.precision, world=dict(options.world),
                  config={"method": "clip", "hard_negatives": hard_negatives,
                          "main_object_captions": main_object,
                          "loss": "open_clip.ClipLoss + weight x image-to-text CE with shape-swapped captions "
                                  "per image as extra negatives: "
                                  + ("the largest object's shape set to each other shape"
                                     if all_largest_swaps else "the largest object's shape changed")
                                  + ", and a random object's shape changed",
                          "tokenizer": "open_clip.tokenizer.SimpleTokenizer(context_length=32)"})

