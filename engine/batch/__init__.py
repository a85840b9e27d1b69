"""Batch generation: a spec of requests made into a folder of PNGs plus `manifest.jsonl`.

`spec` expands JSONL files and TOML/YAML grids into items with stable keys, `manifest` records
what finished (resumable, crash-safe), `writer` saves an image and its row, `local` runs a batch
as one job on the in-process engine, `ray_runner` (the only module that imports Ray, and only
when asked for) spreads it over a Ray cluster. Nothing here imports torch at module level.
"""
