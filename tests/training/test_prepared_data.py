"""data.prepared: a causal LM trains on a `tformer prepare` folder as it is (no RUN/data of its own); a folder
without those files, or data.text beside it, is a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tformer.data.prepare import prepare
from tformer.training import Trainer
from tformer.training.options import OptionError

from .conftest import write_text


def _prepared(tmp_path: Path) -> Path:
    book = write_text(tmp_path / "book.txt", 80, seed=3)
    prepare([book], tmp_path / "prep", tokenizer="char", val_fraction=0.2, progress=False, log=lambda line: None)
    return tmp_path / "prep"


def test_a_run_trains_on_the_prepared_folder_and_prepares_nothing(make_recipe, tmp_path: Path) -> None:
    folder = _prepared(tmp_path)
    train = np.fromfile(folder / "train.bin", dtype=np.uint16)
    (folder / "train.bin").write_bytes(train[:200].tobytes())  # a prefix: what the run trains on is this file
    trainer = Trainer(make_recipe("causal_lm", f"--data.prepared={folder}", "--data.text=[]"), log_stream=None)
    try:
        assert trainer.data.train.batches.num_tokens == 200
        result = trainer.fit()
    finally:
        trainer.close()
    assert not (tmp_path / "run" / "data").exists()
    assert (result.model_dir / "tokenizer.json").read_text() == (folder / "tokenizer.json").read_text()


def test_a_folder_without_prepared_files_or_with_data_text_is_refused(make_recipe, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"data.prepared: .*empty/train.bin does not exist"):
        Trainer(make_recipe("causal_lm", f"--data.prepared={empty}", "--data.text=[]"))
    with pytest.raises(OptionError, match="leave data.text empty"):
        make_recipe("causal_lm", f"--data.prepared={_prepared(tmp_path)}")
