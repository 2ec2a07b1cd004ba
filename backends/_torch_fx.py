"""Cut a traced ``torch.nn.Module`` around a set of parameters (for the prefix cache).

``torch.fx`` traces the module once into a graph of calls. For a set of changed parameters, a node
*depends* on them if it calls a module owning one of them, reads one of them, or consumes a node that
depends. Nodes that do not depend form the prefix; the values they produce that dependent nodes (or
the output) consume are the *live* values: the activations entering the changed layer plus any skip
connection crossing the cut. The prefix module returns them; the suffix module takes them as inputs.
Both share the original submodules, so ``functional_call`` substitutes weights by their usual names.
"""
from __future__ import annotations

from typing import Any

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


def split(gm, root, changed_ids: set[int]):
    """(prefix GraphModule, suffix GraphModule, number of live values), or None when the prefix
    would compute nothing (the first layer changes) or nothing depends on the changed parameters."""
    import torch
    import torch.fx as fx

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
    after = [n for n in nodes if n in depends or n is output]
    before = [n for n in nodes if n not in depends and n is not output]
    live = []
    for n in after:
        for a in n.all_input_nodes:
            if a not in depends and a.op != "get_attr" and a not in live:
                live.append(a)
    if not any(n.op in COMPUTE_OPS for n in before):
        return None

    # prefix: everything independent of the change, returning the live values
    g1 = fx.Graph()
    env1: dict = {}
    for n in before:
        env1[n] = g1.node_copy(n, lambda a: env1[a])
    g1.output(tuple(env1[n] for n in live))

    # suffix: live values in, the dependent nodes (plus the attributes they read) out
    g2 = fx.Graph()
    env2: dict = {}
    for n in live:
        env2[n] = g2.placeholder(n.name)

    def arg(a):
        if a not in env2:  # an attribute read before the cut: read it again here
            env2[a] = g2.node_copy(a, arg)
        return env2[a]

    for n in after:
        env2[n] = g2.node_copy(n, arg)
    prefix = fx.GraphModule(root, g1)
    prefix.graph.eliminate_dead_code()
    prefix.recompile()
    return prefix, fx.GraphModule(root, g2), len(live)
