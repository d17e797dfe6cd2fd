"""Channel spaces: which positions of which tensor dims must be pruned together, and how.

Every dim of every tensor a network touches is labelled with a :class:`Space` — a set of
positions. Ops relate spaces: an addition *unifies* its operands' channel spaces (position i of
one is position i of the other), a convolution's output dim is its weight's dim 0, ``torch.cat``
makes a *cat* space (parts laid end to end), a reshape of C into (heads, C/heads) or a
PixelShuffle's C -> (C/r², r²) makes a *prod* space (row-major: position = a * |B| + b). The
spaces form a union-find forest; a root is an *atom* (a free set of channels: a pruning group),
a fixed atom (image channels, spatial positions, a PixelShuffle's r²: never pruned), or a
structured space over other spaces. Pruning an atom's position removes, in every tensor dim whose
space contains it, the positions built from it — so a prod space prunes "equal per-head dims" or
"whole heads" by construction. Whatever cannot be represented exactly is fixed, never guessed.
"""
from __future__ import annotations

import itertools
from typing import Iterator, Optional, Sequence

import torch

_ids = itertools.count()


class Space:
    """A set of ``size`` positions: an atom, or a ``prod``/``cat`` of other spaces."""

    __slots__ = ("size", "parent", "kind", "parts", "fixed", "id")

    def __init__(self, size: int, kind: str = "atom", parts: Sequence["Space"] = (),
                 fixed: bool = False) -> None:
        self.size, self.kind, self.parts, self.fixed = size, kind, list(parts), fixed
        self.parent: Optional[Space] = None
        self.id = next(_ids)

    def __repr__(self) -> str:
        inner = "" if self.kind == "atom" else "(" + ", ".join(map(repr, self.parts)) + ")"
        return f"{self.kind}{'!' if self.fixed else ''}#{self.id}[{self.size}]{inner}"


def atom(size: int, fixed: bool = False) -> Space:
    """A new space of ``size`` positions; size-1 spaces are always fixed (nothing to prune)."""
    return Space(size, fixed=fixed or size <= 1)


def find(space: Space) -> Space:
    """The root a space is an alias of (with path compression)."""
    root = space
    while root.parent is not None:
        root = root.parent
    while space.parent is not None:
        space.parent, space = root, space.parent
    return root


def prod(parts: Sequence[Space]) -> Space:
    """Row-major product of ``parts`` (a reshape merging dims); size-1 parts are dropped."""
    parts = [p for p in parts if p.size > 1]
    if not parts:
        return atom(1)
    if len(parts) == 1:
        return parts[0]
    size = 1
    for p in parts:
        size *= p.size
    return Space(size, "prod", parts)


def cat(parts: Sequence[Space]) -> Space:
    """``parts`` laid end to end (``torch.cat``); empty parts are dropped."""
    parts = [p for p in parts if p.size > 0]
    if len(parts) == 1:
        return parts[0]
    return Space(sum(p.size for p in parts), "cat", parts)


def fix(space: Space) -> None:
    """Mark every atom under ``space`` as fixed (never pruned)."""
    root = find(space)
    if root.kind == "atom":
        root.fixed = True
        return
    for part in root.parts:
        fix(part)


def _link(child: Space, root: Space) -> None:
    child.parent = root


def unify(a: Space, b: Space) -> None:
    """Make position i of ``a`` and position i of ``b`` the same channel."""
    ra, rb = find(a), find(b)
    if ra is rb:
        return
    if ra.size != rb.size:
        raise ValueError(f"cannot unify spaces of sizes {ra.size} and {rb.size}")
    if ra.kind == "atom" and ra.fixed or rb.kind == "atom" and rb.fixed:
        fix(ra)
        fix(rb)
        _link(ra, rb) if ra.kind == "atom" else _link(rb, ra)
        return
    if ra.kind == "atom":
        _link(ra, rb)
        return
    if rb.kind == "atom":
        _link(rb, ra)
        return
    if ra.kind == rb.kind == "prod":
        _unify_prods(ra, rb)
        return
    if ra.kind == rb.kind and [p.size for p in ra.parts] == [p.size for p in rb.parts]:
        pairs = list(zip(ra.parts, rb.parts))
        _link(ra, rb)
        for pa, pb in pairs:
            unify(pa, pb)
        return
    _unify_segments(ra, rb)


def _unify_prods(ra: Space, rb: Space) -> None:
    """Unify two products factor by factor, after reshaping one into the other's factors."""
    parts = factor(ra, [p.size for p in rb.parts])
    other = rb.parts
    if parts is None:
        parts, other = factor(rb, [p.size for p in ra.parts]), ra.parts
    if parts is None:
        fix(ra)
        fix(rb)
        _link(ra, rb)
        return
    pairs = list(zip(parts, other))
    _link(ra, rb)
    for pa, pb in pairs:
        unify(pa, pb)


def _boundaries(root: Space) -> list[int]:
    """Segment sizes along a root: its cat parts, or the whole space."""
    return [p.size for p in root.parts] if root.kind == "cat" else [root.size]


def _unify_segments(ra: Space, rb: Space) -> None:
    """Unify two structured spaces through the common refinement of their cat boundaries."""
    cuts = sorted(set(itertools.accumulate(_boundaries(ra))) |
                  set(itertools.accumulate(_boundaries(rb))))
    sizes = [b - a for a, b in zip([0] + cuts, cuts)]
    sa, sb = split(ra, sizes), split(rb, sizes)
    if sa is None or sb is None or len(sizes) == 1:
        fix(ra)
        fix(rb)
        _link(ra, rb)
        return
    _link(ra, rb)
    for pa, pb in zip(sa, sb):
        unify(pa, pb)


def split(space: Space, sizes: Sequence[int]) -> Optional[list[Space]]:
    """Spaces of consecutive segments of ``sizes`` positions covering ``space`` (refining atoms
    into cat spaces), or None when the structure cannot be cut there."""
    root = find(space)
    sizes = list(sizes)
    if len(sizes) == 1:
        return [root]
    if root.kind == "atom":
        if root.fixed:
            return [atom(k, fixed=True) for k in sizes]
        parts = [atom(k) for k in sizes]
        root.kind, root.parts = "cat", parts
        return parts
    if root.kind == "prod":
        inner = root.size // root.parts[0].size
        if any(k % inner for k in sizes):
            return None
        heads = split(root.parts[0], [k // inner for k in sizes])
        return None if heads is None else [prod([h] + root.parts[1:]) for h in heads]
    return _split_cat(root, sizes)


def _split_cat(root: Space, sizes: list[int]) -> Optional[list[Space]]:
    """Cut a cat space into segments: parts cut at inner boundaries, then regrouped."""
    cuts = set(itertools.accumulate(sizes))
    pieces: list[Space] = []
    start = 0
    for part in list(root.parts):
        inner = sorted(c - start for c in cuts if start < c < start + part.size)
        if inner:
            lengths = [b - a for a, b in zip([0] + inner, inner + [part.size])]
            cut = split(part, lengths)
            if cut is None:
                return None
            pieces += cut
        else:
            pieces.append(part)
        start += part.size
    out, acc = [], []
    for piece in pieces:
        acc.append(piece)
        if sum(p.size for p in acc) == sizes[len(out)]:
            out.append(cat(acc))
            acc = []
    return out


def factor(space: Space, sizes: Sequence[int]) -> Optional[list[Space]]:
    """Spaces of the dims of a row-major reshape of ``space`` into ``sizes`` (all > 1), refining
    a free atom into a prod space; None when its structure does not factor that way."""
    root = find(space)
    sizes = list(sizes)
    if len(sizes) == 1:
        return [root]
    if root.kind == "atom":
        if root.fixed:
            return [atom(k, fixed=True) for k in sizes]
        parts = [atom(k) for k in sizes]
        root.kind, root.parts = "prod", parts
        return parts
    if root.kind == "cat":
        return _factor_cat(root, sizes)
    return _factor_prod(root, sizes)


def _factor_prod(root: Space, sizes: list[int]) -> Optional[list[Space]]:
    """Match a prod space's factors to the requested sizes: each factor reshaped into a run of
    dims, or else each dim made of a run of whole factors."""
    finer = _factor_parts(root.parts, sizes)
    return finer if finer is not None else _merge_prod(root, sizes)


def _factor_parts(parts: list[Space], sizes: list[int]) -> Optional[list[Space]]:
    """Each factor reshaped into the run of requested dims whose sizes multiply to it."""
    out: list[Space] = []
    i = 0
    for part in parts:
        group, size = [], 1
        while size < part.size and i < len(sizes):
            group.append(sizes[i])
            size *= sizes[i]
            i += 1
        sub = factor(part, group) if size == part.size else None
        if sub is None:
            return None
        out += sub
    return out if i == len(sizes) else None


def _merge_prod(root: Space, sizes: list[int]) -> Optional[list[Space]]:
    """Requested dims that each span whole factors: each dim is the prod of its factors."""
    out, parts, j = [], list(root.parts), 0
    for k in sizes:
        group, size = [], 1
        while size < k and j < len(parts):
            group.append(parts[j])
            size *= parts[j].size
            j += 1
        if size != k:
            return None
        out.append(prod(group))
    return out if j == len(parts) else None


def _factor_cat(root: Space, sizes: list[int]) -> Optional[list[Space]]:
    """A cat viewed as (k, rest...): its k equal segments become one space (unified) under a
    fixed leading dim, since position j of every segment lands in the same inner index."""
    k, inner = sizes[0], root.size // sizes[0]
    segments = split(root, [inner] * k)
    if segments is None:
        return None
    for seg in segments[1:]:
        unify(segments[0], seg)
    rest = factor(segments[0], sizes[1:])
    return None if rest is None else [atom(k, fixed=True)] + rest


def atoms(space: Space) -> Iterator[Space]:
    """The root atoms under ``space`` (with repeats)."""
    root = find(space)
    if root.kind == "atom":
        yield root
        return
    for part in root.parts:
        yield from atoms(part)


def index_map(space: Space) -> Optional[dict[Space, torch.Tensor]]:
    """For each free atom under ``space``: the atom position behind each position of ``space``
    (-1 where the atom is absent). None when an atom appears twice in one product."""
    root = find(space)
    n = root.size
    if root.kind == "atom":
        return {} if root.fixed else {root: torch.arange(n)}
    maps = [index_map(p) for p in root.parts]
    if any(m is None for m in maps):
        return None
    out: dict[Space, torch.Tensor] = {}
    if root.kind == "cat":
        start = 0
        for part, sub in zip(root.parts, maps):
            for key, idx in sub.items():
                full = out.setdefault(key, torch.full((n,), -1, dtype=torch.long))
                full[start:start + part.size] = idx
            start += part.size
        return out
    inner, positions = n, torch.arange(n)
    for part, sub in zip(root.parts, maps):
        inner //= part.size
        for key, idx in sub.items():
            if key in out:
                return None
            out[key] = idx[(positions // inner) % part.size]
    return out
