# Stub of the compiled per-side loop (okx/_bookaccel.c), which mypy cannot read. The signature is
# okx.book_sides.SideLoop's, with the C function's own leniency: `levels` is any sequence
# (PySequence_Fast), `negate` anything truthy; lv and kf must be exact dicts, keys and pxs exact
# lists (TypeError otherwise). Keep it in step with apply_side's PyDoc_STRVAR in the C file.
from collections.abc import Sequence

from okx.records import Level

def apply_side(
    levels: Sequence[Level],
    lv: dict[str, Level],
    kf: dict[str, float],
    keys: list[float],
    pxs: list[str],
    negate: object,
    cap: int,
    kf_cap: int,
    /,
) -> None: ...
