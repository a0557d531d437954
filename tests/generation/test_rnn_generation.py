"""tformer.generate on RNNSearch: its RecurrentCache (the decoder state) against re-running the decoder from
scratch, beam search / N-best against greedy and a step-by-step re-scoring, source padding, and the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import tformer
from tformer import ModelConfig, Tokenizer
from tformer.cli import main
from tformer.generation.beam import beam_search
from tformer.generation.state import DecoderState
from tformer.models.rnn import RNNSearch

CELLS = ["gru", "lstm"]
EOS = 2
NEW_TOKENS = 8
TEACH_STEPS = 60
TRANSLATOR_STEPS = 150


def _pairs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four sources (the last two right-padded) and targets of random ids that vary along the row."""
    generator = torch.Generator().manual_seed(3)
    sources = torch.randint(3, 99, (4, 6), generator=generator)
    mask = torch.ones_like(sources)
    mask[2, 4:] = 0
    mask[3, 2:] = 0
    targets = torch.randint(3, 99, (4, 7), generator=generator)
    targets[:, -1] = EOS
    targets[1, 4:] = torch.tensor([EOS, -100, -100])  # a shorter target: its end comes earlier
    return sources.masked_fill(mask == 0, 0), mask, targets


def _teach(rnn: RNNSearch, sources: torch.Tensor, mask: torch.Tensor | None, targets: torch.Tensor,
           steps: int) -> RNNSearch:
    """`steps` Adam steps of teacher forcing on the pairs, on one thread: the step of a model this small is a
    few milliseconds, and a second thread on a busy machine made it 40 times slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        optimizer = torch.optim.Adam(rnn.parameters(), lr=1e-2)
        for _ in range(steps):
            optimizer.zero_grad()
            rnn(sources, attention_mask=mask, labels=targets).loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return rnn.eval()


@pytest.fixture(scope="module", params=CELLS)
def model(request: pytest.FixtureRequest) -> RNNSearch:
    """A tiny RNNSearch taught the four pairs for a few Adam steps: a random one writes one token over and over,
    which would let a test compare less than it claims."""
    torch.manual_seed(0)
    rnn = tformer.build_model(ModelConfig.preset("rnnsearch-tiny", cell=request.param))
    return _teach(rnn, *_pairs(), steps=TEACH_STEPS)


def _generate(model: RNNSearch, rows: slice = slice(0, 4), **kwargs: object) -> tformer.generation.GenerateOutput:
    sources, mask, _ = _pairs()
    kwargs = {"max_new_tokens": NEW_TOKENS, "return_scores": True, **kwargs}
    return tformer.generate(model, sources[rows], attention_mask=mask[rows], **kwargs)


def _log_probs_from_scratch(model: RNNSearch, source: torch.Tensor, mask: torch.Tensor,
                            decoded: torch.Tensor) -> torch.Tensor:
    """log p of every token of `decoded` (rows, length) after the first, one teacher-forced pass, no cache."""
    with torch.no_grad():
        logits = model(source, attention_mask=mask, decoder_input_ids=decoded[:, :-1]).logits
    return logits.log_softmax(-1).gather(2, decoded[:, 1:, None]).squeeze(2)


def test_the_taught_model_writes_varied_tokens(model: RNNSearch) -> None:
    sequences = _generate(model, eos_token_id=[]).sequences
    assert all(row[1:].unique().numel() >= 3 for row in sequences), sequences


def test_cached_greedy_equals_an_argmax_loop_that_reruns_the_decoder_from_scratch(model: RNNSearch) -> None:
    sources, mask, _ = _pairs()
    out = _generate(model, eos_token_id=[])
    decoded = torch.full((4, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            logits = model(sources, attention_mask=mask, decoder_input_ids=decoded).logits[:, -1]
            decoded = torch.cat([decoded, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out.sequences, decoded)
    torch.testing.assert_close(out.scores, _log_probs_from_scratch(model, sources, mask, decoded), atol=1e-5, rtol=0)


def test_the_cache_carries_the_state_one_step_at_a_time(model: RNNSearch) -> None:
    """Feeding 2 tokens, then 1 at a time with a RecurrentCache gives the logits of one pass over all of them."""
    sources, mask, targets = _pairs()
    decoded = torch.cat([torch.ones(4, 1, dtype=torch.long), targets[:, :5].clamp(min=0)], dim=1)
    with torch.no_grad():
        full = model(sources, attention_mask=mask, decoder_input_ids=decoded).logits
        encoded = model.encode(sources, mask)
        cache = model.new_cache()
        pieces, start = [], 0
        for end in (2, 3, 4, 5, 6):
            step = model(attention_mask=mask, decoder_input_ids=decoded[:, start:end], encoder_outputs=encoded,
                         cache=cache, cache_position=torch.arange(start, end))
            pieces.append(step.logits)
            start = end
    assert cache.length == 6
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("search", [
    dict(), dict(do_sample=True, seed=7, top_k=20), dict(num_beams=3, num_return_sequences=3),
], ids=["greedy", "sampling", "beam3"])
def test_use_cache_false_gives_the_same_sequences_and_scores(model: RNNSearch, search: dict) -> None:
    cached = _generate(model, eos_token_id=EOS, **search)
    uncached = _generate(model, eos_token_id=EOS, use_cache=False, **search)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(cached.scores, uncached.scores, atol=1e-5, rtol=0)


def test_beam_search_with_one_beam_returns_greedy_and_its_mean_log_prob(model: RNNSearch) -> None:
    sources, mask, _ = _pairs()
    greedy = _generate(model, eos_token_id=[])
    state = DecoderState(model, sources, mask, copies=1, use_cache=True)
    sequences, scores = beam_search(state, batch_size=4, num_beams=1, max_new_tokens=NEW_TOKENS,
                                    eos=torch.tensor([], dtype=torch.long), fill=0, length_penalty=1.0,
                                    early_stopping=False, num_return_sequences=1)
    assert torch.equal(sequences, greedy.sequences)
    torch.testing.assert_close(scores, greedy.scores.mean(dim=1), atol=1e-5, rtol=0)


def _rescored_step_by_step(model: RNNSearch, source: torch.Tensor, mask: torch.Tensor, sequence: torch.Tensor,
                           length_penalty: float) -> float:
    """sum(log p of the new tokens up to the first end token) / new_length ** length_penalty, one token per
    forward with a fresh cache."""
    cache, total, new = model.new_cache(), 0.0, 0
    with torch.no_grad():
        encoded = model.encode(source, mask)
        for position in range(sequence.numel() - 1):
            logits = model(attention_mask=mask, decoder_input_ids=sequence[None, position:position + 1],
                           encoder_outputs=encoded, cache=cache).logits[0, -1]
            token = int(sequence[position + 1])
            total += float(logits.log_softmax(-1)[token])
            new += 1
            if token == EOS:
                break
    return total / new ** length_penalty


@pytest.mark.parametrize("length_penalty", [0.6, 1.0])
def test_n_best_scores_match_a_step_by_step_rescoring(model: RNNSearch, length_penalty: float) -> None:
    sources, mask, _ = _pairs()
    for row in range(4):
        out = _generate(model, slice(row, row + 1), num_beams=4, num_return_sequences=4, eos_token_id=EOS,
                        length_penalty=length_penalty)
        assert len({tuple(s.tolist()) for s in out.sequences}) == 4  # four different hypotheses
        assert torch.all(out.scores[:-1] >= out.scores[1:])  # best first
        rescored = [_rescored_step_by_step(model, sources[row:row + 1], mask[row:row + 1], s, length_penalty)
                    for s in out.sequences]
        torch.testing.assert_close(out.scores, torch.tensor(rescored), atol=1e-4, rtol=0)


@pytest.mark.parametrize("search", [dict(), dict(num_beams=3)], ids=["greedy", "beam3"])
def test_a_padded_source_generates_what_it_generates_alone(model: RNNSearch, search: dict) -> None:
    sources, mask, _ = _pairs()
    batch = _generate(model, eos_token_id=[], **search).sequences
    alone = tformer.generate(model, sources[3:, :2], max_new_tokens=NEW_TOKENS, eos_token_id=[], **search)
    assert torch.equal(batch[3], alone[0])


# ----------------------------------------------------------------------------- tformer translate

ENGLISH = ["one two three", "four five six", "seven eight nine", "ten eleven twelve"]
GERMAN = ["eins zwei drei", "vier fünf sechs", "sieben acht neun", "zehn elf zwölf"]


@pytest.fixture(scope="module")
def translator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RNNSearch with a word tokenizer, taught the four pairs, saved with its tokenizer."""
    tok = Tokenizer.train(iter(ENGLISH + GERMAN), kind="word")
    config = ModelConfig.preset("rnnsearch-tiny", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                decoder_start_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    rnn = tformer.build_model(config)
    sources = torch.tensor([tok.encode(text) for text in ENGLISH])
    targets = torch.tensor([[*tok.encode(text, add_special_tokens=False), tok.eos_token_id] for text in GERMAN])
    _teach(rnn, sources, None, targets, steps=TRANSLATOR_STEPS)
    folder = tmp_path_factory.mktemp("rnn-translator")
    tformer.save_pretrained(rnn, folder, tokenizer=tok)
    return folder


@pytest.mark.parametrize("flags", [[], ["--num-beams", "2", "--num-return-sequences", "2"]], ids=["greedy", "beam"])
def test_translate_loads_a_saved_rnn_and_prints_its_translation(translator_dir: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                flags: list[str]) -> None:
    code = main(["translate", "--model", str(translator_dir), ENGLISH[1], *flags])
    out = capsys.readouterr().out
    assert code == 0
    if not flags:
        assert out.strip() == GERMAN[1]
    else:
        lines = out.strip().splitlines()
        assert re.match(rf"^1\. {GERMAN[1]}  \(score -?\d+\.\d+\)$", lines[0]), out
        assert len(lines) == 2
