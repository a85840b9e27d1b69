"""Easel's native model families: GANs, VAEs and diffusion written in plain torch.

Each family is one self-contained module that reads top to bottom (`build`, `generate`,
`DEFAULTS`); `registry` maps family names to modules, loads model folders and runs a
`GenerationRequest` on them. Training code lives apart, in `engine.training`.
"""
