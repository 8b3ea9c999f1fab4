"""Developer tools that drive the app like the tests do: screenshots, page timings."""
