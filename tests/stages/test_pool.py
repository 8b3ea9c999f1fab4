"""``wsseg.stages.pool``: results in input order, a worker's bad-input error reaches the caller as
itself (its message intact), not as a broken pool, and errors the caller catches come back as
``Failed`` results in their task's place."""

from __future__ import annotations

import pytest

from wsseg.errors import BadInputError
from wsseg.stages.pool import Failed, map_in_order

CAUGHT = (BadInputError, MemoryError)


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


def _refuse_negatives_and_run_out_at_zero(x: int) -> int:
    if x == 0:
        raise MemoryError("Unable to allocate 7.2 GiB for an array with shape (200, 6000, 6000)")
    return _square_or_refuse(x)


@pytest.mark.parametrize("workers", [1, 2])
def test_caught_errors_come_back_as_failed_results_and_the_rest_goes_on(workers: int) -> None:
    out = list(map_in_order(_refuse_negatives_and_run_out_at_zero, [3, -4, 0, 5], workers, catch=CAUGHT))
    assert out[0] == 9 and out[3] == 25  # the tasks after the failures still ran, in order
    assert out[1] == Failed("BadInputError", "value -4: is negative; expected a count >= 0")
    assert out[2] == Failed(
        "MemoryError", "out of memory (Unable to allocate 7.2 GiB for an array with shape (200, 6000, 6000))"
    )


def test_an_error_not_caught_still_ends_the_iteration() -> None:
    with pytest.raises(BadInputError, match="value -1"):
        list(map_in_order(_square_or_refuse, [1, -1, 2], workers=1, catch=(MemoryError,)))
