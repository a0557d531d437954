"""Bad model folders and names at every command that takes --model, and the Python API's loading and saving."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from run import Case


def _good_folder(work: Path) -> Path:
    """A tiny GPT-2 with a character tokenizer, as `tformer train` leaves one in RUN/final."""
    import torch

    import tformer
    from tformer import ModelConfig, Tokenizer

    tokenizer = Tokenizer.train(iter(["hello world, the quick brown fox"] * 5), kind="char")
    torch.manual_seed(0)
    model = tformer.build_model(ModelConfig.preset("gpt2-tiny", vocab_size=len(tokenizer), bos_token_id=None,
                                                   eos_token_id=None))
    tformer.save_pretrained(model, work / "good", tokenizer=tokenizer)
    return work / "good"


def _broken(work: Path, good: Path, name: str, change: Callable[[Path], None]) -> Path:
    folder = work / name
    shutil.copytree(good, folder)
    change(folder)
    return folder


def _truncate(keep: int) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:keep])  # a negative keep cuts that many bytes off the end
    return change


def _pickled_bin(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({"model": state, "epoch": 3, "sqrt": math.sqrt}, folder / "pytorch_model.bin")


def _config(text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / "config.json").write_text(text)


def _tformer_config_null(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["tformer_config"] = None
    (folder / "config.json").write_text(json.dumps(config))


def _nan_weights(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    state["transformer.h.0.attn.c_attn.weight"][0, 0] = math.nan
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def _shards_at(shard: str) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        from safetensors.torch import load_file

        names = load_file(folder / "model.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: shard for n in names}}))
    return change


def _folder_instead(name: str) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).mkdir()
    return change


def _run_folder(work: Path, good: Path) -> Path:
    run = work / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: run\n")
    shutil.copytree(good, run / "final")
    shutil.copytree(good, run / "checkpoints" / "step-00000020")
    return run


def cases(work: Path) -> list[Case]:
    good = _good_folder(work)
    broken = {name: _broken(work, good, name, change) for name, change in [
        ("empty-weights", _truncate(0)), ("cut-header", _truncate(60)), ("cut-data", _truncate(-40)),
        ("pickled-bin", _pickled_bin), ("config-list", _config("[1, 2]")), ("config-garbage", _config("<html>")),
        ("config-null", _tformer_config_null), ("nan", _nan_weights),
        ("shard-up", _shards_at("../good/model.safetensors")),
        ("shard-abs", _shards_at(str(good / "model.safetensors"))),
        ("weights-dir", _folder_instead("model.safetensors")),
        ("config-dir", _folder_instead("config.json")),
    ]}
    run = _run_folder(work, good)
    notes = work / "notes.txt"
    notes.write_text("my notes\n")

    def generate(name: str, folder: Path | str, expect: str) -> Case:
        return Case(f"generate: {name}", ["generate", "--model", str(folder), "hi"], expect=expect,
                    unchanged=[Path(folder)] if Path(folder).exists() else [])

    found = [
        generate("empty model.safetensors", broken["empty-weights"], "is empty (0 bytes)"),
        generate("model.safetensors cut in its header", broken["cut-header"], "is not a readable safetensors file"),
        generate("model.safetensors cut in its data", broken["cut-data"], "truncated or corrupt"),
        generate("pytorch_model.bin holding a pickle", broken["pickled-bin"], "convert it once"),
        generate("config.json holding a list", broken["config-list"], "holds a JSON array"),
        generate("config.json that is not JSON", broken["config-garbage"], "config.json is not valid JSON"),
        generate('"tformer_config": null', broken["config-null"], '"tformer_config" is a JSON null'),
        generate("NaN in the weights", broken["nan"], "NaN value(s) in tensor 'transformer.h.0.attn.c_attn.weight'"),
        generate("shard path with ..", broken["shard-up"], "lies outside the model folder"),
        generate("absolute shard path", broken["shard-abs"], "lies outside the model folder"),
        generate("model.safetensors is a folder", broken["weights-dir"], "is a folder, but it should be the weights"),
        generate("config.json is a folder", broken["config-dir"], "is a folder, but it should be the model's config"),
        generate("--model a file of the folder", good / "config.json", "pass that folder"),
        generate("--model RUN_DIR", run, f"pass {run}/final (the model at the end of the run) or a checkpoint"),
        generate("--model a name in no cache", "tiny-org/not-cached", "no model 'tiny-org/not-cached' in the Hugging"),
        Case("translate: --model a text file", ["translate", "--model", str(notes), "hi"], expect="is a file, not a",
             unchanged=[notes]),
        Case("viz attention: --model RUN_DIR", ["viz", "attention", "hi", "--model", str(run), "--out",
                                                str(work / "a.png")], expect="is a training run folder",
             unchanged=[run, work / "a.png"]),
        Case("finetune: --model RUN_DIR", ["finetune", "sst2", "--model", str(run), "--data", str(work),
                                           "--out", str(work / "ft")], expect="is a training run folder",
             unchanged=[run, work / "ft"]),
        Case("evaluate: --model a name in no cache", ["evaluate", "sst2", "--model", "bert-base-uncased-x", "--data",
                                                      str(work)], expect="in the Hugging Face cache"),
    ]
    return found + _api_cases(work, good, notes)


def _api_cases(work: Path, good: Path, notes: Path) -> list[Case]:
    load = "import tformer\ntformer.from_pretrained({!r}{})"
    save = ("import tformer\nfrom tformer import ModelConfig\n"
            "tformer.save_pretrained(tformer.build_model(ModelConfig.preset('gpt2-tiny')), {!r})")
    found = [
        Case("python: from_pretrained(dir, n_layers=7)", python=load.format(str(good), ", n_layers=7"),
             expect="override n_layers=7 changes the weights", unchanged=[good]),
        Case("python: from_pretrained('bert-base-cased'), no cache", python=load.format("bert-base-cased", ""),
             expect="pass a local model folder"),
        Case("python: from_pretrained(a file)", python=load.format(str(notes), ""), expect="is a file, not a model"),
        Case("python: save_pretrained onto a file", python=save.format(str(notes)), expect="it is a file",
             unchanged=[notes]),
        Case("python: save_pretrained under a file", python=save.format(str(notes / "model")),
             expect="is a file, not a folder", unchanged=[notes]),
        Case("python: save_pretrained(tokenizer=a transformers one)", python=(
            "import tformer, transformers\nfrom tformer import ModelConfig\n"
            "tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tformer.Tokenizer.from_file("
            f"{str(good)!r}).backend)\n"
            "model = tformer.build_model(ModelConfig.preset('gpt2-tiny'))\n"
            f"tformer.save_pretrained(model, {str(work / 'out')!r}, tokenizer=tok)"),
            expect="save_pretrained writes a tformer.Tokenizer", unchanged=[work / "out"]),
        Case("python: load_weights(model, dir with NaN weights)", python=(
            "import tformer\nfrom tformer.interop.huggingface import load_weights\n"
            f"load_weights(tformer.from_pretrained({str(good)!r}), {str(work / 'nan')!r})"),
            expect="NaN value(s) in tensor", unchanged=[work / "nan"]),
    ]
    if os.geteuid() != 0:  # root writes into read-only folders
        locked = work / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        found.append(Case("python: save_pretrained into a read-only folder", python=save.format(str(locked)),
                          expect="permission denied", unchanged=[locked]))
    return found
