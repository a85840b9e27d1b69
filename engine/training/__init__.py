"""Training Easel's native families on a folder of pictures (apart from inference code).

`runner.run_training` is the one generic loop (data, progress, samples, cancel, resume, export);
each family brings a Trainer (see `base.Trainer` and docs/notes/native-models.md).
"""
