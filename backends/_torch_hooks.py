"""A prefix cut that needs no ``torch.fx`` trace: module hooks and cached module outputs.

For models fx cannot trace, the layer-wise step still saves the work before the changed layer. One
probe forward records every module call in execution order (``CallOrder``: start and end of each
call, calls of one module numbered in order). For a set of changed parameters, the *first changed
call* is the earliest call of the innermost modules holding one of them that ran; the calls that finished before it started
and are not nested in another such call (*maximal* calls) computed nothing that depends on the changed
weights, unless a module reads parameters it does not own, which the backend's check catches. They
form the cut (``HookCut``):

* prefix, once per batch: the model runs with its original weights, the outputs of those calls are
  captured by forward hooks, and a pre-hook on the first changed module stops the forward there;
* suffix, per candidate: the model runs in full, but each of those modules returns its captured
  output for that call (keyed by module and call number, so a module called again later runs
  normally then) instead of computing it. Modules enclosing the changed one always run; so does the
  code of their forwards between module calls (masks, reshapes, residual additions), which is cheap.

Captured outputs are cloned for each candidate (a forward may write into a module's output in place).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class _Stop(BaseException):
    """Ends the capture forward at the first changed module (not an Exception: a model's own
    ``except Exception`` must not swallow it)."""


@dataclass(frozen=True)
class Call:
    """One module call of a forward: the module's name, its call number, when it started and ended."""

    name: str
    index: int
    start: int
    end: int


def call_order(model, args: tuple, kwargs: dict) -> list[Call]:
    """Every module call of ``model(*args, **kwargs)`` below the top level, in the order they start."""
    clock = [0]
    counts: dict[str, int] = {}
    open_calls: dict[str, list] = {}
    calls: list[Call] = []
    handles = []

    def pre(name):
        def hook(_m, _a):
            counts[name] = counts.get(name, 0) + 1
            open_calls.setdefault(name, []).append((counts[name] - 1, clock[0]))
            clock[0] += 1
        return hook

    def post(name):
        def hook(_m, _a, _out):
            index, start = open_calls[name].pop()
            calls.append(Call(name, index, start, clock[0]))
            clock[0] += 1
        return hook

    for name, m in model.named_modules():
        if name:
            handles += [m.register_forward_pre_hook(pre(name)), m.register_forward_hook(post(name))]
    try:
        model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return sorted(calls, key=lambda c: c.start)


class HookCut:
    """The cut for one set of changed parameters: which calls to capture, where to stop."""

    def __init__(self, model, calls: list[Call], changed_ids: set[int]):
        modules = dict(model.named_modules())
        reads = {name for name, m in modules.items() if any(id(p) in changed_ids for p in m.parameters())}
        # the innermost modules holding a changed parameter that ran (a module may read a child's weight
        # without calling the child: MultiheadAttention and its out_proj)
        ran = {c.name for c in calls if c.name in reads}
        inner = {n for n in ran if not any(o.startswith(n + ".") for o in ran)}
        first = next((c for c in calls if c.name in inner), None)
        if first is None:
            raise ValueError("no module holding the changed parameters ran in the probe forward")
        self.first = first
        skipped: list[Call] = []
        for c in calls:
            if c.end >= first.start:
                continue
            if skipped and c.start < skipped[-1].end:  # nested in a call already cut away
                continue
            if c.name not in reads:
                skipped.append(c)
        self.skipped = skipped
        self.keys = {(c.name, c.index) for c in skipped}
        self.modules = {c.name: modules[c.name] for c in skipped}
        self.stop_at = modules[first.name]
        self.model = model

    def __bool__(self) -> bool:
        return bool(self.skipped)

    def capture(self, args: tuple, kwargs: dict) -> dict:
        """Outputs of the cut-away calls on these inputs, with the original weights: {(module name,
        call number): output}."""
        live: dict = {}
        handles = []

        def post(name):
            count = [0]

            def hook(_m, _a, out):
                if (name, count[0]) in self.keys:
                    live[(name, count[0])] = out
                count[0] += 1
            return hook

        def stop(_m, _a):
            raise _Stop

        for name, m in self.modules.items():
            handles.append(m.register_forward_hook(post(name)))
        handles.append(self.stop_at.register_forward_pre_hook(stop))
        try:
            self.model(*args, **kwargs)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return live

    def replaying(self, live: dict):
        """Context in which the cut-away modules return their captured outputs (per call number)."""
        return _Replay(self.modules, live)


class _Replay:
    def __init__(self, modules: dict, live: dict):
        self.modules, self.live = modules, live
        self.saved: list = []

    def __enter__(self):
        for name, m in self.modules.items():
            had = "forward" in m.__dict__
            self.saved.append((m, had, m.__dict__.get("forward")))
            m.forward = _replayer(name, m.forward, self.live)
        return self

    def __exit__(self, *exc):
        for m, had, fwd in self.saved:
            if had:
                m.forward = fwd
            else:
                del m.forward
        self.saved = []
        return False


def _replayer(name: str, forward, live: dict):
    count = [0]

    def replay(*args: Any, **kwargs: Any):
        index = count[0]
        count[0] += 1
        out = live.get((name, index))
        if out is None:
            return forward(*args, **kwargs)
        return torch.utils._pytree.tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, out)

    return replay


def live_nbytes(live: dict) -> int:
    return sum(t.numel() * t.element_size() for t in torch.utils._pytree.tree_leaves(live)
               if isinstance(t, torch.Tensor))
