"""Bringing the platform up and down on one machine: services, Ray, Serve."""
