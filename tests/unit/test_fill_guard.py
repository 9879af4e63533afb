"""Which fills may change a position (state/fill_guard.py), without threads."""

from __future__ import annotations

from decimal import Decimal

import pytest

from state.fill_guard import fill_problem

D = Decimal


def problem(price, quantity=D("0.01"), fee=D("0.2"), reference=D("42000"), ordered=D("0.01")):
    return fill_problem(reference_price=reference, ordered_quantity=ordered, fill_price=price,
                        fill_quantity=quantity, fee=fee)


def test_a_sane_fill_passes():
    assert problem(D("42010.5")) is None


@pytest.mark.parametrize("price", [D("0"), D("0.00"), D("-1"), D("NaN"), D("Infinity"), None, 42000.0, "42000"])
def test_a_price_that_is_not_a_positive_finite_decimal_is_refused(price):
    assert "fill price" in problem(price)


@pytest.mark.parametrize("price", [D("20999"), D("63001"), D("1e12")])
def test_a_price_far_from_the_reference_is_refused(price):
    assert "away from the order's reference price" in problem(price)


@pytest.mark.parametrize("quantity", [D("0"), D("-0.01"), D("NaN"), None])
def test_a_quantity_that_is_not_positive_is_refused(quantity):
    assert "fill quantity" in problem(D("42000"), quantity=quantity)


def test_a_quantity_above_the_ordered_one_is_refused():
    assert "above the ordered" in problem(D("42000"), quantity=D("0.02"))


@pytest.mark.parametrize("fee", [D("NaN"), D("1000"), "x"])
def test_an_absurd_fee_is_refused(fee):
    assert "fee" in problem(D("42000"), fee=fee)


def test_no_fee_is_a_zero_fee():
    assert problem(D("42000"), fee=None) is None
