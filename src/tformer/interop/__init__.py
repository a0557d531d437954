"""Checkpoints in other formats: Hugging Face model folders in and out."""
