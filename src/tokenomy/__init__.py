"""Tokenomy: make the LLM token bill visible, capped and smaller."""

from __future__ import annotations

from .records import UsageRecord
from .usage import Usage

__all__ = ["Usage", "UsageRecord"]
