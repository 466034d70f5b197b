"""Prices are kept in integer cents to avoid floating-point drift."""

from __future__ import annotations

import re

_PRICE = re.compile(r"^\s*(?P<currency>[$€£])?\s*(?P<units>\d+)(?:[.,](?P<cents>\d{1,2}))?\s*$")


def parse_price(text: str) -> int:
    match = _PRICE.match(text)
    if match is None:
        raise ValueError(f"not a price: {text!r}")
    cents = (match.group("cents") or "0").ljust(2, "0")
    return int(match.group("units")) * 100 + int(cents)


def format_price(cents: int, currency: str = "€") -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{currency}{cents // 100}.{cents % 100:02d}"


def apply_discount(cents: int, percent: float) -> int:
    if not 0 <= percent <= 100:
        raise ValueError("percent must be between 0 and 100")
    return round(cents * (100 - percent) / 100)
