"""The one error a command handler raises to refuse a command (its own module: the request
window raises it too, and must not import the dispatcher that imports it)."""

from __future__ import annotations


class CommandError(Exception):
    """The command is understood but refused; the message goes back to the sender."""
