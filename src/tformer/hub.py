"""Model names that are not folders ("bert-base-cased", "openai-community/gpt2"): found through the Hugging Face
Hub's cache, downloaded where the network allows.

A string is a name only when it cannot be a path the user meant: it does not exist here, does not start with
".", "/" or "~", and has the Hub's `name` or `org/name` form. The cache is the one `transformers` uses
(HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), read when a name is resolved, and HF_HUB_OFFLINE=1
(or TRANSFORMERS_OFFLINE=1) keeps the look-up to that cache.

Plain Python that imports nothing of tformer, at the bottom tier beside tokenization.py: `Tokenizer.from_file`
and interop's model folders both resolve names here, so the tokenizer never imports a layer above it.
"""

from __future__ import annotations

import os
import re
from os import PathLike
from pathlib import Path

# The files a tformer model folder is made of; a download fetches only these.
MODEL_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "model.safetensors", "model.safetensors.index.json",
               "model-*-of-*.safetensors"]
PICKLE_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"]
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_TRUE = {"1", "ON", "YES", "TRUE"}


def looks_like_model_name(text: str) -> bool:
    """True for "gpt2" or "org/name" that is not a path on this machine (an existing path always stays a path)."""
    if text.startswith((".", "/", "~")) or (os.altsep and os.altsep in text) or (os.sep != "/" and os.sep in text):
        return False
    if not _REPO_ID.fullmatch(text) or ".." in text or "--" in text or len(text) > 96:
        return False
    return not Path(text).exists()


def hub_cache_dir() -> Path:
    """The Hugging Face cache folder as `huggingface_hub` finds it, read from the environment now."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_offline() -> bool:
    """HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1): use the local cache only."""
    return any(os.environ.get(name, "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_model_path(path: str | PathLike[str]) -> Path:
    """The folder `path` names: itself, or for a Hub model name its snapshot in the Hugging Face cache."""
    if isinstance(path, str) and looks_like_model_name(path):
        return download_model(path)
    return Path(path).expanduser()


def download_model(name: str) -> Path:
    """The cached snapshot folder of Hub model `name` (downloaded first unless offline), or one-line errors."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"no folder {name!r} here; to load the model {name!r} by name from the Hugging Face "
                                "Hub install huggingface_hub (pip install huggingface_hub), or pass a local model "
                                "folder (config.json + model.safetensors)") from None
    cache, offline = hub_cache_dir(), hub_offline()
    try:
        folder = Path(snapshot_download(name, cache_dir=cache, local_files_only=offline, allow_patterns=MODEL_FILES))
        if not any(folder.glob("*.safetensors*")):  # an older repository that ships only pytorch_model.bin
            folder = Path(snapshot_download(name, cache_dir=cache, local_files_only=offline,
                                            allow_patterns=MODEL_FILES + PICKLE_FILES))
    except Exception as error:  # noqa: BLE001 - every failure of the Hub client becomes one line below
        raise _hub_error(name, error, cache, offline) from None
    return folder


def _hub_error(name: str, error: Exception, cache: Path, offline: bool) -> OSError:
    from huggingface_hub import errors
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    incomplete = getattr(errors, "IncompleteSnapshotError", ())  # huggingface_hub >= 1.x tells partial snapshots apart
    here = f"no folder {name!r} here, and"
    local = "pass a local model folder (config.json + model.safetensors)"
    if isinstance(error, incomplete):
        return FileNotFoundError(f"{here} the cached copy of {name!r} in {cache} is incomplete; connect to the "
                                 f"network (unset HF_HUB_OFFLINE) to finish the download, or {local}")
    if isinstance(error, LocalEntryNotFoundError) and offline:
        return FileNotFoundError(f"{here} no model {name!r} in the Hugging Face cache {cache} (HF_HUB_OFFLINE=1 "
                                 f"allows no download); {local}, or unset HF_HUB_OFFLINE to download it")
    if isinstance(error, LocalEntryNotFoundError):
        return FileNotFoundError(f"{here} {name!r} is not in the Hugging Face cache {cache} and the Hub cannot be "
                                 f"reached; {local}, or connect to the network and try again")
    if isinstance(error, RepositoryNotFoundError):
        return FileNotFoundError(f"{here} the Hugging Face Hub has no model {name!r} (or it is private or gated: log "
                                 f"in with `hf auth login`); check the name, or {local}")
    if isinstance(error, HfHubHTTPError):
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return OSError(f"the Hugging Face Hub refused {name!r} ({first}); {local}")
    if isinstance(error, OSError):
        return OSError(f"could not fetch {name!r} into the Hugging Face cache {cache}: "
                       f"{error.strerror or error}; free space or fix its permissions, or {local}")
    return OSError(f"could not fetch the model {name!r} from the Hugging Face Hub ({type(error).__name__}: "
                   f"{' '.join(str(error).split())[:200]}); {local}")
