"""The plugin contract kit: pytest suites every plugin of a role must pass.

Shipped plugins run them and so do third-party authors: subclass the suite in a test
module and provide the fixture it asks for (see each suite's docstring).
"""

import pytest

# Plain asserts in the suites should explain themselves the way they do in a test module.
pytest.register_assert_rewrite(f"{__name__}.backend", f"{__name__}.store", f"{__name__}.translator")

from .backend import BackendContract  # noqa: E402
from .store import StoreContract  # noqa: E402
from .translator import TranslatorContract  # noqa: E402

__all__ = ["BackendContract", "StoreContract", "TranslatorContract"]
