"""Progress bars that the environment may silence: one home for every long loop's bar.

    for batch in progress_bar(batches, enabled=show, desc="mining"): ...

``enabled=False`` always hides the bar. Otherwise tqdm's own environment defaults apply,
so ``TQDM_DISABLE=1`` in the environment a process starts with hides it too: the book
build sets it for the chapters' kernels, because a notebook's progress widget is blank
on a static page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **options: Any) -> tqdm:
    """A ``tqdm.auto`` bar, hidden when not ``enabled`` or when the environment says so.

        bar = progress_bar(total=2000, enabled=True, desc="mining", unit="img")
    """
    if not enabled:
        options["disable"] = True
    return tqdm(iterable, **options)
