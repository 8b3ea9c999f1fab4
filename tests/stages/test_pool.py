"""``wsseg.stages.pool``: results in input order, and a worker's bad-input error reaches the caller as
itself (its message intact), not as a broken pool."""

from __future__ import annotations

import pytest

from wsseg.errors import BadInputError
from wsseg.stages.pool import map_in_order


def _square_or_refuse(x: int) -> int:
    if x < 0:
        raise BadInputError(f"value {x}", "is negative; expected a count >= 0")
    return x * x


def test_results_come_back_in_input_order() -> None:
    assert list(map_in_order(_square_or_refuse, [3, 1, 2, 5], workers=2)) == [9, 1, 4, 25]


def test_a_workers_bad_input_error_reaches_the_caller() -> None:
    with pytest.raises(BadInputError) as caught:
        list(map_in_order(_square_or_refuse, [1, -4], workers=2))
    assert caught.value.source == "value -4"
    assert str(caught.value) == "value -4: is negative; expected a count >= 0"
