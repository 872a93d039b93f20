"""The new classifier head per backbone family: its init, the first batch's logits, loss and gradient.

"own" is the head as the architecture initialises it (``timm.create_model(num_classes=C)``: what
tlbench trained with before issue #13); "tlbench" is ``models.build_model`` with the grid's
default head (``head.init: zero``) and, for scale, ``head.init: pytorch``. One batch of digits,
resized to each model's input size; the backbones are randomly initialised (the head's statistics
do not depend on the backbone's weights, the logits' scale does a little).

    python benchmarks/perf/head_init.py [--classes 10] [--batch 8] [--backbones a,b,...]
"""

from __future__ import annotations

import argparse
import json
import math

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from tlbench.data import load_dataset
from tlbench.data.augment import make_augment
from tlbench.models.build import build_model, data_config
from tlbench.models.heads import classifier_prefixes, final_head_layer
from tlbench.spec import HeadConfig, WeightsSpec

# the tiny test models and every family the shipped grids use
BACKBONES = (
    "test_efficientnet,test_resnet,test_vit,test_convnext,seed_cnn,resnet18,resnet50,densenet169,"
    "mobilenetv3_large_100,mobilenetv2_100,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnety_002"
)


def first_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    head = {id(p) for p in model.get_classifier().parameters()}
    grads = [p.grad for p in model.parameters() if id(p) not in head and p.grad is not None]
    layer = final_head_layer(model.get_classifier())
    fan_in = layer.weight.shape[1]
    return {
        "w_std_vs_pytorch": layer.weight.std().item() / (1 / math.sqrt(3 * fan_in)),
        "logits_std": logits.std().item(),
        "loss": loss.item(),
        "backbone_grad_norm": torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--backbones", default=BACKBONES)
    args = ap.parse_args()
    digits = load_dataset("digits")
    images, labels = digits.train.images[: args.batch], digits.train.labels[: args.batch] % args.classes
    print(f"# ln({args.classes}) = {math.log(args.classes):.4f}")
    for name in args.backbones.split(","):
        torch.manual_seed(0)
        own = timm.create_model(name, num_classes=args.classes)
        cfg = data_config(own)
        size = int(cfg["input_size"][-1])
        tf = make_augment("none", out_size=size, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), train=False)
        x = tf(images, None)
        row: dict[str, object] = {"backbone": name, "input": size}
        for label, model in (
            ("own", own),
            *(
                (
                    f"tlbench_{init}",
                    build_model(
                        name,
                        num_classes=args.classes,
                        weights=WeightsSpec(kind="none"),
                        head=HeadConfig(init=init),
                    ),
                )
                for init in ("zero", "pytorch")
            ),
        ):
            if label != "own":  # the same backbone weights as "own": only the head differs
                state = {k: v for k, v in own.state_dict().items() if k in model.state_dict()}
                head = {k for k in state if k.startswith(classifier_prefixes(own))}
                model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
            stats = first_batch(model, x, labels)
            row.update({f"{label}.{k}": round(v, 3) for k, v in stats.items()})
        print(json.dumps(row))


if __name__ == "__main__":
    main()
