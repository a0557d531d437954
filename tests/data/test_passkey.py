"""The passkey probe's rows: the key stated once early, asked for at the end, the loss on the answer only."""

from __future__ import annotations

import pytest
import torch

from tformer.data.passkey import (
    ASK_ID,
    FILLER_IDS,
    IGNORE_INDEX,
    KEY_ID,
    MAX_DIGITS,
    REMEMBER_ID,
    VOCABULARY,
    PasskeyTask,
    answer_digits,
    digit_id,
    min_length,
    passkey_batch,
    render,
)
from tformer.losses import IGNORE_INDEX as LOSS_IGNORE_INDEX


def test_a_row_states_the_key_once_early_and_asks_for_it_at_the_end() -> None:
    task = PasskeyTask(200, digits=5, early=0.2)
    batch = passkey_batch(task, 64, torch.Generator().manual_seed(0))
    ids, labels, keys, starts = batch["input_ids"], batch["labels"], batch["keys"], batch["key_start"]
    assert ids.shape == labels.shape == (64, 200) and keys.shape == (64, 5)
    places = torch.arange(5)
    for row in range(64):
        s = int(starts[row])
        assert 0 <= s <= 40 and ids[row, s] == KEY_ID and ids[row, s + 6] == REMEMBER_ID
        assert ids[row, s + 1: s + 6].tolist() == digit_id(places, keys[row]).tolist()
        assert ids[row, 194] == ASK_ID and ids[row, 195:].tolist() == ids[row, s + 1: s + 6].tolist()
        rest = torch.cat([ids[row, :s], ids[row, s + 7: 194]])
        assert all(t in FILLER_IDS for t in rest.tolist())  # no digit, no marker anywhere else
    assert (labels[:, :195] == IGNORE_INDEX).all() and torch.equal(labels[:, 195:], ids[:, 195:])
    assert len(set(starts.tolist())) > 20 and starts.max() > 30  # the key's position moves within the first 20 %
    assert IGNORE_INDEX == LOSS_IGNORE_INDEX


def test_rows_are_seeded() -> None:
    task = PasskeyTask(64)
    first = passkey_batch(task, 4, torch.Generator().manual_seed(3))
    again = passkey_batch(task, 4, torch.Generator().manual_seed(3))
    other = passkey_batch(task, 4, torch.Generator().manual_seed(4))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["input_ids"], other["input_ids"])


def test_the_shortest_row_and_the_key_at_the_very_start() -> None:
    task = PasskeyTask(min_length(3), digits=3, early=1.0)
    batch = passkey_batch(task, 5, torch.Generator().manual_seed(0))
    assert (batch["key_start"] == 0).all()
    assert render(batch["input_ids"][0]).startswith("the pass key is ")
    assert " remember it . what is the pass key ? " in render(batch["input_ids"][0])


def test_answer_digits_reads_each_place_among_its_own_digits() -> None:
    task = PasskeyTask(30, digits=4)
    batch = passkey_batch(task, 3, torch.Generator().manual_seed(1))
    ids = batch["input_ids"]
    logits = torch.zeros(3, 30, len(VOCABULARY))
    logits[torch.arange(3)[:, None], torch.arange(29), ids[:, 1:]] = 1.0  # a model that knows every next token
    assert torch.equal(answer_digits(logits, task), batch["keys"])
    wrong_place = logits.clone()  # a strong vote for place 1's digit 0 at the first answer position is not read
    wrong_place[:, task.answer_start - 1, digit_id(1, 0)] = 9.0
    assert torch.equal(answer_digits(wrong_place, task), batch["keys"])
    wrong_digit = logits.clone()
    wrong_digit[:, task.answer_start - 1, digit_id(0, (int(batch["keys"][0, 0]) + 1) % 10)] = 9.0
    assert answer_digits(wrong_digit, task)[0, 0] == (batch["keys"][0, 0] + 1) % 10


def test_render_writes_the_digits_plainly() -> None:
    assert render([KEY_ID, digit_id(0, 7), digit_id(1, 1), REMEMBER_ID]) == "the pass key is 7 1 remember it ."


@pytest.mark.parametrize(("make", "message"), [
    (lambda: PasskeyTask(12, digits=5), "length=12 cannot hold a 5-digit key"),
    (lambda: PasskeyTask(100, digits=0), "digits=0 must be in [1, 8]"),
    (lambda: PasskeyTask(100, digits=MAX_DIGITS + 1), "digits=9 must be in [1, 8]"),
    (lambda: PasskeyTask(100, early=1.5), "early=1.5 must be in [0, 1]"),
    (lambda: passkey_batch(PasskeyTask(100), 0, torch.Generator()), "batch_size=0 must be at least 1"),
    (lambda: render([len(VOCABULARY)]), f"token id {len(VOCABULARY)} is outside the passkey vocabulary"),
])
def test_bad_inputs_are_one_line_errors(make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError) as caught:
        make()
    assert message in str(caught.value) and "\n" not in str(caught.value)
