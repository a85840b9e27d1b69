"""Stable Diffusion-class models (SD 1.x, 2.x, SDXL) through diffusers.

- `loading`: diffusers folders and single files into a cached base pipeline
- `samplers`: A1111 sampler names to diffusers schedulers
- `prompts`: A1111 prompt weighting and long prompts into prompt embeddings
- `lora`: LoRA files applied per job and removed afterwards
- `preview`: cheap latent-to-RGB previews
- `generate`: the job itself (txt2img, img2img, inpaint)
"""
