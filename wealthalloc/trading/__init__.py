"""An order's home, from the request to the lot.

- :mod:`~wealthalloc.trading.rules`: the request rules (validation, price protection, reservations,
  affordability) and :func:`~wealthalloc.trading.rules.apply_fill`, everything a fill decides.
- :mod:`~wealthalloc.trading.status`: the order's states; the open ones are defined once.
- :mod:`~wealthalloc.trading.tickets`: the order as a broker sees it, and its fills and status changes.
- :mod:`~wealthalloc.trading.proposed`: the order a plan proposes (a rebalance, a recommendation).
- :mod:`~wealthalloc.trading.desk`: the shard's desk, read → decide → write under the user's lock.

The first four are pure (no Ray, no database); the desk is the one part that touches storage.
docs/order-path.md walks an order through them.
"""
