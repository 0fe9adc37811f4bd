"""The Lion optimizer and the math around it.

``optim.scaling`` and ``optim.schedules`` are plain Python (no torch), so the
service can use the scaling rule without importing torch; ``Lion`` is loaded on
first access.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optim.lion import Lion

__all__ = ["Lion"]


def __getattr__(name: str):
    if name == "Lion":
        from optim.lion import Lion

        return Lion
    raise AttributeError(f"module 'optim' has no attribute {name!r}")
