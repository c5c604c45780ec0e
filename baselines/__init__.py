"""SAE variants, one file each, registered in `benchmark.registry.VARIANTS` by name.

Files starting with an underscore hold shared building blocks and register nothing.
"""
