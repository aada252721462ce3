from __future__ import annotations

import pytest

from helpers import make_block
from sendlearn.capture import Block


@pytest.fixture
def block() -> Block:
    return make_block()
