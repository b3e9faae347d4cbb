"""Stand-ins for external systems that speak their real protocols, for integration tests."""
