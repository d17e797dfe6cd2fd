"""How each ATen op relates the channel spaces of its inputs and outputs (see ``spaces``).

A rule receives the tracer (``label(t)``: the spaces of a tensor's dims; ``set(t, spaces)``),
the op's arguments and its output, and labels the output. An op without a rule is *opaque*:
every space it touches is fixed and the op is named in the graph's ``opaque`` list, so an
unknown op can make a network less prunable but never wrongly pruned.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from llcv.pruners.spaces import Space, atom, cat, factor, find, fix, prod, split, unify

Rule = Callable[[Any, Any, tuple, dict, Any], None]


def _tensors(value: Any) -> list[torch.Tensor]:
    """Tensors in an op's arguments or output (nested lists and tuples)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def _fixed(shape: Sequence[int]) -> list[Space]:
    """Constant spaces for a shape."""
    return [atom(s, fixed=True) for s in shape]


def _dim(d: int, ndim: int) -> int:
    """A dim index made non-negative."""
    return d + ndim if d < 0 else d


def broadcast_spaces(operands: Sequence[tuple[Sequence[int], Sequence[Space]]],
                     shape: Sequence[int]) -> list[Space]:
    """Spaces of a broadcast result of operands ``(shape, spaces)``: each dim unifies the
    operands' dims of the same size (right-aligned); size-1 dims broadcast."""
    nd, dims = len(shape), []
    for k, size in enumerate(shape):
        same = [spaces[k - nd + len(s)] for s, spaces in operands
                if k - nd + len(s) >= 0 and s[k - nd + len(s)] == size and size > 1]
        for sp in same[1:]:
            unify(same[0], sp)
        dims.append(same[0] if same else atom(size, fixed=True))
    return dims


def broadcast(tr: Any, tensors: Sequence[torch.Tensor], shape: Sequence[int]) -> list[Space]:
    """:func:`broadcast_spaces` of tensors."""
    return broadcast_spaces([(t.shape, tr.label(t)) for t in tensors], shape)


def elementwise(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """Pointwise ops (activations, arithmetic, copies, ``*_like``): operands broadcast."""
    inputs = _tensors(list(args) + list(kwargs.values()))
    for o in _tensors(out):
        tr.set(o, broadcast(tr, [t for t in inputs if t.dim() <= o.dim()], o.shape))


def factory(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """Tensors made from nothing (``zeros``, ``arange``): constants, never pruned."""
    for o in _tensors(out):
        tr.set(o, _fixed(o.shape))


# ---------------------------------------------------------------------- layout
def view_spaces(shape: Sequence[int], spaces: Sequence[Space], out_shape: Sequence[int]) \
        -> list[Space]:
    """Spaces after a row-major reshape: runs of dims with equal products are merged, then
    factored (size-1 dims carry nothing)."""
    src = [(s, sp) for s, sp in zip(shape, spaces) if s != 1]
    dst = [i for i, s in enumerate(out_shape) if s != 1]
    labels = [atom(1) for _ in out_shape]
    i = j = 0
    while i < len(src) and j < len(dst):
        run_a, run_b = [i], [j]
        a, b = src[i][0], out_shape[dst[j]]
        i, j = i + 1, j + 1
        while a != b:
            if a < b:
                a, i = a * src[i][0], i + 1
                run_a.append(i - 1)
            else:
                b, j = b * out_shape[dst[j]], j + 1
                run_b.append(j - 1)
        merged = prod([src[k][1] for k in run_a])
        sizes = [out_shape[dst[k]] for k in run_b]
        parts = factor(merged, sizes)
        if parts is None:
            fix(merged)
            parts = _fixed(sizes)
        for k, p in zip(run_b, parts):
            labels[dst[k]] = p
    return labels


def view(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``view``/``reshape``/``_unsafe_view``/``as_strided`` to a new shape."""
    x = args[0]
    tr.set(out, view_spaces(x.shape, tr.label(x), out.shape))


def expand(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``expand``: new leading dims and expanded size-1 dims are constant positions."""
    x, lx = args[0], tr.label(args[0])
    lead = out.dim() - x.dim()
    spaces = _fixed(out.shape[:lead])
    for k in range(x.dim()):
        same = x.shape[k] == out.shape[lead + k]
        spaces.append(lx[k] if same else atom(out.shape[lead + k], fixed=True))
    tr.set(out, spaces)


def permute(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``permute``: dims move with their spaces."""
    lx = tr.label(args[0])
    tr.set(out, [lx[_dim(d, len(lx))] for d in args[1]])


def transpose(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``transpose``/``t``: two dims swap their spaces."""
    lx = list(tr.label(args[0]))
    if len(lx) > 1:
        a, b = (_dim(d, len(lx)) for d in (args[1:3] if len(args) >= 3 else (0, 1)))
        lx[a], lx[b] = lx[b], lx[a]
    tr.set(out, lx)


def unsqueeze(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``unsqueeze``: a new size-1 dim."""
    lx = list(tr.label(args[0]))
    lx.insert(_dim(args[1], len(lx) + 1), atom(1))
    tr.set(out, lx)


def squeeze(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``squeeze``: size-1 dims dropped (as a reshape)."""
    x = args[0]
    tr.set(out, view_spaces(x.shape, tr.label(x), out.shape))


def select(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``select``/``unbind``: a single position of a channel dim pins that dim."""
    x, dim = args[0], _dim(args[1] if len(args) > 1 else 0, args[0].dim())
    lx = list(tr.label(x))
    if x.shape[dim] > 1:
        fix(lx[dim])
    del lx[dim]
    for o in _tensors(out):
        tr.set(o, lx)


def _slice_bounds(n: int, start: Optional[int], end: Optional[int]) -> tuple[int, int]:
    """Python slice bounds of a dim of size ``n``, clamped."""
    start = 0 if start is None else (start + n if start < 0 else start)
    end = n if end is None else (end + n if end < 0 else end)
    return max(0, min(start, n)), max(0, min(end, n))


def slice_(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """A contiguous slice of a dim is a segment of its space; strided slices pin it."""
    x = args[0]
    dim = _dim(args[1] if len(args) > 1 else 0, x.dim())
    start, end = _slice_bounds(x.shape[dim], *(list(args[2:4]) + [None, None])[:2])
    step = args[4] if len(args) > 4 else 1
    lx = list(tr.label(x))
    sizes = [s for s in (start, end - start, x.shape[dim] - end) if s > 0]
    parts = split(lx[dim], sizes) if step == 1 and end > start else None
    if parts is None:
        fix(lx[dim])
        lx[dim] = atom(out.shape[dim], fixed=True)
    else:
        lx[dim] = parts[1] if start > 0 else parts[0]
    tr.set(out, lx)


def split_(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``split``/``chunk`` into equal parts: parts must stay equal, so they are unified
    (NAFNet's SimpleGate: channel i goes with i + C/2). Unequal sizes are literal numbers in
    the code and pin the dim."""
    x, outs = args[0], _tensors(out)
    dim = _dim(args[2] if len(args) > 2 else kwargs.get("dim", 0), x.dim())
    sizes = [o.shape[dim] for o in outs]
    lx = tr.label(x)
    parts = split(lx[dim], sizes) if len(set(sizes)) == 1 else None
    if parts is None:
        fix(lx[dim])
        parts = _fixed(sizes)
    for p in parts[1:]:
        unify(parts[0], p)
    for o, p in zip(outs, parts):
        spaces = list(lx)
        spaces[dim] = p
        tr.set(o, spaces)


def cat_(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``torch.cat``: the joined dim is a cat space; the other dims are unified."""
    tensors = [t for t in args[0] if t.numel() > 0 or t.dim() == out.dim()]
    dim = _dim(args[1] if len(args) > 1 else kwargs.get("dim", 0), out.dim())
    spaces = broadcast(tr, tensors, [1 if k == dim else s for k, s in enumerate(out.shape)])
    spaces[dim] = cat([tr.label(t)[dim] for t in tensors])
    tr.set(out, spaces)


def stack(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``torch.stack``: a new constant dim; the stacked dims are unified."""
    tensors = list(args[0])
    dim = _dim(args[1] if len(args) > 1 else 0, out.dim())
    spaces = broadcast(tr, tensors, tensors[0].shape)
    spaces.insert(dim, atom(len(tensors), fixed=True))
    tr.set(out, spaces)


# ---------------------------------------------------------------------- layers
def _grouped(space: Space, groups: int) -> Optional[Space]:
    """The per-group part of a grouped conv's channel space (the group index is fixed)."""
    if find(space).size // groups <= 1:
        fix(space)
        return None
    parts = factor(space, [groups, find(space).size // groups])
    if parts is None:
        fix(space)
        return None
    fix(parts[0])
    return parts[1]


def convolution(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``aten.convolution``: in channels meet the weight's in dim, out channels are its out
    dim; depthwise convs keep their channels; grouped convs prune equally in every group."""
    x, w, b = args[0], args[1], args[2]
    transposed, groups = args[6], args[8]
    lx, lw = tr.label(x), tr.label(w)
    if transposed:
        if groups == 1:
            unify(lx[1], lw[0])
        else:
            for s in (lx[1], lw[0], lw[1]):
                fix(s)
        out_c = lw[1]
    else:
        out_c = lw[0]
        cin = x.shape[1]
        if groups == 1:
            unify(lx[1], lw[1])
        elif groups == cin and w.shape[1] == 1:
            mult = w.shape[0] // cin
            unify(lw[0], prod([lx[1], atom(mult, fixed=True)]))
        else:
            per_in, per_out = _grouped(lx[1], groups), _grouped(lw[0], groups)
            if per_in is not None:
                unify(per_in, lw[1])
            else:
                fix(lw[1])
            if per_out is None:
                fix(lw[0])
    if b is not None:
        unify(tr.label(b)[0], out_c)
    tr.set(out, [lx[0], out_c] + _fixed(out.shape[2:]))


def _matmul_spaces(tr, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> list[Space]:
    """(..., n, k) @ (..., k, m): k is contracted, batch dims broadcast."""
    la, lb = tr.label(a), tr.label(b)
    unify(la[-1], lb[-2])
    batch = broadcast_spaces([(a.shape[:-2], la[:-2]), (b.shape[:-2], lb[:-2])],
                             out.shape[:-2])
    return batch + [la[-2], lb[-1]]


def matmul(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``mm``/``bmm``/``addmm``/``baddbmm``/``matmul`` (and the additive input, if any)."""
    mats = [t for t in args if isinstance(t, torch.Tensor)]
    add, (a, b) = (mats[0], mats[1:3]) if len(mats) == 3 else (None, mats[:2])
    if a.dim() < 2 or b.dim() < 2:
        opaque(tr, func, args, kwargs, out)
        return
    spaces = _matmul_spaces(tr, a, b, out)
    if add is not None:
        nd = out.dim()
        for k in range(add.dim()):
            if add.shape[k] == out.shape[nd - add.dim() + k] > 1:
                unify(tr.label(add)[k], spaces[nd - add.dim() + k])
    tr.set(out, spaces)


def linear(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``aten.linear`` (x @ W.T + b) when it is not decomposed."""
    x, w = args[0], args[1]
    lx, lw = tr.label(x), tr.label(w)
    unify(lx[-1], lw[1])
    if len(args) > 2 and args[2] is not None:
        unify(tr.label(args[2])[0], lw[0])
    tr.set(out, list(lx[:-1]) + [lw[0]])


def attention(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """Fused scaled-dot-product attention: q·k over the last dim, weights over k/v's tokens."""
    q, k, v = args[:3]
    lq, lk, lv = tr.label(q), tr.label(k), tr.label(v)
    for d in range(q.dim() - 2):
        for t, other in ((k, lk), (v, lv)):
            if q.shape[d] == t.shape[d] > 1:
                unify(lq[d], other[d])
    unify(lq[-1], lk[-1])
    unify(lk[-2], lv[-2])
    outs = _tensors(out)
    tr.set(outs[0], list(lq[:-1]) + [lv[-1]])
    for o in outs[1:]:
        tr.set(o, _fixed(o.shape))


def layer_norm(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``native_layer_norm`` over the last dims: weight and bias follow those dims."""
    x, shape = args[0], args[1]
    lx = tr.label(x)
    for t in args[2:4]:
        if isinstance(t, torch.Tensor):
            for i, s in enumerate(tr.label(t)):
                unify(s, lx[x.dim() - len(shape) + i])
    outs = _tensors(out)
    tr.set(outs[0], lx)
    for o in outs[1:]:
        tr.set(o, list(lx[:x.dim() - len(shape)]) + [atom(1) for _ in shape])


def batch_norm(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """BatchNorm/InstanceNorm kernels: weight, bias and running statistics follow dim 1."""
    x = args[0]
    lx = tr.label(x)
    for t in _tensors(list(args[1:])):
        if t.dim() == 1 and t.shape[0] == x.shape[1]:
            unify(tr.label(t)[0], lx[1])
    outs = _tensors(out)
    tr.set(outs[0], lx)
    for o in outs[1:]:
        same = o.dim() == 1 and o.shape[0] == x.shape[1]
        tr.set(o, [lx[1]] if same else _fixed(o.shape))


def group_norm(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``native_group_norm``: channels prune equally in every group (groups == channels: any)."""
    x, groups = args[0], args[6]
    lx = tr.label(x)
    if 1 < groups < x.shape[1]:
        _grouped(lx[1], groups)
    for t in _tensors(list(args[1:3])):
        unify(tr.label(t)[0], lx[1])
    outs = _tensors(out)
    tr.set(outs[0], lx)
    for o in outs[1:]:
        tr.set(o, _fixed(o.shape))


def prelu(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``prelu`` with one slope per channel (dim 1)."""
    x, w = args[0], args[1]
    if w.numel() > 1:
        unify(tr.label(w)[0], tr.label(x)[1])
    tr.set(out, tr.label(x))


def pixel_shuffle(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """C*r² -> C: input channel c*r² + k is output channel c at sub-position k."""
    x, r = args[0], args[1]
    lx = tr.label(x)
    channels = atom(x.shape[-3] // (r * r))
    unify(lx[-3], prod([channels, atom(r * r, fixed=True)]))
    tr.set(out, list(lx[:-3]) + [channels] + _fixed(out.shape[-2:]))


def pixel_unshuffle(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """C -> C*r²: output channel c*r² + k is input channel c at sub-position k."""
    x, r = args[0], args[1]
    lx = tr.label(x)
    tr.set(out, list(lx[:-3]) + [prod([lx[-3], atom(r * r, fixed=True)])]
           + _fixed(out.shape[-2:]))


def glu(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``glu``: halves multiplied, so channel i goes with i + C/2 (as SimpleGate)."""
    x = args[0]
    dim = _dim(args[1] if len(args) > 1 else -1, x.dim())
    lx = list(tr.label(x))
    half = x.shape[dim] // 2
    parts = split(lx[dim], [half, half])
    if parts is None:
        fix(lx[dim])
        lx[dim] = atom(half, fixed=True)
    else:
        unify(parts[0], parts[1])
        lx[dim] = parts[0]
    tr.set(out, lx)


# ---------------------------------------------------------------------- spatial ops, reductions
def spatial(count: int) -> Rule:
    """Pooling, resampling, reflection/replication padding over the last ``count`` dims."""
    def rule(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        lx = tr.label(args[0])
        for o in _tensors(out):
            tr.set(o, list(lx[:o.dim() - count]) + _fixed(o.shape[o.dim() - count:]))
    return rule


def constant_pad(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``constant_pad_nd``: a padded channel dim is pinned; other dims keep their spaces."""
    x, pad = args[0], list(args[1])
    lx = list(tr.label(x))
    for i in range(len(pad) // 2):
        d = x.dim() - 1 - i
        if pad[2 * i] or pad[2 * i + 1]:
            fix(lx[d])
            lx[d] = atom(out.shape[d], fixed=True)
    tr.set(out, lx)


def along(dim_index: int) -> Rule:
    """Ops running along a dim (``roll``, ``flip``, ``cumsum``): that dim's positions mix or
    move, so a channel dim there is pinned; shapes are unchanged."""
    def rule(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        x = args[0]
        lx = tr.label(x)
        dims = args[dim_index] if len(args) > dim_index else ()
        for d in ([dims] if isinstance(dims, int) else list(dims)):
            if x.shape[_dim(d, x.dim())] > 1:
                fix(lx[_dim(d, x.dim())])
        tr.set(out, lx)
    return rule


def reduction(dim_index: int, keepdim_index: int) -> Rule:
    """``mean``/``sum``/``amax``/``var``/``norm`` over some dims (None: all)."""
    def rule(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        x = args[0]
        lx = tr.label(x)
        dims = args[dim_index] if len(args) > dim_index else kwargs.get("dim")
        keep = args[keepdim_index] if len(args) > keepdim_index else kwargs.get("keepdim", False)
        dims = range(x.dim()) if dims is None or dims == [] else \
            ([dims] if isinstance(dims, int) else dims)
        reduced = {_dim(d, x.dim()) for d in dims}
        spaces = [atom(1) if k in reduced else s for k, s in enumerate(lx)
                  if keep or k not in reduced]
        for o in _tensors(out):
            tr.set(o, spaces if o.dim() == len(spaces) else _fixed(o.shape))
    return rule


def index(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """Advanced indexing ``x[idx]``: indexed dims are pinned and replaced by the index's dims."""
    x, indices = args[0], list(args[1])
    lx = tr.label(x)
    used = [d for d, i in enumerate(indices) if i is not None]
    for d in used:
        if x.shape[d] > 1:
            fix(lx[d])
    kept = [lx[d] for d in range(x.dim()) if d not in used]
    new = out.dim() - len(kept)
    first = used[0] if used and used == list(range(used[0], used[-1] + 1)) else 0
    tr.set(out, kept[:first] + _fixed(out.shape[first:first + new]) + kept[first:])


def index_select(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``index_select``: the selected dim is pinned."""
    x, dim = args[0], _dim(args[1], args[0].dim())
    lx = list(tr.label(x))
    if x.shape[dim] > 1:
        fix(lx[dim])
    lx[dim] = atom(out.shape[dim], fixed=True)
    tr.set(out, lx)


def opaque(tr: Any, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """An op without a rule: everything it touches is pinned, and it is reported."""
    for t in _tensors(list(args) + list(kwargs.values())):
        for s in tr.label(t):
            fix(s)
    for o in _tensors(out):
        tr.set(o, _fixed(o.shape))
    tr.opaque_op(func)


_ELEMENTWISE = """abs add addcdiv addcmul alias bernoulli ceil clamp clamp_max clamp_min clone
copy cos detach div elu empty_like eq erf exp expm1 fill floor frac full_like ge gelu gt
hardsigmoid hardswish hardtanh le leaky_relu lerp lift_fresh lift_fresh_copy log log1p
logical_and logical_not logical_or logit lt masked_fill maximum minimum mish mul native_dropout
ne neg ones_like pow rand_like randn_like reciprocal relu relu6 round rsqrt rsub sgn sigmoid
sign silu sin softplus sqrt square sub tanh threshold trunc where zero zeros_like _to_copy
_softmax _log_softmax _conj positive""".split()
_FACTORY = """arange empty empty_strided eye full linspace ones rand randint randn randperm
scalar_tensor zeros normal""".split()

RULES: dict[str, Rule] = {
    **{name: elementwise for name in _ELEMENTWISE},
    **{name: factory for name in _FACTORY},
    **{name: view for name in ("view", "_unsafe_view", "reshape", "_reshape_alias",
                               "as_strided", "view_as", "flatten", "unflatten")},
    "expand": expand, "permute": permute, "transpose": transpose, "t": transpose,
    "unsqueeze": unsqueeze, "squeeze": squeeze, "select": select, "unbind": select,
    "slice": slice_, "split": split_, "split_with_sizes": split_, "chunk": split_,
    "cat": cat_, "concat": cat_, "stack": stack,
    "convolution": convolution, "_convolution": convolution, "mm": matmul, "bmm": matmul,
    "addmm": matmul, "baddbmm": matmul, "matmul": matmul, "linear": linear,
    "native_layer_norm": layer_norm, "native_batch_norm": batch_norm,
    "_native_batch_norm_legit": batch_norm, "_native_batch_norm_legit_no_training": batch_norm,
    "_native_batch_norm_legit_functional": batch_norm, "native_group_norm": group_norm,
    "_prelu_kernel": elementwise, "prelu": prelu, "pixel_shuffle": pixel_shuffle,
    "pixel_unshuffle": pixel_unshuffle, "glu": glu, "constant_pad_nd": constant_pad,
    "roll": along(2), "flip": along(1), "cumsum": along(1), "cumprod": along(1),
    "mean": reduction(1, 2), "sum": reduction(1, 2), "amax": reduction(1, 2),
    "amin": reduction(1, 2), "var": reduction(1, 3), "std": reduction(1, 3),
    "var_mean": reduction(1, 3), "std_mean": reduction(1, 3),
    "linalg_vector_norm": reduction(2, 3), "norm": reduction(2, 3),
    "index": index, "index_select": index_select,
}
for _n in (1, 2, 3):
    for _op in ("avg_pool", "max_pool", "max_pool{}d_with_indices", "_adaptive_avg_pool",
                "adaptive_avg_pool", "adaptive_max_pool", "upsample_nearest", "upsample_linear",
                "upsample_bilinear", "upsample_bicubic", "upsample_trilinear",
                "_upsample_nearest_exact", "_upsample_bilinear{}d_aa", "_upsample_bicubic{}d_aa",
                "replication_pad", "reflection_pad"):
        RULES[_op.format(_n) if "{}" in _op else f"{_op}{_n}d"] = spatial(_n)


def rule_for(func: Any) -> Rule:
    """The rule of an ATen op (in-place variants share their op's rule)."""
    name = func.overloadpacket.__name__
    if name.startswith("_scaled_dot_product"):
        return attention
    rule = RULES.get(name) or (RULES.get(name[:-1]) if name.endswith("_") else None)
    return rule or opaque
