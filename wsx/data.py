"""Scoring data, framework-free: per-sample inputs and labels, their subsets and batches.

What users pass as ``data`` is normalised here once, so every backend indexes it the same way:

* ``inputs``: an array, or a dict / tuple / list of arrays (nested containers too: a JAX pytree), for a
  model taking several inputs (a tokenizer's ``input_ids``, ``attention_mask``, ``token_type_ids``;
  two images). Every array holds one row per sample: the same first dimension N.
* ``labels``: whatever the metric needs, one row per sample: an array of any shape and dtype
  (class indices, regression targets, target embeddings), a dict / tuple of such, or None (label-free
  metrics compare with the uncompressed model's outputs).

Accepted ``data`` forms: ``(inputs, labels)`` (a tuple of two: labels may be None), inputs alone (an
array or a dict of arrays), ``wsx.Data(inputs=..., labels=...)`` (explicit; needed for tuple-shaped
inputs without labels: a tuple of two arrays always reads as ``(inputs, labels)``, so give
``((x1, x2), labels)`` or ``wsx.Data(inputs=(x1, x2))``), or an iterable of batches (a DataLoader, a
``tf.data.Dataset``, a list), each batch in one of the forms above, concatenated in order. Items whose
labels are scalars are single examples and are stacked instead. Arrays may be numpy arrays or any
framework's tensors; they are held as numpy (CPU) arrays, labels as given (no dtype cast).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Iterator

import numpy as np

from .errors import InvalidDataError

FORMS = ("(inputs, labels), inputs alone (an array or a dict of arrays), wsx.Data(inputs=..., labels=...), "
         "or an iterable of such batches")


# -- trees of arrays (dicts, tuples and lists of leaves) ------------------------------------------------
def is_container(x: Any) -> bool:
    return isinstance(x, (Mapping, tuple, list))


def tree_map(fn: Callable, tree: Any, path: str = "") -> Any:
    """``fn(leaf, path)`` over a tree; dicts stay dicts (keys in order), tuples tuples, lists lists."""
    if isinstance(tree, Mapping):
        return {k: tree_map(fn, v, f"{path}[{k!r}]") for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        items = [tree_map(fn, v, f"{path}[{i}]") for i, v in enumerate(tree)]
        return items if isinstance(tree, list) else tuple(items)
    return fn(tree, path)


def tree_leaves(tree: Any, path: str = "") -> list[tuple[str, Any]]:
    """[(path, leaf)] in tree order."""
    out: list = []
    tree_map(lambda leaf, p: out.append((p, leaf)), tree, path)
    return out


def structure(tree: Any) -> Any:
    """The tree's shape without its arrays (to compare the batches of a loader)."""
    return tree_map(lambda leaf, p: None, tree)


def to_numpy(x: Any, where: str = "data") -> np.ndarray:
    """A leaf as a numpy array: numpy, framework tensors on any device (torch, TensorFlow, JAX), lists."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor (grad-requiring, on a GPU, bfloat16)
        t = x.detach().cpu()
        if str(getattr(t, "dtype", "")) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - anything numpy cannot read
        raise InvalidDataError(f"{where} is a {type(x).__name__}, which is not an array ({exc}); pass numpy "
                               "arrays or tensors") from None
    if arr.dtype == object:
        raise InvalidDataError(f"{where} is a {type(x).__name__} that is not an array of numbers; pass numpy "
                               "arrays or tensors (dicts / tuples of them for several entries)")
    return arr


def _as_tree(x: Any, where: str) -> Any:
    tree = tree_map(lambda leaf, p: to_numpy(leaf, f"{where}{p}"), x)
    if not tree_leaves(tree):
        raise InvalidDataError(f"{where} hold no array; pass at least one array of samples")
    if "inputs" in where:  # labels may be text (a metric reads them); a model reads numbers
        for path, leaf in tree_leaves(tree, where):
            if leaf.dtype.kind not in "biufc":
                raise InvalidDataError(f"{path} holds {leaf.dtype} values, not numbers: the backend cannot read "
                                       "them; pass the inputs as numeric arrays (e.g. token ids, not text)")
    return tree


def _rows(tree: Any, where: str) -> int:
    """The common first dimension of a tree's arrays, or an error naming the entries that differ."""
    n, first = None, None
    for path, leaf in tree_leaves(tree, where):
        if leaf.ndim == 0:
            raise InvalidDataError(f"{path} is a scalar; every entry needs a first axis of one row per sample")
        if n is None:
            n, first = len(leaf), path
        elif len(leaf) != n:
            raise InvalidDataError(f"{path} has {len(leaf)} samples but {first} has {n}; every entry of "
                                   "the data must hold one row per sample (the same first dimension)")
    return int(n)


class Data:
    """Per-sample scoring data: ``inputs`` and optional ``labels`` (see the module docstring).

    ``wsx.Data(inputs=..., labels=...)`` is the explicit form of ``data``; wsx normalises every other
    form to it. Arrays are held as numpy arrays; ``take`` and ``batches`` index every entry alike.
    """

    __slots__ = ("inputs", "labels", "num_samples")

    def __init__(self, inputs: Any, labels: Any = None):
        if isinstance(inputs, Data):
            raise InvalidDataError("wsx.Data(inputs=...) got a wsx.Data; pass its arrays")
        self.inputs = _as_tree(inputs, "inputs")
        self.labels = None if labels is None else _as_tree(labels, "labels")
        n = _rows(self.inputs, "inputs")
        if self.labels is not None:
            m = _rows(self.labels, "labels")
            if m != n:
                raise InvalidDataError(f"inputs have {n} samples but labels have {m}; pass one label per "
                                       "input sample")
        if n == 0:
            raise InvalidDataError("the scoring data is empty; pass at least one sample")
        self.num_samples = n

    @classmethod
    def _trusted(cls, inputs: Any, labels: Any, n: int) -> "Data":
        """A Data from arrays already checked (subsets and batches of a checked Data)."""
        d = object.__new__(cls)
        d.inputs, d.labels, d.num_samples = inputs, labels, n
        return d

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        def desc(tree):
            return tree_map(lambda a, p: f"{a.dtype}{list(a.shape)}", tree)

        return f"wsx.Data(inputs={desc(self.inputs)}, labels={None if self.labels is None else desc(self.labels)})"

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def take(self, idx: Any) -> "Data":
        """The samples at ``idx`` (indices or a slice), every entry indexed alike."""
        def pick(a, p):
            return a[idx]

        inputs = tree_map(pick, self.inputs)
        labels = None if self.labels is None else tree_map(pick, self.labels)
        return Data._trusted(inputs, labels, len(tree_leaves(inputs)[0][1]))

    def batches(self, idx: np.ndarray | None, batch_size: int,
                first: int | None = None) -> Iterator[tuple[np.ndarray, "Data"]]:
        """(sample indices, Data) per batch of at most ``batch_size`` samples of ``idx`` (all if None);
        ``first``, where smaller, is the first batch's size (early rejection's first look)."""
        idx = np.arange(self.num_samples) if idx is None else np.asarray(idx)
        size = max(int(batch_size), 1)
        head = int(first) if first is not None and 0 < int(first) < size else size
        starts = [0, *range(head, idx.size, size)] if idx.size else []
        for start, stop in zip(starts, [*starts[1:], idx.size]):
            sel = idx[start:stop]
            yield sel, self.take(sel)

    def map_inputs(self, fn: Callable[[np.ndarray, str], np.ndarray]) -> "Data":
        """A Data whose input arrays are ``fn(array, path)`` (e.g. a dtype cast); labels are shared."""
        return Data._trusted(tree_map(fn, self.inputs, "inputs"), self.labels, self.num_samples)

    def input_bytes_per_sample(self) -> int:
        return int(sum(a[:1].nbytes for _, a in tree_leaves(self.inputs)))


# -- what users pass -------------------------------------------------------------------------------------
def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (Mapping, type))


def _split_item(item: Any) -> tuple[Any, Any]:
    """(inputs, labels) of one batch or example of a loader."""
    if isinstance(item, Data):
        return item.inputs, item.labels
    if isinstance(item, (tuple, list)) and len(item) in (1, 2) and not _is_array(item):
        return item[0], (item[1] if len(item) == 2 else None)
    return item, None


def as_data(data: Any, forms: str = FORMS, empty: str = "the data loader yielded no batches") -> Data:
    """``data`` in any accepted form as one ``Data`` (a loader is read once, into memory)."""
    if isinstance(data, Data):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        return Data(data[0], data[1])
    if isinstance(data, Mapping) or _is_array(data):
        return Data(data)
    if isinstance(data, (str, bytes)) or data is None:
        raise InvalidDataError(f"data must be {forms}, got {type(data).__name__}")
    try:
        items = list(data)
    except TypeError:
        raise InvalidDataError(f"data must be {forms}, got {type(data).__name__}") from None
    if not items:
        raise InvalidDataError(f"{empty}; pass at least one sample")
    parts = [_split_item(item) for item in items]
    inputs = [_as_tree(x, f"batch {i}: inputs") for i, (x, _) in enumerate(parts)]
    labels = [None if y is None else _as_tree(y, f"batch {i}: labels") for i, (_, y) in enumerate(parts)]
    for i in range(1, len(parts)):
        if structure(inputs[i]) != structure(inputs[0]) or (labels[i] is None) != (labels[0] is None) or \
                (labels[i] is not None and structure(labels[i]) != structure(labels[0])):
            raise InvalidDataError(f"batch {i} of the data holds other entries than batch 0 "
                                   f"({_describe(parts[i])} against {_describe(parts[0])}); every batch must "
                                   "have the same inputs and labels")
    # single examples (scalar labels, e.g. an unbatched tf.data.Dataset) are stacked, batches concatenated
    single = labels[0] is not None and all(a.ndim == 0 for _, a in tree_leaves(labels[0]))
    join = np.stack if single else np.concatenate
    return Data(_join(inputs, join, "inputs"), None if labels[0] is None else _join(labels, join, "labels"))


def _join(trees: list, join: Callable, where: str) -> Any:
    flat = [tree_leaves(t) for t in trees]

    def leaf(_, path):
        pos = next(i for i, (p, _) in enumerate(flat[0]) if p == path)
        try:
            return join([f[pos][1] for f in flat])
        except ValueError as exc:
            raise InvalidDataError(f"the batches' {where}{path} cannot be joined ({exc}); every batch must hold "
                                   "arrays of one shape past the first axis") from None

    return tree_map(leaf, trees[0])


def _describe(part: tuple) -> str:
    x, y = part
    keys = list(x) if isinstance(x, Mapping) else type(x).__name__
    return f"inputs {keys}, labels {'none' if y is None else 'given'}"
