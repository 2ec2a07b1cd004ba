"""The layer-wise search: per layer, the knob values worth combining, found in O(log) scorings.

Not a plugin module (no entry point): divide-and-conquer imports it.

A layer's knob values come most compressive first, grouped by the approximation's ``group_key``
(weight sharing: the index bit-width ceil(log2 k)); within a group the size differs only by the
codebook. Where the loss is monotone in the knob (more shared values, less loss), the group whose
top (largest) value is the first to meet the target is found by bisection over the groups' tops,
and inside that group the smallest value still meeting it by bisection over its members. The
layer's largest value is taken to meet the target and scored only where the bisection ends on it:
it nearly always meets, and scoring it first cost every layer a scoring on every sample. A guard
catches layers that are not monotone: when the two groups below the one found both had to be
scored and the lower one meets the target, every group top below is scanned instead.

``phi`` (what the combination step chooses from) is then, one value per bit-width as the thesis'
phi: that smallest value and, for every larger bit-width, its top or, where the codebook makes a
difference (``min_saving`` of the layer's size), its smallest value (unscored: a larger bit-width
than one meeting the target). A layer that misses the target even at its largest value keeps that
value and ``UNCOMPRESSED`` (the layer left as it is), so that the combination step can back off
from it (the thesis keeps such a layer's best, and the combination may then have nothing legal).
"""
from __future__ import annotations

from wsx.problem import UNCOMPRESSED


def groups_of(problem, name: str) -> list[list]:
    """The layer's knob values split into groups (in knob order; a group's last value is its top)."""
    out: list[list] = []
    last = object()
    for knob in problem.knob_values[name]:
        key = problem.approximation.group_key(problem.layer(name), knob)
        if not out or key != last:
            out.append([])
            last = key
        out[-1].append(knob)
    return out


def search_scorings(problem, name: str) -> int:
    """Scorings the search usually makes on one layer: a bisection over the group tops (the largest
    value scored only where it ends there), the guard, a bisection inside the group found
    (non-monotone layers may take more), and never more than the layer's knob values (each is scored
    once at most)."""
    groups = groups_of(problem, name)
    widest = max(len(g) for g in groups)
    usual = max((len(groups) - 1).bit_length(), 1) + 1 + (widest - 1).bit_length()
    return min(usual, len(problem.knob_values[name]))


def saving(problem, name: str, small, large) -> float:
    """The share of the layer's size at ``large`` that ``small`` saves."""
    big = problem.layer_size_bits(name, large)
    return (big - problem.layer_size_bits(name, small)) / big if big else 0.0


class LayerSearch:
    """Searches one layer (see the module docstring); ``scored`` holds what it scored by knob.

    ``steps()`` is the search as a generator: it yields the next knob to score and is sent whether
    that knob meets the target, so that ``search_layers`` can advance every layer's search together,
    one population per round (an executor with many workers scores the layers at once)."""

    def __init__(self, problem, name: str, min_saving: float = 0.01):
        self.problem = problem
        self.name = name
        self.min_saving = min_saving
        self.groups = groups_of(problem, name)
        self.scored: dict = {}

    def run(self) -> tuple[list, bool]:
        """This layer's search alone: (phi, relaxed)."""
        return search_layers(self.problem, [self])[self.name]

    def _meets(self, knob):
        if knob not in self.scored:
            yield knob  # the driver records the scored candidate before it resumes the search
        return self.scored[knob].meets_target

    def _first_meeting(self, values: list, lo: int, hi: int):
        """Bisection: the first index in (lo, hi] whose value meets the target, knowing hi does and
        lo does not (lo may be -1: nothing below)."""
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if (yield from self._meets(values[mid])):
                hi = mid
            else:
                lo = mid
        return hi

    def steps(self):
        """The search; its return value is (phi, relaxed): relaxed when even the largest value misses
        the target."""
        tops = [g[-1] for g in self.groups]
        # the largest value is taken to meet the target until the bisection ends on it
        found = yield from self._first_meeting(tops, -1, len(tops) - 1)
        if found == len(tops) - 1 and not (yield from self._meets(tops[-1])):
            return [tops[-1], UNCOMPRESSED], True  # its best alone fails: combined, kept only as a fallback
        below = found - 1  # its top missed the target (scored by the bisection, unless found == 0)
        if below >= 1 and (yield from self._meets(tops[below - 1])):  # not monotone: scan every top below
            for i in range(found):
                if (yield from self._meets(tops[i])):
                    found = i
                    break
        members = self.groups[found]
        smallest = members[-1]
        if len(members) > 1 and saving(self.problem, self.name, members[0], members[-1]) >= self.min_saving:
            smallest = members[(yield from self._first_meeting(members, -1, len(members) - 1))]
        phi = {smallest}
        for group in self.groups[found + 1:]:  # one value per larger bit-width, as the thesis' phi keeps
            codebook_matters = len(group) > 1 and saving(self.problem, self.name, group[0], group[-1]) >= self.min_saving
            phi.add(group[0] if codebook_matters else group[-1])
        order = {k: i for i, k in enumerate(self.problem.knob_values[self.name])}
        return sorted(phi, key=order.__getitem__), False


def search_layers(problem, searches: list[LayerSearch]) -> dict:
    """Runs the layers' searches in lockstep: each round scores every unfinished layer's next knob in
    one population. Returns {layer: (phi, relaxed)}; what was scored stays in each search's ``scored``
    (also when the budget or time stops the run mid-way)."""
    results: dict = {}
    asked: dict = {}
    running = {s.name: (s, s.steps()) for s in searches}

    def advance(name, met=None, first=False):
        gen = running[name][1]
        try:
            asked[name] = next(gen) if first else gen.send(met)
        except StopIteration as done:
            results[name] = done.value
            asked.pop(name, None)

    for name in running:
        advance(name, first=True)
    while asked:
        names = list(asked)
        cands = problem.evaluate([{n: asked[n]} for n in names], origin=[f"layer-wise:{n}" for n in names])
        for name, cand in zip(names, cands):
            running[name][0].scored[asked[name]] = cand
            advance(name, cand.meets_target)
    return results
