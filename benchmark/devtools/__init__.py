"""Developer tools, apart from the library: speed benchmarks, generation timing, reference-code comparisons."""
