"""Seeing inside the models: attention maps, the attention page, positional encodings, contextual embeddings."""
