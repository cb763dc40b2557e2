"""Hydra configs of the benchmark, shipped as a package so an installed copy finds them."""
