"""What every benchmark's figure shares: matplotlib without a display, and saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def subplots(*args: Any, **kw: Any) -> tuple[Any, Any]:
    """``plt.subplots`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kw)


def save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
