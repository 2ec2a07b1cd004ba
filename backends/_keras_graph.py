"""Cut a functional (or Sequential) Keras 3 model around a set of variables (for the prefix cache).

A node of the model's graph *depends* on the changed variables if its layer owns one of them or it
consumes a tensor produced by a dependent node. The tensors that independent nodes produce and
dependent nodes (or the model outputs) consume are the *live* tensors: the activations entering the
changed layer plus any skip connection crossing the cut. ``keras.Model(inputs, live)`` is the prefix
and ``keras.Model(live, outputs)`` the suffix; both reuse the original layers (and variables).
Subclassed models have no graph: the caller falls back to full forwards.
"""
from __future__ import annotations

from typing import Any


def graph_of(model) -> Any | None:
    """The functional graph behind ``model`` (a Functional model or a Sequential's), or None."""
    import keras

    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if graph is None or not hasattr(graph, "_nodes_by_depth") or not getattr(graph, "inputs", None):
        return None
    return graph


def nodes_in_order(graph) -> list:
    """Graph nodes, inputs first (Keras numbers depth from the outputs)."""
    by_depth = graph._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def split(model, changed_ids: set[int]):
    """(prefix Model, suffix Model, live count) or None (nothing to skip, or no graph)."""
    import keras

    graph = graph_of(model)
    if graph is None:
        return None
    dep_tensors: set[int] = set()
    live: list = []
    live_ids: set[int] = set()
    dependent_nodes = []
    for node in nodes_in_order(graph):
        op = node.operation
        own = any(id(v) in changed_ids for v in getattr(op, "weights", []))
        ins = list(node.input_tensors)
        if own or any(id(t) in dep_tensors for t in ins):
            dependent_nodes.append(node)
            dep_tensors.update(id(t) for t in node.output_tensors)
    if not dependent_nodes:
        return None
    for node in dependent_nodes:
        for t in node.input_tensors:
            if id(t) not in dep_tensors and id(t) not in live_ids:
                live.append(t)
                live_ids.add(id(t))
    for t in graph.outputs:
        if id(t) not in dep_tensors and id(t) not in live_ids:
            live.append(t)
            live_ids.add(id(t))
    input_ids = {id(t) for t in graph.inputs}
    if all(id(t) in input_ids for t in live):  # the prefix would compute nothing
        return None
    # the model's own input and output structures (a dict of named inputs, a dict of outputs), so the
    # prefix takes what the model takes and the suffix returns what the model returns
    prefix = keras.Model(getattr(graph, "_inputs_struct", graph.inputs), live)
    suffix = keras.Model(live, getattr(graph, "_outputs_struct", graph.outputs))
    return prefix, suffix, len(live)


def activation_bytes_per_sample(model) -> int | None:
    """Bytes of every node output for one sample, from the graph's static shapes (None: unknown)."""
    graph = graph_of(model)
    if graph is None:
        return None
    total = 0
    for node in nodes_in_order(graph):
        for t in node.output_tensors:
            size = 1
            for d in tuple(t.shape)[1:]:
                size *= int(d or 1)
            total += 4 * size
    return total
