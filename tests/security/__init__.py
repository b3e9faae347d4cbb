"""The hostile review, kept: one test per attack class, each failing before its fix."""
