"""torch nested tensors with the jagged layout (verl's v1 trainer holds responses so) as trmask's
packed layout: the values buffer and the offsets go to the kernels as they are (no padding, no
copy), and the outputs come back as nested tensors over the same offsets."""

from __future__ import annotations

import sys
from typing import Any, Optional

from ... import TrmaskError


def _is_nested(x: Any) -> bool:
    return getattr(x, "is_nested", False) is True


class Jagged:
    """The packed view of nested arguments that share one ragged structure."""

    __slots__ = ("offsets", "lengths")

    def __init__(self, offsets, lengths):
        self.offsets, self.lengths = offsets, lengths

    def wrap(self, values):
        """A 1-D packed output as a nested tensor with the inputs' offsets (and lengths)."""
        torch = sys.modules["torch"]
        return torch.nested.nested_tensor_from_jagged(values, self.offsets, lengths=self.lengths)


def unpack(named: dict) -> tuple:
    """``(arrays, jagged)``: the arguments as they are and None when none is nested; else each
    nested argument's values buffer and a `Jagged` describing their common rows. Mixing nested and
    dense arguments, another nested layout, or different ragged structures is refused."""
    nested = {name: x for name, x in named.items() if _is_nested(x)}
    if not nested:
        return named, None
    dense = [name for name, x in named.items() if x is not None and name not in nested]
    if dense:
        raise TrmaskError(f"{', '.join(f'`{n}`' for n in nested)} are nested tensors but "
                          f"{', '.join(f'`{n}`' for n in dense)} are not: pass all of them nested (jagged) or all dense")
    torch = sys.modules["torch"]
    first_name, first = next(iter(nested.items()))
    for name, x in nested.items():
        if x.layout != torch.jagged:
            raise TrmaskError(f"`{name}` is a nested tensor with layout {x.layout}; expected torch.jagged "
                              f"(torch.nested.nested_tensor(..., layout=torch.jagged))")
        if x.dim() != 2 or x._ragged_idx != 1:
            raise TrmaskError(f"`{name}` has shape {tuple(x.shape)}; expected [rows, ragged tokens]")
    offsets, lengths = first.offsets(), first.lengths()
    for name, x in nested.items():
        if x is first:
            continue
        same = x.offsets() is offsets or (x.offsets().shape == offsets.shape and bool(torch.equal(x.offsets(), offsets)))
        their = x.lengths()
        same = same and (their is lengths or (their is not None and lengths is not None
                                              and bool(torch.equal(their, lengths))))
        if not same:
            raise TrmaskError(f"`{name}` and `{first_name}` are nested tensors with different rows (offsets or lengths)")
    arrays = {name: (x.values() if name in nested else x) for name, x in named.items()}
    return arrays, Jagged(offsets, lengths)


def wrap(jagged: Optional[Jagged], array):
    return array if jagged is None or array is None else jagged.wrap(array)
