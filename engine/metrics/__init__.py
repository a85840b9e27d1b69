"""Judging images: FID/KID with the FID Inception network, CLIP score. Loaded in the worker."""
