"""regtui: the terminal UI of regd, a Textual app that talks to the daemon only through ``regd.client``.

Run it with ``regtui`` (see ``regtui --help`` for the keys); embed it with ``RegTUI(AsyncClient(...))``.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Start regtui (a thin shim so ``import regtui`` stays free of Textual)."""
    from regtui.app import main as _main

    return _main(argv)
