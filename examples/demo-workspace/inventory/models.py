"""Items and the inventory that holds them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Item:
    """Something we sell, identified by its SKU."""

    sku: str
    name: str
    price_cents: int


@dataclass
class Inventory:
    """Stock levels per SKU."""

    items: dict[str, Item] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)

    def add(self, item: Item, quantity: int = 1) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.items[item.sku] = item
        self.stock[item.sku] = self.stock.get(item.sku, 0) + quantity

    def remove(self, sku: str, quantity: int = 1) -> int:
        available = self.stock.get(sku, 0)
        if quantity > available:
            raise KeyError(f"only {available} of {sku} in stock")
        self.stock[sku] = available - quantity
        return self.stock[sku]

    def total_value(self) -> int:
        return sum(self.items[sku].price_cents * count for sku, count in self.stock.items())

    def low_stock(self, threshold: int = 3) -> list[str]:
        return sorted(sku for sku, count in self.stock.items() if count < threshold)
