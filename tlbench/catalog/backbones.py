"""timm model names and their pretrained tags: one way to spell ``arch.tag``, and checks against timm.

The spec layer, ``models.build_model`` and ``prefetch`` all need the hub name of a backbone's
weights; they used to build it three ways that disagreed when both the backbone
(``resnet18.a1_in1k``) and the weights (``hub:TAG``) named a tag. ``hub_model_name`` is the one
way now. This module imports no torch at import time (the spec layer uses it); the checks that
need timm's registry import timm when called.
"""

from __future__ import annotations

from tlbench.registry import UnknownNameError

OWN_MODELS = ("seed_cnn",)  # tlbench's own timm models (tlbench.models.seed_cnn)


def split_model_name_tag(name: str, no_tag: str = "") -> tuple[str, str]:
    """``'resnet50.a1_in1k'`` -> ``('resnet50', 'a1_in1k')``; ``no_tag`` when the name has none.

    The semantics of ``timm.models.split_model_name_tag`` (split at the first dot), written out
    here because importing timm imports torch, and the spec layer must load without it.
    """
    arch, dot, tag = name.partition(".")
    return arch, (tag if dot else no_tag)


def hub_model_name(backbone: str, tag: str = "") -> str:
    """The timm name whose pretrained weights a backbone loads: ``arch.tag``, or ``arch`` for timm's
    default tag.

    ``tag`` is the value of ``weights: hub:TAG`` (empty for plain ``hub``). The backbone may carry
    a tag itself (``resnet18.a1_in1k``); naming the same tag twice is fine, two different tags
    raise ``ValueError`` instead of one silently winning.
    """
    arch, own = split_model_name_tag(backbone)
    if tag and own and tag != own:
        raise ValueError(
            f"backbone {backbone!r} already names the pretrained tag {own!r} but its weights say "
            f"hub:{tag}; name the tag once (weights: hub:{tag} with backbone {arch!r})"
        )
    chosen = tag or own
    return f"{arch}.{chosen}" if chosen else arch


def check_backbone_name(name: str) -> None:
    """Raise ``UnknownNameError`` (with did-you-mean) unless timm knows this model (``arch`` or ``arch.tag``)."""
    if name in OWN_MODELS:  # registered in timm when tlbench.models builds one
        return
    import timm

    if not timm.is_model(name):
        raise UnknownNameError("backbone (timm model)", name, timm.list_models())


def check_hub_tag(name: str) -> None:
    """Raise ``UnknownNameError`` unless timm has pretrained weights of that exact name."""
    import timm

    if not timm.list_pretrained(name if "." in name else name + ".*"):
        arch = split_model_name_tag(name)[0]
        raise UnknownNameError(
            "pretrained tag", name, timm.list_pretrained(arch + ".*") or [arch + " (no tags)"]
        )
