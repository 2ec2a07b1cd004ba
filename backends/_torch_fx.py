"""Trace a ``torch.nn.Module`` into a ``torch.fx`` graph and cut it around a set of parameters.

**Tracing** (``trace``). ``torch.fx.symbolic_trace`` fails on most real models (Hugging Face's among
them): their forwards check shapes and dtypes (``if x.shape[1] != self.num_channels``), compute
padding from sizes (``int(x.shape[-2])``), slice by lengths, take ``*args`` / ``**kwargs`` and
optional arguments. ``trace`` differs from it in three ways:

* it traces the call the scoring data makes (``model(x)``, ``model(**inputs)``), so optional
  arguments keep their Python defaults (``labels=None``, ``attn_mask=None``) instead of becoming
  graph inputs, and decorators taking ``*args, **kwargs`` run as Python;
* every graph value carries two concrete values, computed on one and on two example samples as the
  trace goes. A value derived only from tensor metadata (shapes, dtypes, devices, and arithmetic on
  them) may be used by Python control flow, ``int()``, ``len()`` and slicing, where both examples
  agree: it is then fixed in the graph (spatial sizes, sequence length, dtype checks); one that
  differs between them depends on the batch size and is refused, as is any use of tensor data in
  control flow (``if mask.all()``), which a graph could not replay for other data;
* where a module's forward still cannot be traced, that module (the innermost one the failure
  passed through) becomes one opaque graph node and the trace is retried: the fast paths then
  treat that node as a whole (``Traced.leaves`` says which and why). Only a failure in the
  top-level forward itself fails the trace.

**Cutting** (``split``). For a set of changed parameters, a node *depends* on them if it calls a
module owning one of them, reads one of them, or consumes a node that depends. Nodes that do not
depend form the prefix; the values they produce that dependent nodes (or the output) consume are the
*live* values: the activations entering the changed layer plus any skip connection crossing the cut.
The prefix returns them; the suffix takes them as inputs.

Both halves are ``Part`` modules: they run their share of the traced graph's nodes in order and hold
the original submodules, so ``functional_call`` substitutes weights by their usual names. A ``Part``
costs a few list operations to make, where a generated ``GraphModule`` costs tens of milliseconds of
code generation per cut (a layer-wise sweep of a 53-layer network makes 53 cuts).
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch.fx.node import map_arg

COMPUTE_OPS = ("call_module", "call_function", "call_method")
# tensor metadata: values read through these may steer Python control flow while tracing
META_ATTRS = frozenset(("shape", "dtype", "device", "ndim", "is_cuda", "layout", "is_sparse", "is_quantized", "is_nested",
                        "is_mkldnn", "is_meta"))
META_METHODS = frozenset(("size", "dim", "numel", "nelement", "get_device", "is_floating_point", "is_complex",
                          "element_size"))
MAX_LEAVES = 64  # opaque modules a trace may add before it gives up


@dataclass
class Traced:
    """A traced model: its ``graph``, the module its node targets resolve against (``root``, holding
    the model's submodules, parameters and buffers under their own names) and the modules that run as
    one opaque node, {qualified name: why they could not be traced through}."""

    graph: Any
    root: Any
    leaves: dict = field(default_factory=dict)


class _Shell(torch.nn.Module):
    """The model's submodules, parameters and buffers under their own names (the very same dicts);
    its generated ``forward`` calls the model's forward as the scoring data does."""

    def __init__(self, model):
        super().__init__()
        for name in ("_modules", "_parameters", "_buffers"):
            self.__dict__[name] = model.__dict__[name]


def _call_shell(model, nargs: int, names: list[str]) -> _Shell:
    """A ``_Shell`` whose forward takes ``nargs`` positional inputs and the keyword inputs ``names``
    and calls ``type(model).forward`` with exactly those (everything else keeps its default)."""
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            raise fx.proxy.TraceError(f"input {name!r} is not a plain argument name")
    positional = [f"arg{i}" for i in range(nargs)]
    while set(positional) & set(names):
        positional = ["_" + p for p in positional]
    params = ", ".join(["self", *positional, *names])
    call = ", ".join([*positional, *(f"{n}={n}" for n in names)])
    scope = {"_forward": type(model).forward, "_model": model}
    exec(f"def forward({params}):\n    return _forward(_model, {call})\n", scope)  # noqa: S102 - names checked
    cls = type(f"Traced{type(model).__name__}", (_Shell,), {"forward": scope["forward"]})
    return cls(model)


def _same(a, b) -> bool:
    """Whether two concrete values of one graph value agree (so the value may be fixed in the graph)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and a.dtype == b.dtype and bool(torch.equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 - values that cannot be compared do not agree
        return False


class _ConcreteProxy(fx.Proxy):
    """A proxy that Python may turn into an int, a length or a bool where the tracer knows the value."""

    def __getattr__(self, k: str):
        values = self.node.meta.get("wsx_values")
        if values is not None and not hasattr(values[0], k):  # hasattr(x, "jax") must stay False
            raise AttributeError(k)
        return _ConcreteAttribute(self, k)

    def __len__(self) -> int:
        return self.tracer.length(self)

    def __int__(self) -> int:
        return int(self.tracer.concrete(self, "int()"))

    def __index__(self) -> int:
        return int(self.tracer.concrete(self, "an index"))

    def __float__(self) -> float:
        return float(self.tracer.concrete(self, "float()"))


class _ConcreteAttribute(fx.proxy.Attribute, _ConcreteProxy):
    pass


class _Tracer(fx.Tracer):
    """``fx.Tracer`` with concrete example values, opaque modules and the culprit of a failure."""

    def __init__(self, leaves: set, examples: list | None):
        super().__init__()
        self.leaves = leaves
        self.failed = None  # the innermost traced-through module a failure passed through
        self.inputs = examples  # per placeholder name: (value on 1 sample, value on 2 samples)
        self._computing = False

    def is_leaf_module(self, m, qualname: str) -> bool:
        # torch's own modules are leaves unless they hold others (TransformerEncoder, MultiheadAttention)
        return id(m) in self.leaves or (super().is_leaf_module(m, qualname) and not m._modules)

    def call_module(self, m, forward, args, kwargs):
        if self._computing:  # a concrete value being computed: the module runs as it is
            return forward(*args, **kwargs)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed is None and not self.is_leaf_module(m, ""):
                self.failed = m
            raise

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._computing:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def proxy(self, node):
        return _ConcreteProxy(node, self)

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if self.inputs is not None and kind != "output":  # tensor constants arrive here as get_attr nodes
            self._evaluate(node)
        return node

    # -- concrete values ------------------------------------------------------------------------------
    def _evaluate(self, node) -> None:
        """Both concrete values of ``node`` (None where an input's is unknown or the op fails) and
        whether it derives from tensor metadata alone (``static``)."""
        op, target = node.op, node.target
        inputs = node.all_input_nodes
        if op == "placeholder":
            values = self.inputs.get(target)
            static = False
        elif op == "get_attr":
            self._computing = True
            try:
                obj = _resolve(self.root, target)
            finally:
                self._computing = False
            obj = obj.detach().clone() if isinstance(obj, torch.Tensor) else obj  # never written in place
            values, static = (obj, obj), False
        else:
            static = (op == "call_function" and target is getattr and node.args[1] in META_ATTRS) \
                or (op == "call_method" and target in META_METHODS) \
                or (op == "call_function" and getattr(target, "__name__", "") in META_METHODS
                    and target is getattr(torch, target.__name__, None)) \
                or (bool(inputs) and all(n.meta.get("wsx_static") for n in inputs))
            values = None
            if all(n.meta.get("wsx_values") is not None for n in inputs):
                values = tuple(self._run(node, i) for i in (0, 1))
                if any(v is _UNKNOWN for v in values):
                    values = None
        node.meta["wsx_values"] = values
        node.meta["wsx_static"] = static

    def _run(self, node, i: int):
        def value(n):
            return n.meta["wsx_values"][i]

        args, kwargs = map_arg(node.args, value), map_arg(node.kwargs, value)
        self._computing = True
        try:
            with torch.no_grad():
                if node.op == "call_function":
                    return node.target(*args, **kwargs)
                if node.op == "call_method":
                    return getattr(args[0], node.target)(*args[1:], **kwargs)
                return _resolve(self.root, node.target)(*args, **kwargs)  # call_module
        except Exception:  # noqa: BLE001 - an op the examples cannot run: the value stays unknown
            return _UNKNOWN
        finally:
            self._computing = False

    def concrete(self, proxy, why: str):
        """The value of ``proxy`` for Python to use, where it derives from tensor metadata alone and
        does not depend on the batch size; a TraceError otherwise."""
        node = proxy.node
        values = node.meta.get("wsx_values")
        if values is None:
            raise fx.proxy.TraceError(f"{why} of {node.name}, whose value the trace does not know")
        if not node.meta.get("wsx_static"):
            raise fx.proxy.TraceError(f"{why} of {node.name}, which depends on tensor data")
        if not _same(*values):
            raise fx.proxy.TraceError(f"{why} of {node.name}, which depends on the batch size")
        return values[0]

    def length(self, proxy) -> int:
        """``len()`` of a sequence (a shape) whose length does not depend on the batch size."""
        values = proxy.node.meta.get("wsx_values")
        if values is not None and all(isinstance(v, (tuple, list)) for v in values) and len(values[0]) == len(values[1]):
            return len(values[0])
        return len(self.concrete(proxy, "len()"))

    def to_bool(self, obj) -> bool:
        return bool(self.concrete(obj, "control flow on the value"))

    def iter(self, obj):
        return iter([obj[i] for i in range(self.length(obj))])


_UNKNOWN = object()


def trace(module, examples: list | None = None) -> Traced:
    """``module`` traced in eval mode (module flags seen while tracing match scoring); see the module
    docstring. ``examples``: two ``(args, kwargs)`` calls of the model, on one sample and on two, in
    the form the scoring data calls it; None traces ``module.forward``'s own signature without
    concrete values. Raises what tracing the top-level forward raised."""
    if examples is not None:
        (args1, kwargs1), (args2, kwargs2) = examples
        root = _call_shell(module, len(args1), list(kwargs1))
        names = [p for p in root.forward.__code__.co_varnames[1:1 + len(args1) + len(kwargs1)]]
        inputs = {name: (v1, v2) for name, v1, v2 in zip(names, [*args1, *kwargs1.values()],
                                                          [*args2, *kwargs2.values()])}
    else:
        root, inputs = module, None
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    leaves: dict = {}
    try:
        while True:
            tracer = _Tracer({id(m) for m, _ in leaves.values()}, inputs)
            try:
                graph = tracer.trace(root)
                break
            except Exception as exc:
                culprit = tracer.failed
                if culprit is None or len(leaves) >= MAX_LEAVES:
                    raise
                leaves[id(culprit)] = (culprit, f"{type(exc).__name__}: {exc}")
    finally:
        for m, flag in modes:
            m.training = flag
    _drop_static_dead_code(graph)
    for node in graph.nodes:  # the examples' activations are not needed past the trace
        node.meta.pop("wsx_values", None)
    qualified = {id(m): name for name, m in module.named_modules()}
    return Traced(graph, root, {qualified.get(i, "?"): why for i, (_, why) in leaves.items()})


def _drop_static_dead_code(graph) -> None:
    """Remove metadata reads that only fed Python control flow (fixed in the graph when traced)."""
    for node in reversed(list(graph.nodes)):
        if node.op in COMPUTE_OPS and not node.users and node.meta.get("wsx_static"):
            graph.erase_node(node)


def _resolve(root, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


class Part(torch.nn.Module):
    """Some nodes of a traced graph, run in order on the values of ``inputs``; returns ``output`` (a
    node or a structure of nodes). Holds ``root``'s children, parameters and buffers under their own
    names, so parameter names match ``root``'s."""

    def __init__(self, root, nodes, inputs, output):
        super().__init__()
        for name, child in root.named_children():
            self.add_module(name, child)
        for name, p in root.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for name, b in root.named_buffers(recurse=False):
            self.register_buffer(name, b)
        self.nodes = list(nodes)
        self.inputs = list(inputs)
        self.output = output
        object.__setattr__(self, "_root", root)  # not a submodule: its names stay the Part's names
        self._calls = {n.target: _resolve(root, n.target) for n in self.nodes if n.op == "call_module"}
        self.release = release_plan(self.nodes, self.output)

    @classmethod
    def whole(cls, gm, root) -> "Part":
        """All of the traced module ``gm``."""
        nodes = list(gm.graph.nodes)
        return cls(root, [n for n in nodes if n.op not in ("placeholder", "output")],
                   [n for n in nodes if n.op == "placeholder"], nodes[-1].args[0])

    def attr(self, target: str):
        """A ``get_attr`` value, read at call time (``functional_call`` may have substituted it)."""
        try:
            return _resolve(self, target)
        except AttributeError:  # a plain attribute of the root module
            return _resolve(self._root, target)

    def module_at(self, target: str):
        return self._calls[target]

    def forward(self, *args, **kwargs):
        return self.run(args, kwargs)

    def peak_bytes(self, *args, **kwargs) -> int:
        """Most bytes of tensors alive at once while the part runs on these inputs (its working set)."""
        peak = [0]

        def measure(env):
            storages = {}
            for v in env.values():
                for t in torch.utils._pytree.tree_leaves(v):
                    if isinstance(t, torch.Tensor):
                        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            peak[0] = max(peak[0], sum(storages.values()))

        self.run(args, kwargs, measure)
        return peak[0]

    def run(self, args, kwargs, after=None):
        env = bind(self.inputs, args, kwargs)
        get = env.__getitem__
        for node, dead in zip(self.nodes, self.release):
            a = map_arg(node.args, get)
            kw = map_arg(node.kwargs, get)
            op = node.op
            if op == "call_module":
                env[node] = self._calls[node.target](*a, **kw)
            elif op == "call_function":
                env[node] = node.target(*a, **kw)
            elif op == "call_method":
                env[node] = getattr(a[0], node.target)(*a[1:], **kw)
            elif op == "get_attr":
                env[node] = self.attr(node.target)
            else:  # a placeholder left unfed: its default value
                env[node] = node.args[0] if node.args else None
            if after is not None:
                after(env)
            for d in dead:  # values no later node reads: freed as eager PyTorch would
                del env[d]
        return map_arg(self.output, get)


def release_plan(nodes: list, output) -> list[list]:
    """Per node, the values (inputs and earlier nodes) no node from it on reads: what a walk over
    ``nodes`` may drop after running it, so activations live no longer than in eager PyTorch."""
    last: dict = {}
    for i, node in enumerate(nodes):
        for a in node.all_input_nodes:
            last[a] = i
        last.setdefault(node, i)  # a value nothing reads goes at once
    kept: set = set()
    map_arg(output, kept.add)
    plan: list[list] = [[] for _ in nodes]
    for value, i in last.items():
        if value not in kept:
            plan[i].append(value)
    return plan


def bind(inputs: list, args: tuple, kwargs: dict) -> dict:
    """Values of a Part's input nodes, as Python binds a call: positional ``args`` first, then the
    remaining placeholders by name from ``kwargs`` (a model called with a dict of inputs), else
    their default values (``attn_mask=None``)."""
    env = dict(zip(inputs, args))
    names = set()
    for node in inputs[len(args):]:
        names.add(node.target)
        if node.op == "placeholder" and node.target in kwargs:
            env[node] = kwargs[node.target]
        else:
            env[node] = node.args[0] if node.args else None
    unknown = set(kwargs) - names
    if unknown:
        raise TypeError(f"the traced forward takes no argument(s) {sorted(unknown)}")
    return env


def split(gm, root, changed_ids: set[int]):
    """(prefix Part, suffix Part, number of live values), or None when the prefix would compute
    nothing (the first layer changes) or nothing depends on the changed parameters."""
    nodes = list(gm.graph.nodes)
    depends: set = set()
    for node in nodes:
        if node.op == "call_module":
            mod = _resolve(root, node.target)
            own = any(id(p) in changed_ids for p in mod.parameters())
        elif node.op == "get_attr":
            obj = _resolve(root, node.target)
            own = isinstance(obj, torch.Tensor) and id(obj) in changed_ids
        else:
            own = False
        if own or (node.op != "output" and any(a in depends for a in node.all_input_nodes)):
            depends.add(node)
    if not depends:
        return None
    output = nodes[-1]
    after = [n for n in nodes if n in depends]
    before = [n for n in nodes if n not in depends and n is not output]
    live = []
    for n in after + [output]:
        for a in n.all_input_nodes:
            if a not in depends and a.op != "get_attr" and a not in live:
                live.append(a)
    if not any(n.op in COMPUTE_OPS for n in before):
        return None

    # prefix: what the live values need, from the module's inputs
    needed = set(live)
    for n in reversed(before):
        if n in needed:
            needed.update(n.all_input_nodes)
    placeholders = [n for n in before if n.op == "placeholder"]
    prefix = Part(root, [n for n in before if n in needed and n.op != "placeholder"], placeholders, tuple(live))
    # suffix: live values in; attributes read before the cut are read again here
    reread = [n for n in before if n.op == "get_attr" and any(u in depends for u in n.users)]
    suffix = Part(root, reread + after, live, output.args[0])
    return prefix, suffix, len(live)
