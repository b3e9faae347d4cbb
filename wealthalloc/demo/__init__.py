"""Demo accounts and a funded book on real prices, so a fresh install has something to show."""

from wealthalloc.demo.seed import SeedError, SeedReport, create_admin, plan_demo_lots, seed_demo

__all__ = ["SeedError", "SeedReport", "create_admin", "plan_demo_lots", "seed_demo"]
