"""Test support: a fake OpenAI/Anthropic upstream and a loopback server helper.

Nothing in the library imports this package; it exists for the test suite and
the benchmark (``python -m tokenomy.testing.fake_upstream``).
"""

from ._fake_app import FakeUpstream, create_app
from ._fake_common import FakeOptions, FakeState, RecordedRequest
from .server import serve_in_thread

__all__ = [
    "FakeOptions",
    "FakeState",
    "FakeUpstream",
    "RecordedRequest",
    "create_app",
    "serve_in_thread",
]
