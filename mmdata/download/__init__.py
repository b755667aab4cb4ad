"""Downloading web images: the network guard, the guarded HTTP client, robots.txt, checks."""
