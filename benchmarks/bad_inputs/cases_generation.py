"""Bad inputs to `tformer generate` / `translate` and `tformer.generate`: generation controls, settings files,
devices, standard input; flags the decoding ignores end in a one-line warning and a result (exit 0)."""

from __future__ import annotations

from pathlib import Path

from run import Case


def _folders(work: Path) -> tuple[Path, Path]:
    """A tiny GPT-2 and a tiny encoder-decoder, each with a character tokenizer, saved as model folders."""
    import tformer
    from tformer import ModelConfig, Tokenizer

    tok = Tokenizer.train(iter(["the quick brown fox jumps over the lazy dog"] * 3), kind="char",
                          special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"])
    gpt, translator = work / "gpt", work / "translator"
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    tformer.save_pretrained(tformer.build_model(ModelConfig.preset("gpt2-tiny", vocab_size=len(tok), **ids)), gpt)
    tformer.save_pretrained(tformer.build_model(ModelConfig.preset(
        "transformer-tiny", vocab_size=len(tok), decoder_start_token_id=2, sinusoidal_layout="halves", **ids)),
        translator)
    for folder in (gpt, translator):
        tok.save(folder)
    return gpt, translator


def _api(folder: Path, call: str) -> str:
    return f"""
import torch, tformer
model = tformer.from_pretrained({str(folder)!r})
tformer.generate(model, torch.tensor([[5, 6, 7]]), {call})
"""


def cases(work: Path) -> list[Case]:
    gpt, translator = _folders(work)
    broken = work / "broken"
    broken.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (broken / name).write_bytes((gpt / name).read_bytes())
    (broken / "generation_config.json").write_text("{not json", encoding="utf-8")
    keep = [gpt, translator, broken]
    gen = ["generate", "--model", str(gpt), "the"]

    def refused(name: str, argv: list[str], expect: str, stdin: str | None = None) -> Case:
        return Case(name, argv, expect=expect, unchanged=keep, stdin=stdin)

    def warned(name: str, flags: list[str], expect: str) -> Case:
        return Case(name, [*gen, "--max-new-tokens", "4", *flags], expect_rc=0, expect=expect, unchanged=keep)

    return [
        refused("generate: --repetition-penalty 0", [*gen, "--repetition-penalty", "0"], "must be > 0"),
        refused("generate: --repetition-penalty -1.5", [*gen, "--repetition-penalty", "-1.5"], "must be > 0"),
        refused("generate: --no-repeat-ngram-size -1", [*gen, "--no-repeat-ngram-size", "-1"], "must be >= 0"),
        refused("generate: --min-new-tokens -2", [*gen, "--min-new-tokens", "-2"], "must be >= 0"),
        refused("generate: --min-new-tokens > --max-new-tokens", [*gen, "--min-new-tokens", "9",
                                                                  "--max-new-tokens", "4"], "is more than"),
        refused("generate: --min-new-tokens > the default length", [*gen, "--min-new-tokens", "500"],
                "is more than max_new_tokens"),
        refused("generate: --stop ''", [*gen, "--stop", ""], "--stop='' is empty"),
        refused("generate: --forced-eos-token-id 9999", [*gen, "--forced-eos-token-id", "9999"],
                "outside the vocabulary"),
        refused("generate: --forced-bos-token-id -1", [*gen, "--forced-bos-token-id", "-1"], "must be a token id"),
        refused("generate: --max-new-tokens 0", [*gen, "--max-new-tokens", "0"], "must be at least 1"),
        refused("generate: --threads 0", [*gen, "--threads", "0"], "--threads=0 must be at least 1"),
        refused("generate: --device tpu9", [*gen, "--device", "tpu9"], "is not a device"),
        refused("generate: --device cuda:7", [*gen, "--device", "cuda:7"], "cuda"),
        refused("generate: prompt - with empty stdin", ["generate", "--model", str(gpt), "-"], "the prompt is empty",
                stdin=""),
        refused("translate: sentence - with blank stdin", ["translate", "--model", str(translator), "-"],
                "the sentence is empty", stdin="\n\n"),
        refused("translate: a gpt folder that is not T-D", ["translate", "--model", str(gpt), "the"],
                "decoder-only seq2seq (T-D)"),
        refused("generate: broken generation_config.json", ["generate", "--model", str(broken), "the"],
                "generation_config.json' is not valid JSON"),
        warned("generate: --seed without sampling", ["--seed", "3"], "seed=3 is used by sampling only"),
        warned("generate: --temperature without sampling", ["--temperature", "0.7"], "temperature=0.7 is used"),
        warned("generate: --top-k without sampling", ["--top-k", "5"], "top_k=5 is used"),
        warned("generate: --length-penalty without beams", ["--length-penalty", "0.6"], "only applies to beam"),
        Case("api: stop_strings without a tokenizer", python=_api(gpt, "max_new_tokens=3, stop_strings=['\\n\\n']"),
             expect="need the model's tokenizer", unchanged=keep),
        Case("api: repetition_penalty=0", python=_api(gpt, "max_new_tokens=3, repetition_penalty=0"),
             expect="repetition_penalty=0 must be a number > 0", unchanged=keep),
        Case("api: min_new_tokens > max_new_tokens", python=_api(gpt, "max_new_tokens=3, min_new_tokens=5"),
             expect="min_new_tokens=5 is more than max_new_tokens=3", unchanged=keep),
        Case("api: no_repeat_ngram_size=-2", python=_api(gpt, "max_new_tokens=3, no_repeat_ngram_size=-2"),
             expect="no_repeat_ngram_size=-2 must be an integer >= 0", unchanged=keep),
        Case("api: forced_eos_token_id out of vocabulary", python=_api(gpt, "max_new_tokens=3, "
             "forced_eos_token_id=[4, 10**6]"), expect="forced_eos_token_id=1000000 is outside", unchanged=keep),
        Case("api: bad_words_ids=[[]]", python=_api(gpt, "max_new_tokens=3, bad_words_ids=[[]]"),
             expect="must be a non-empty list of token ids", unchanged=keep),
        Case("api: no max_new_tokens and no setting", python=_api(gpt, ""), expect="generate needs max_new_tokens",
             unchanged=keep),
        Case("api: stop_strings=['']", python=_api(gpt, "max_new_tokens=3, stop_strings=[''], tokenizer=object()"),
             expect="must be a non-empty string", unchanged=keep),
    ]
