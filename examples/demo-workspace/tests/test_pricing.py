import pytest
from inventory.pricing import apply_discount, format_price, parse_price


def test_parse_price_with_currency():
    assert parse_price("€12.5") == 1250


def test_parse_price_rejects_words():
    with pytest.raises(ValueError):
        parse_price("twelve")


def test_format_price_negative():
    assert format_price(-1999) == "-€19.99"


def test_apply_discount_half():
    assert apply_discount(1000, 50) == 500
