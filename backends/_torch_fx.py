"""Cut a traced ``torch.nn.Module`` around a set of parameters (for the prefix cache).

``torch.fx`` traces the module once into a graph of calls. For a set of changed parameters, a node
*depends* on them if it calls a module owning one of them, reads one of them, or consumes a node that
depends. Nodes that do not depend form the prefix; the values they produce that dependent nodes (or
the output) consume are the *live* values: the activations entering the changed layer plus any skip
connection crossing the cut. The prefix returns them; the suffix takes them as inputs.

Both halves are ``Part`` modules: they run their share of the traced graph's nodes in order and hold
the original submodules, so ``functional_call`` substitutes weights by their usual names. A ``Part``
costs a few list operations to make, where a generated ``GraphModule`` costs tens of milliseconds of
code generation per cut (a layer-wise sweep of a 53-layer network makes 53 cuts).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.fx.node import map_arg

COMPUTE_OPS = ("call_module", "call_function", "call_method")


def trace(module) -> Any:
    """``torch.fx.symbolic_trace`` in eval mode (so module flags seen while tracing match scoring)."""
    import torch.fx as fx

    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        return fx.symbolic_trace(module)
    finally:
        for m, flag in modes:
            m.training = flag


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
        env = bind(self.inputs, args, kwargs)
        get = env.__getitem__
        for node in self.nodes:
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
        return map_arg(self.output, get)


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
