"""Cut a traced JAX function around some of its parameter leaves (for the prefix cache).

``jax.make_jaxpr`` turns ``f(*leaves, x)`` into a list of equations (its invars: the leaves, then
the leaves of the input pytree ``x``). An equation *depends* on the
changed leaves if it reads one of them or a value computed by a dependent equation. The others form
the prefix; the values they produce that dependent equations (or the outputs) read are the *live*
values. The prefix jaxpr returns them; the suffix jaxpr takes ``(*leaves, *x_leaves, *live)``. Both are run
with ``jax.extend.core.jaxpr_as_fun``, so they compile and vmap like any JAX function.
"""
from __future__ import annotations

from typing import Any, Sequence


def cut(closed, changed: Sequence[int], n_leaves: int):
    """(prefix fn, suffix fn, live count) for the leaf positions ``changed`` (the first ``n_leaves``
    invars are the parameter leaves, the rest the input batch's leaves), or None when the prefix
    would not touch the inputs or the jaxpr has effects."""
    import jax.extend.core as jc

    jaxpr = closed.jaxpr
    if jaxpr.effects:
        return None
    depends = {jaxpr.invars[i] for i in changed}
    on_input = set(jaxpr.invars[n_leaves:])  # values computed from the inputs x
    before, after = [], []
    for eqn in jaxpr.eqns:
        reads = [v for v in eqn.invars if isinstance(v, jc.Var)]
        if any(v in on_input for v in reads):
            on_input.update(eqn.outvars)
        if any(v in depends for v in reads):
            after.append(eqn)
            depends.update(eqn.outvars)
        else:
            before.append(eqn)
    if not after or not before:
        return None
    produced = {v for eqn in before for v in eqn.outvars}
    live: list = []
    for v in [v for eqn in after for v in eqn.invars] + list(jaxpr.outvars):
        if isinstance(v, jc.Var) and v in produced and v not in live:
            live.append(v)
    if not any(v in on_input for v in live):  # the prefix would not touch the inputs: nothing to save
        return None
    def info(part: str, invars, outvars):
        return jc.DebugInfo("wsx prefix cache", part, tuple(f"in{i}" for i in range(len(invars))),
                            tuple(f"out{i}" for i in range(len(outvars))))

    suffix_in = list(jaxpr.invars) + live
    prefix = jc.Jaxpr(jaxpr.constvars, jaxpr.invars, live, before,
                      debug_info=info("prefix", jaxpr.invars, live))
    suffix = jc.Jaxpr(jaxpr.constvars, suffix_in, jaxpr.outvars, after,
                      debug_info=info("suffix", suffix_in, jaxpr.outvars))
    return (jc.jaxpr_as_fun(jc.ClosedJaxpr(prefix, closed.consts)),
            jc.jaxpr_as_fun(jc.ClosedJaxpr(suffix, closed.consts)), len(live))


KINDS = {"dot_general": "Dense", "gather": "Embedding", "dynamic_slice": "Embedding"}
PASS_THROUGH = ("convert_element_type", "reshape", "transpose", "copy", "copy_p")


def first_use(closed, n_leaves: int) -> tuple[list[int], list[str]]:
    """Leaf positions ordered by the first equation reading them, and each leaf's consumer kind."""
    import jax.extend.core as jc

    jaxpr = closed.jaxpr
    pos = {v: i for i, v in enumerate(jaxpr.invars[:n_leaves])}
    first: dict[int, int] = {}
    kind = ["Array"] * n_leaves
    for step, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if isinstance(v, jc.Var) and v in pos:
                first.setdefault(pos[v], step)
    for v, i in pos.items():
        kind[i] = _consumer_kind(jaxpr, v)
    order = sorted(range(n_leaves), key=lambda i: (first.get(i, len(jaxpr.eqns)), i))
    return order, kind


def _consumer_kind(jaxpr, var, depth: int = 0) -> str:
    """What first consumes ``var`` ("Conv", "Dense", "Embedding"), through casts, reshapes and the
    nested jaxprs of ``jit`` / ``pjit`` calls (``jnp.take`` is one)."""
    import jax.extend.core as jc

    follow = {var}
    for eqn in jaxpr.eqns:
        reads = [k for k, v in enumerate(eqn.invars) if isinstance(v, jc.Var) and v in follow]
        if not reads:
            continue
        name = eqn.primitive.name
        if name.startswith("conv"):
            return "Conv"
        if name in KINDS:
            return KINDS[name]
        if name in PASS_THROUGH:
            follow.update(eqn.outvars)
            continue
        inner = eqn.params.get("jaxpr")
        inner = getattr(inner, "jaxpr", inner)
        if depth < 4 and inner is not None and hasattr(inner, "invars") and len(inner.invars) == len(eqn.invars):
            return _consumer_kind(inner, inner.invars[reads[0]], depth + 1)
        return "Array"
    return "Array"


def activation_bytes(closed) -> int:
    """Bytes of every value the jaxpr computes."""
    total = 0
    for eqn in closed.jaxpr.eqns:
        for v in eqn.outvars:
            aval: Any = getattr(v, "aval", None)
            if aval is not None and hasattr(aval, "shape") and hasattr(aval, "dtype"):
                size = 1
                for d in aval.shape:
                    size *= int(d)
                total += size * aval.dtype.itemsize
    return total
