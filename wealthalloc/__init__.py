"""WealthAlloc: the domain core and its edges (storage, market data, runtime)."""
