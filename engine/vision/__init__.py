"""Image to text: captions with local image-to-text models, CLIP interrogation. Worker-only."""
