"""Helpers shared by the unit tests: small OCI layouts written with the standard library."""
