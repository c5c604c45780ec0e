"""Tasks, one file each, registered in `benchmark.registry.TASKS` by name.

Files starting with an underscore hold shared helpers and register nothing.
"""
