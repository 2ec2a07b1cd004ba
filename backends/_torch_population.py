"""Population forwards of a ``torch.fx``-traced module with the candidates folded into the channels.

``torch.func.vmap`` turns a convolution over P stacked weight sets into one grouped convolution on a
channels-first tensor, and pooling into per-plane loops; on CPU, for the small channel counts of the
networks wsx compresses, that is slower than P separate forwards. This interpreter walks the traced
graph once per population and keeps every activation in one of three forms:

* a plain tensor: the same for every candidate (layers before the first changed one run once);
* ``Folded``: per-candidate shape ``[N, C, *spatial]`` stored as ``[N, P*C, *spatial]`` (candidate p
  owns channels ``p*C .. p*C+C-1``), channels-last where torch has that layout. Convolutions become one
  grouped convolution (``groups = P * groups``), the first changed one a single im2col GEMM against
  all P weight sets; pooling, BatchNorm (eval) and activations are channel-wise, so they run on the
  folded tensor as they are, with P times the channels (where oneDNN is efficient);
* ``Lead``: stored ``[P, *shape]`` (vmap's layout): linear layers become one batched GEMM.

Ops without a rule here run through ``torch.func.vmap`` of that single node, and a node vmap cannot
batch (no batching rule, a Python number per candidate, data-dependent control flow inside an opaque
module) runs once per candidate, its results stacked: the fallback is per node, never per model
(``fallbacks`` and ``looped`` count them by node). Structured values (tuples, dicts, ``ModelOutput``) hold
population values as their leaves; selecting from them (``out[0]``, ``out.logits``) is free. The
backend checks the result against a one-by-one forward the first time a graph is used and falls back
to whole-model vmap if they disagree (see ``TorchBackend``).
"""
from __future__ import annotations

import operator
from typing import Any

CONV = ("Conv1d", "Conv2d", "Conv3d")
POOL = ("MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d")
# padding modules pad only the trailing (spatial) axes, so they apply to either layout as they are
PAD = ("ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d")
BATCHNORM = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
# element-wise modules: any layout works
ELEMENTWISE = ("ReLU", "ReLU6", "Hardtanh", "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid",
               "LeakyReLU", "ELU", "SELU", "CELU", "Mish", "Softplus", "Identity", "Dropout", "Dropout1d",
               "Dropout2d", "Dropout3d", "AlphaDropout")
ELEMENTWISE_METHODS = ("relu", "relu_", "sigmoid", "tanh", "exp", "abs", "neg", "clamp", "clamp_min",
                       "clamp_max", "float")
BINARY_METHODS = ("add", "sub", "mul", "div", "add_", "mul_")
# selections from a structured value (a ModelOutput, a dict): they pick population values as they are
CONTAINER_METHODS = ("to_tuple", "keys", "values", "items", "get", "__getitem__")


class Folded:
    """Per candidate ``[N, C, *spatial]``; stored ``[N, P*C, *spatial]``."""

    __slots__ = ("t", "c")

    def __init__(self, t, c: int):
        self.t, self.c = t, c

    def shape(self):
        import torch

        return torch.Size((self.t.shape[0], self.c, *self.t.shape[2:]))


class Lead:
    """Per candidate ``shape``; stored ``[P, *shape]``."""

    __slots__ = ("t",)

    def __init__(self, t):
        self.t = t

    def shape(self):
        return self.t.shape[1:]


POP = (Lead, Folded)  # values that differ between candidates


def _functions():
    import torch
    import torch.nn.functional as F

    elementwise = {torch.relu, F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.leaky_relu,
                   F.elu, F.mish, F.softplus, F.hardtanh, F.dropout, torch.sigmoid, torch.tanh, F.sigmoid,
                   F.tanh, torch.exp, torch.abs, torch.clamp, torch.neg}
    pool = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
            F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
            F.adaptive_max_pool2d, F.adaptive_max_pool3d}
    binary = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul,
              torch.add, torch.sub, torch.mul, torch.div}
    return elementwise, pool, binary


class PopulationInterpreter:
    """Runs a ``_torch_fx.Part`` (the whole traced model or a suffix of it) for P candidates at once.

    ``stacked`` maps parameter names (as ``functional_call`` takes them) to tensors with a leading
    candidate axis; parameters not in it are shared by all candidates.
    """

    def __init__(self, part):
        self.part = part
        # parameters are only ever written in place (set_weights, restore), so their ids are stable
        self._param_ids = {name: id(t) for name, t in part.named_parameters(remove_duplicate=False)}
        self._module_params: dict[str, list] = {}  # call_module target -> [(local name, id)]
        self.elementwise, self.pool, self.binary = _functions()
        import torch.nn.functional as F

        self.sdpa, self.pad = F.scaled_dot_product_attention, F.pad
        self.fallbacks: dict[str, int] = {}  # node target -> vmapped calls, for diagnostics and tests
        self.looped: dict[str, int] = {}  # node target -> calls run once per candidate (vmap could not)

    # -- layouts --------------------------------------------------------------------------------
    def _lead(self, v, p: int):
        if isinstance(v, Lead):
            return v
        if isinstance(v, Folded):
            t = v.t
            return Lead(t.reshape(t.shape[0], p, v.c, *t.shape[2:]).movedim(1, 0))
        return Lead(v.expand(p, *v.shape))

    def _folded(self, v, p: int) -> Folded:
        if isinstance(v, Folded):
            return v
        if isinstance(v, Lead):
            t = v.t
            c = t.shape[2]
            t = t.movedim(0, 1).reshape(t.shape[1], p * c, *t.shape[3:])
            return Folded(_channels_last(t), c)
        return Folded(_channels_last(v.repeat(1, p, *([1] * (v.dim() - 2)))), v.shape[1])

    # -- the walk -------------------------------------------------------------------------------
    def run(self, stacked: dict, args: tuple, p: int, kwargs: dict | None = None):
        """Outputs of the P candidates: a tensor with a leading candidate axis, or the graph's output
        structure (dict, tuple) with one such tensor per entry."""
        import torch
        from torch.fx.node import map_arg

        from ._torch_fx import bind

        part = self.part
        by_id = {self._param_ids[name]: t for name, t in stacked.items() if name in self._param_ids}
        env: dict = bind(part.inputs, args, kwargs or {})
        get = env.__getitem__
        for node, dead in zip(part.nodes, part.release):
            a = map_arg(node.args, get)
            kw = map_arg(node.kwargs, get)
            if node.op == "get_attr":
                obj = part.attr(node.target)
                env[node] = Lead(by_id[id(obj)]) if id(obj) in by_id else obj
            elif node.op == "call_module":
                env[node] = self._module(node.target, part.module_at(node.target), a, kw, by_id, p)
            elif node.op == "call_function":
                env[node] = self._function(node.target, a, kw, p)
            elif node.op == "call_method":
                env[node] = self._method(node.target, a, kw, p)
            else:
                raise TypeError(f"unexpected graph node {node.op}")
            for d in dead:
                del env[d]
        out = map_arg(part.output, get)

        def stack(v):
            if isinstance(v, POP):
                return self._lead(v, p).t
            return v.expand(p, *v.shape) if isinstance(v, torch.Tensor) else v

        return _tree_map(stack, out)

    # -- call_module ----------------------------------------------------------------------------
    def _module(self, target, mod, a, kw, by_id, p):
        ids = self._module_params.get(target)
        if ids is None:
            ids = self._module_params[target] = [(n, id(t)) for n, t in mod.named_parameters(remove_duplicate=False)]
        own = {name: by_id[i] for name, i in ids if i in by_id}
        if not own and not _any_pop(a, kw):
            return mod(*a, **kw)
        kind = type(mod).__name__
        torch_builtin = type(mod).__module__.startswith("torch.nn")
        if torch_builtin and not kw and len(a) == 1:
            x = a[0]
            if kind in CONV and getattr(mod, "padding_mode", "zeros") == "zeros" and _rank(x) == len(mod.kernel_size) + 2:
                return self._conv(mod, x, own, p)
            if kind == "Linear" and set(own) <= {"weight", "bias"}:
                return self._linear(mod, x, own, p)
            if not own and (kind in ELEMENTWISE or (kind in PAD and _rank(x) >= len(mod.padding) // 2 + 2)):
                return _same(x, mod)
            if not own and kind in POOL and not getattr(mod, "return_indices", False) \
                    and _rank(x) == _spatial(kind) + 2:
                return _same(self._folded(x, p), mod)
            if not own and kind in BATCHNORM and not mod.training and mod.running_mean is not None \
                    and _rank(x) in ((2, 3) if kind == "BatchNorm1d" else (_spatial(kind) + 2,)):
                return self._batchnorm(mod, self._folded(x, p), p)
            if not own and kind == "Flatten":
                return self._flatten(x, mod.start_dim, mod.end_dim, p)
        return self._fallback(target, lambda params, xs, kws: _functional(mod, params, xs, kws), own, a, kw, p)

    def _conv(self, mod, x, own, p):
        import torch.nn.functional as F

        w, b = own.get("weight"), own.get("bias")
        groups = mod.groups
        dims = len(mod.kernel_size)
        if w is None and b is None and isinstance(x, Folded):
            # shared weights: [N, P*C, ...] is [N*P, C, ...] in memory, so one plain convolution over
            # N*P samples (no grouped convolution, which oneDNN runs several times slower on CPU)
            xt = x.t.contiguous()
            n = xt.shape[0]
            y = mod(xt.view(n * p, x.c, *xt.shape[2:]))
            return Folded(y.view(n, p * y.shape[1], *y.shape[2:]), y.shape[1])
        if w is None:
            w = mod.weight.detach().expand(p, *mod.weight.shape)
        cout = w.shape[1]
        if b is None and mod.bias is not None:
            b = mod.bias.detach().expand(p, cout)
        bias = None if b is None else b.reshape(p * cout)
        if not isinstance(x, POP) and groups == 1 and dims == 2 and not isinstance(mod.padding, str):
            return Folded(_conv2d_gemm(x, w.reshape(p * cout, -1), bias, mod), cout)
        xf = self._folded(x, p)
        conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
        y = conv(xf.t, w.reshape(p * cout, *w.shape[2:]), bias, mod.stride, mod.padding, mod.dilation,
                 groups * p)
        return Folded(y, cout)

    def _linear(self, mod, x, own, p):
        import torch
        import torch.nn.functional as F

        w, b = own.get("weight"), own.get("bias")
        if w is None:  # shared weights: a linear map acts on the last axis, whatever leads
            xl = self._lead(x, p).t  # detached: matmul takes a slow broadcast path for a grad-requiring weight
            y = (xl.reshape(-1, xl.shape[-1]) @ mod.weight.detach().t()).reshape(*xl.shape[:-1], -1)
        elif isinstance(x, POP):
            xl = self._lead(x, p).t
            y = torch.bmm(xl.reshape(p, -1, xl.shape[-1]), w.transpose(1, 2)).reshape(*xl.shape[:-1], w.shape[1])
        else:  # shared input: one GEMM against all P weight sets
            out = w.shape[1]
            y = (x.reshape(-1, x.shape[-1]) @ w.reshape(p * out, -1).t()).reshape(*x.shape[:-1], p, out)
            y = y.movedim(-2, 0)
        if b is not None:
            y = y + b.reshape(p, *([1] * (y.dim() - 2)), b.shape[-1])
        elif mod.bias is not None:
            y = y + mod.bias.detach()
        return Lead(y)

    def _batchnorm(self, mod, x: Folded, p):
        import torch.nn.functional as F

        def rep(t):
            return None if t is None else t.detach().repeat(p)

        y = F.batch_norm(x.t, rep(mod.running_mean), rep(mod.running_var), rep(mod.weight), rep(mod.bias),
                         False, 0.0, mod.eps)
        return Folded(y, x.c)

    def _flatten(self, x, start, end, p):
        import torch

        if not isinstance(x, POP):
            return torch.flatten(x, start, end)
        t = self._lead(x, p).t
        return Lead(torch.flatten(t, start + 1 if start >= 0 else start, end + 1 if end >= 0 else end))

    # -- call_function / call_method ------------------------------------------------------------
    def _function(self, fn, a, kw, p):
        import torch

        if not _any_pop(a, kw):
            return fn(*a, **kw)
        if fn is getattr and isinstance(a[0], POP):
            if a[1] == "shape":
                return a[0].shape()
            if a[1] == "ndim":
                return len(a[0].shape())
            if a[1] in ("dtype", "device", "is_cuda", "layout", "is_nested"):
                return getattr(a[0].t, a[1])
        if fn in (operator.getitem, getattr) and _is_container(a[0]) and not _any_pop(a[1:], kw):
            return fn(*a, **kw)  # picks a population value out of a tuple / dict / ModelOutput
        if fn is self.sdpa and len(a) >= 3 and not _any_pop(a[4:], {k: v for k, v in kw.items() if k != "attn_mask"}) \
                and not isinstance(kw.get("attn_mask", a[3] if len(a) > 3 else None), Folded):
            return self._attention(a, kw, p)
        if fn is self.pad and isinstance(a[0], POP) and not _any_pop(a[1:], kw) \
                and len(kw.get("pad", a[1] if len(a) > 1 else ())) // 2 <= _rank(a[0]) - 2 \
                and kw.get("mode", a[2] if len(a) > 2 else "constant") == "constant":
            return _same(a[0], lambda t: fn(t, *a[1:], **kw))  # pads spatial axes only: any layout
        if fn in self.elementwise and isinstance(a[0], POP) and not _any_pop(a[1:], kw):
            return _same(a[0], lambda t: fn(t, *a[1:], **kw))
        if fn in self.pool and _rank(a[0]) == _spatial(fn.__name__) + 2 and not _any_pop(a[1:], kw) \
                and not kw.get("return_indices"):
            return _same(self._folded(a[0], p), lambda t: fn(t, *a[1:], **kw))
        if fn in self.binary and len(a) == 2 and not kw:
            done = self._binary(fn, a[0], a[1], p)
            if done is not None:
                return done
        if fn is torch.flatten and isinstance(a[0], POP) and not _any_pop(a[1:], kw):
            start = a[1] if len(a) > 1 else kw.get("start_dim", 0)
            end = a[2] if len(a) > 2 else kw.get("end_dim", -1)
            if start != 0:
                return self._flatten(a[0], start, end, p)
        return self._fallback(getattr(fn, "__name__", str(fn)), lambda _, xs, kws: fn(*xs, **kws), {}, a, kw, p)

    def _method(self, name, a, kw, p):
        if not _any_pop(a, kw):
            return getattr(a[0], name)(*a[1:], **kw)
        x = a[0]
        if name in CONTAINER_METHODS and _is_container(x) and not _any_pop(a[1:], kw):
            return getattr(x, name)(*a[1:], **kw)
        if isinstance(x, POP) and not _any_pop(a[1:], kw):
            if name == "size":
                shape = x.shape()
                return shape if len(a) == 1 and not kw else shape[a[1] if len(a) > 1 else kw["dim"]]
            if name == "dim":
                return len(x.shape())
            if name == "contiguous":
                return x  # the folded layout is already the one the next op wants
            if name in ELEMENTWISE_METHODS:
                return _same(x, lambda t: getattr(t, name)(*a[1:], **kw))
            if name == "flatten" and len(a) > 1 and a[1] != 0:
                return self._flatten(x, a[1], a[2] if len(a) > 2 else -1, p)
            if name in ("view", "reshape"):
                shape = a[1] if len(a) == 2 and isinstance(a[1], (tuple, list)) else a[1:]
                return Lead(self._lead(x, p).t.reshape(p, *shape))
        if name in BINARY_METHODS and len(a) == 2 and not kw:
            done = self._binary(getattr(operator, name.rstrip("_").replace("div", "truediv")), a[0], a[1], p)
            if done is not None:
                return done
        return self._fallback(name, lambda _, xs, kws: getattr(xs[0], name)(*xs[1:], **kws), {}, a, kw, p)

    def _binary(self, fn, x, y, p):
        """Element-wise binary ops where both sides line up in storage; None to fall back."""
        import torch

        if isinstance(x, Folded) and isinstance(y, Folded):
            if x.t.shape == y.t.shape:
                return Folded(fn(x.t, y.t), x.c)
            return None
        if isinstance(x, Folded) or isinstance(y, Folded):
            f, other = (x, y) if isinstance(x, Folded) else (y, x)
            if isinstance(other, (int, float)) or (isinstance(other, torch.Tensor) and other.numel() == 1):
                return Folded(fn(x.t, y) if f is x else fn(x, y.t), f.c)
            x, y = self._lead(x, p), self._lead(y, p)
        if isinstance(x, Lead) and isinstance(y, Lead):
            return Lead(fn(x.t, y.t)) if x.t.dim() == y.t.dim() else None
        lead, other = (x, y) if isinstance(x, Lead) else (y, x)
        if isinstance(other, (int, float)) or (isinstance(other, torch.Tensor) and other.dim() < lead.t.dim()):
            return Lead(fn(x.t, y) if lead is x else fn(x, y.t))
        return None

    def _attention(self, a, kw, p):
        """``scaled_dot_product_attention`` takes any leading batch axes: the candidate axis is one more
        (a shared mask broadcasts against it, a population one gets singleton axes after it)."""
        q, k, v = (self._lead(t, p).t for t in a[:3])
        kw = dict(kw)
        mask = kw.pop("attn_mask", a[3] if len(a) > 3 else None)
        if isinstance(mask, Lead):
            mask = mask.t.reshape(p, *([1] * (q.dim() - mask.t.dim())), *mask.t.shape[1:])
        return Lead(self.sdpa(q, k, v, mask, *a[4:], **kw))

    # -- anything else: vmap of the one node, else a loop over the candidates ------------------------
    def _fallback(self, label, call, own, a, kw, p):
        """``call(params, args, kwargs)`` vmapped over the population values among ``a``/``kw`` and
        ``own``; where vmap cannot batch it, run once per candidate."""
        from torch.func import vmap

        pops: list = []

        def collect(v):
            if isinstance(v, POP):
                # contiguous: some ops (group_norm) cannot query a channels-last layout under vmap
                pops.append(self._lead(v, p).t.contiguous())
                return _Slot(len(pops) - 1)
            return v

        args = _tree_map(collect, a)
        kwargs = _tree_map(collect, kw)

        def body(params, *batched):
            def fill(v):
                return batched[v.i] if isinstance(v, _Slot) else v

            return call(params, tuple(_tree_map(fill, args)), dict(_tree_map(fill, kwargs)))

        in_dims = (0 if own else None, *([0] * len(pops)))
        try:
            out = vmap(body, in_dims=in_dims)(own or None, *pops)
            kind = "vmap"
        except Exception:  # noqa: BLE001 - no batching rule, non-tensor results, data-dependent control flow
            outs = [body({k: t[i] for k, t in own.items()} or None, *(t[i] for t in pops)) for i in range(p)]
            out, kind = _stack_results(outs), "loop"
        done = self.fallbacks if kind == "vmap" else self.looped
        done[str(label)] = done.get(str(label), 0) + 1
        return _tree_map(lambda t: Lead(t) if _is_tensor(t) else t, out, population=False)


class _Slot:
    __slots__ = ("i",)

    def __init__(self, i):
        self.i = i


def _functional(mod, params, xs, kws):
    from torch.func import functional_call

    return functional_call(mod, params, xs, kws) if params else mod(*xs, **kws)


def _any_pop(a, kw) -> bool:
    import torch.utils._pytree as pytree

    return any(isinstance(v, POP) for v in pytree.tree_leaves((a, kw), is_leaf=_is_pop))


def _is_pop(v) -> bool:
    return isinstance(v, POP)


def _is_tensor(v) -> bool:
    import torch

    return isinstance(v, torch.Tensor)


def _tree_map(fn, tree, population: bool = True):
    """``fn`` over the leaves of ``tree`` (population values are leaves when ``population``), keeping
    container classes (``ModelOutput`` included)."""
    import torch.utils._pytree as pytree

    return pytree.tree_map(fn, tree, is_leaf=_is_pop if population else None)


def _is_container(v) -> bool:
    return isinstance(v, (tuple, list, dict)) and not isinstance(v, POP)


def _stack_results(outs: list):
    """Per-candidate results of one node as one structure: tensors stacked on a leading candidate
    axis; other leaves must agree between candidates (a shape, a flag)."""
    import torch
    import torch.utils._pytree as pytree

    flat = [pytree.tree_flatten(o) for o in outs]
    spec = flat[0][1]
    if any(f[1] != spec for f in flat):
        raise TypeError("the candidates' results of a node differ in structure")
    leaves = []
    for vals in zip(*(f[0] for f in flat)):
        if isinstance(vals[0], torch.Tensor):
            leaves.append(torch.stack(vals))
        elif all(v == vals[0] for v in vals):
            leaves.append(vals[0])
        else:
            raise TypeError(f"the candidates' results of a node differ: {vals[:3]}")
    return pytree.tree_unflatten(leaves, spec)


def _same(x, fn):
    """Apply a layout-agnostic op to the storage, keeping the wrapper."""
    if isinstance(x, Folded):
        return Folded(fn(x.t), x.c)
    if isinstance(x, Lead):
        return Lead(fn(x.t))
    return fn(x)


def _rank(x) -> int:
    """Number of axes of ``x`` per candidate (-1 for a non-tensor)."""
    if isinstance(x, Folded):
        return x.t.dim()
    if isinstance(x, Lead):
        return x.t.dim() - 1
    return x.dim() if hasattr(x, "dim") else -1


def _spatial(name: str) -> int:
    """Spatial axes of a pooling / BatchNorm op from its name (``max_pool2d``, ``BatchNorm3d``)."""
    return int(name[-2]) if name[-1:] == "d" and name[-2:-1].isdigit() else -10


def _channels_last(t):
    import torch

    if t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t


def _conv2d_gemm(x, w2d, bias, mod):
    """A 2-D convolution of one shared input with all P weight sets as one im2col GEMM; the result is
    ``[N, P*Cout, Ho, Wo]`` in channels-last layout (what the grouped convolutions after it want)."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = mod.kernel_size, mod.stride, mod.padding, mod.dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))  # N, Cin*kh*kw, L
    cols = cols.transpose(1, 2).reshape(n * ho * wo, -1)
    y = torch.addmm(bias, cols, w2d.t()) if bias is not None else cols @ w2d.t()
    return y.view(n, ho, wo, -1).permute(0, 3, 1, 2)
