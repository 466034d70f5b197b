"""A tiny inventory library: items, stock levels and prices."""

from .models import Inventory, Item
from .pricing import apply_discount, format_price, parse_price

__all__ = ["Inventory", "Item", "apply_discount", "format_price", "parse_price"]
