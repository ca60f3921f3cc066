"""The command palette's view of every action: each binding of the current screen and of the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

# table navigation keys are actions too, but nobody looks for "cursor down" in a palette
_SKIP = {"command_palette", "cursor_up", "cursor_down", "page_up", "page_down", "first", "last",
         "scroll_up", "scroll_down", "scroll_home", "scroll_end"}  # fmt: skip


class ScreenCommands(Provider):
    """``ctrl+p``: the current screen's and the app's actions, by their binding's description."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        seen: set[str] = set()
        out = []
        for key, active in self.screen.active_bindings.items():
            node, binding = active.node, active.binding
            if not isinstance(node, Screen | App) or binding.action in _SKIP or not binding.description:
                continue
            title = binding.description
            if title in seen:
                continue
            seen.add(title)
            run = partial(self.app.run_action, binding.action, node)
            out.append((title, f"{binding.action.replace('_', ' ')} · key {key}", run))
        return out

    async def discover(self) -> Hits:
        for title, help_text, run in self._commands():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        for title, help_text, run in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
