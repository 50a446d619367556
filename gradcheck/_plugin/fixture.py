"""Surface: the ``gradcheck`` pytest fixture, the check and assert helpers seeded per test.

Each test gets its own seed, derived from the session seed (``--gradcheck-seed``) and the
test's node id, so a test draws the same numbers whichever other tests run, in any order, on
any xdist worker; a failing test is replayed by rerunning it with the session seed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from gradcheck._check.result import CheckResult


def seed_for_test(session_seed: int, nodeid: str) -> int:
    """A 32-bit seed for one test: crc32 of its node id, started from the session seed.

    crc32 rather than ``hash()``, which Python salts per process (and per xdist worker).
    """
    return zlib.crc32(nodeid.encode("utf-8", "surrogatepass"), session_seed & 0xFFFFFFFF)


class GradcheckFixture:
    """What the ``gradcheck`` fixture gives a test.

    Attributes:
        seed: this test's seed; ``check`` uses it unless given ``seed=``.
        session_seed: the session's seed; ``pytest --gradcheck-seed=<it>`` replays the test.
        nodeid: the test's pytest node id.
    """

    def __init__(self, *, session_seed: int, nodeid: str) -> None:
        self.session_seed = session_seed
        self.nodeid = nodeid
        self.seed = seed_for_test(session_seed, nodeid)
        self._rng: np.random.Generator | None = None

    @property
    def rng(self) -> np.random.Generator:
        """A NumPy Generator seeded with :attr:`seed`, the same one for the whole test."""
        if self._rng is None:
            import numpy as np

            self._rng = np.random.default_rng(self.seed)
        return self._rng

    def check(
        self, f: Callable[..., Any], inputs: Any, grad: Any = None, **options: Any
    ) -> CheckResult:
        """:func:`gradcheck.check` with this test's seed; returns the result, never fails."""
        from gradcheck._check.check import check

        options.setdefault("seed", self.seed)
        return check(f, inputs, grad, **options)

    def assert_gradients_close(
        self, f: Callable[..., Any], inputs: Any, grad: Any = None, **options: Any
    ) -> CheckResult:
        """:func:`gradcheck.assert_gradients_close` with this test's seed; on failure the
        message is the worst-element table and the command that replays the test."""
        __tracebackhide__ = True
        from gradcheck._check.check import assert_gradients_close

        options.setdefault("seed", self.seed)
        try:
            return assert_gradients_close(f, inputs, grad, **options)
        except AssertionError as failure:
            replay = (
                f"replay: pytest --gradcheck-seed={self.session_seed} '{self.nodeid}' "
                f"(this test's seed is {self.seed})"
            )
            raise AssertionError(f"{failure}\n{replay}") from None

    def __repr__(self) -> str:
        return f"<gradcheck fixture seed={self.seed} session_seed={self.session_seed}>"
