"""A module tree that mirrors the qualified names of another model.

Twin state (masks, twin normalization layers) is stored under the same qualified names as
the dense layers it belongs to, so checkpoints read naturally (``masks.layer1.0.conv1.weight``
next to ``model.layer1.0.conv1.weight``) and every tensor is a registered parameter or
buffer that ``.to()``, ``state_dict`` and DDP see.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn


class _Node(nn.Module):
    """An empty container for the intermediate levels of a mirror tree."""


def build_mirror(leaves: Mapping[str, nn.Module]) -> nn.Module:
    """Builds a module tree with ``leaves[path]`` at each qualified ``path``.

    The empty path names the root: a leaf given for ``""`` becomes the root itself.
    """
    root = leaves.get("", _Node())
    for path, leaf in leaves.items():
        if not path:
            continue
        *parents, last = path.split(".")
        node = root
        for part in parents:
            child = _child(node, part)
            if child is None:
                child = _Node()
                node.add_module(part, child)
            node = child
        existing = _child(node, last)
        if existing is not None:  # an intermediate node created for a deeper leaf
            for name, grandchild in existing.named_children():
                leaf.add_module(name, grandchild)
        node.add_module(last, leaf)
    return root


def _child(node: nn.Module, name: str) -> nn.Module | None:
    return dict(node.named_children()).get(name)


def get_at(root: nn.Module, path: str) -> nn.Module:
    """The module at qualified ``path`` of a mirror tree (``""`` is the root)."""
    return root.get_submodule(path) if path else root
