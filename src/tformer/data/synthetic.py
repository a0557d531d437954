"""The demo's translation corpus: English number phrases and their German translations.

`tformer demo` trains the original encoder-decoder Transformer to translate "three hundred twenty-one"
into "dreihunderteinundzwanzig". The data is generated in-process from the numbers 0..999,999, so nothing is
downloaded, and the splits are made *by number*: a number seen in training never appears in validation or test.

Conventions
-----------
English (`english_number`):

* words are lowercase and separated by single spaces; tens and units are hyphenated: "twenty-one";
* 0 is "zero"; hundreds are "one hundred", "two hundred", ... with no "and" after "hundred":
  105 -> "one hundred five", 2_345 -> "two thousand three hundred forty-five";
* "and" appears in exactly one place: between the thousands and a final remainder below 100:
  1_005 -> "one thousand and five", 421_007 -> "four hundred twenty-one thousand and seven".

German (`german_number`), written as one lowercase word, as German writes numbers below a million:

* units before tens joined by "und" (21 -> "einundzwanzig", 42 -> "zweiundvierzig");
* 1 is "eins" standing alone and at the end of a word ("eins", "hunderteins" inside "einhunderteins",
  "eintausendeins"), but "ein" before "und", "hundert" and "tausend" ("einundzwanzig", "einhundert",
  "eintausend", 101_001 -> "einhunderteintausendeins");
* 100 and 1000 are always "einhundert" and "eintausend", never bare "hundert" / "tausend";
* the spellings that trip people up: "elf", "zwölf", "sechzehn", "siebzehn", "dreißig", "sechzig", "siebzig";
* 0 is "null".

Splits (`number_split`, `split_numbers`, `number_pairs`, `write_number_corpus`):

Every number gets a 64-bit hash from the SplitMix64 finaliser (a fixed bijection, computed with numpy, so it
is independent of Python's hash seed, of the platform and of the numpy version). The hash, read as a fraction
in [0, 1), puts the number in train, validation or test by the proportions (default 0.98 / 0.01 / 0.01:
980,000 / about 10,000 / about 10,000 numbers). Inside a split numbers are listed in order of their hash,
which is a fixed shuffle, so the first `limit` numbers of a split are a spread-out sample of all sizes.
A different `seed` gives different, equally deterministic splits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

MAX_NUMBER = 999_999
"""The largest number that has a phrase."""

NUMBER_COUNT = MAX_NUMBER + 1
"""How many numbers the corpus covers (0..999,999)."""

SPLITS: tuple[str, str, str] = ("train", "validation", "test")
"""Split names, in the order the proportions are given."""

DEFAULT_PROPORTIONS: tuple[float, float, float] = (0.98, 0.01, 0.01)
"""Default fractions of all numbers in train, validation and test."""

DEFAULT_SEED = 0
"""Default seed of the split hash."""

# --------------------------------------------------------------------------------------------- English

_EN_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_EN_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def _english_below_hundred(n: int) -> str:
    """English for 0 <= n < 100: "seven", "nineteen", "forty", "forty-five"."""
    if n < 20:
        return _EN_UNITS[n]
    tens, units = divmod(n, 10)
    return _EN_TENS[tens] if units == 0 else f"{_EN_TENS[tens]}-{_EN_UNITS[units]}"


def _english_below_thousand(n: int) -> str:
    """English for 0 <= n < 1000, with no "and": 105 -> "one hundred five"."""
    hundreds, rest = divmod(n, 100)
    if hundreds == 0:
        return _english_below_hundred(rest)
    head = f"{_EN_UNITS[hundreds]} hundred"
    return head if rest == 0 else f"{head} {_english_below_hundred(rest)}"


_EN_BELOW_THOUSAND = tuple(_english_below_thousand(n) for n in range(1000))

# ---------------------------------------------------------------------------------------------- German

_DE_UNITS = (
    "null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun",
    "zehn", "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn", "neunzehn",
)  # fmt: skip
_DE_TENS = ("", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig", "neunzig")


def _german_prefix(unit: int) -> str:
    """A unit 1..9 as it stands before "und", "hundert" or "tausend": 1 is "ein", the rest as usual."""
    return "ein" if unit == 1 else _DE_UNITS[unit]


def _german_below_hundred(n: int, *, final: bool) -> str:
    """German for 1 <= n < 100; a lone 1 is "eins" when `final` (end of the word), else "ein"."""
    if n < 20:
        return _DE_UNITS[n] if final or n != 1 else "ein"
    tens, units = divmod(n, 10)
    return _DE_TENS[tens] if units == 0 else f"{_german_prefix(units)}und{_DE_TENS[tens]}"


def _german_below_thousand(n: int, *, final: bool) -> str:
    """German for 1 <= n < 1000: 101 -> "einhunderteins" (`final`) or "einhundertein" (before "tausend")."""
    hundreds, rest = divmod(n, 100)
    head = f"{_german_prefix(hundreds)}hundert" if hundreds else ""
    return head + (_german_below_hundred(rest, final=final) if rest else "")


# Index 0 is the empty string: a zero part of a larger number says nothing.
_DE_BELOW_THOUSAND_FINAL = ("",) + tuple(_german_below_thousand(n, final=True) for n in range(1, 1000))
_DE_BEFORE_TAUSEND = ("",) + tuple(_german_below_thousand(n, final=False) for n in range(1, 1000))

# ---------------------------------------------------------------------------------------------- phrases


def _check_number(n: object, who: str) -> int:
    """Return `n` as an int if it is an integer in 0..999,999; raise ValueError naming it otherwise."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ValueError(f"{who} takes an integer in 0..{MAX_NUMBER:,}, got {n!r} of type {type(n).__name__}")
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"{who} takes an integer in 0..{MAX_NUMBER:,}, got {int(n):,}; numbers must be in range")
    return int(n)


def english_number(n: int) -> str:
    """The English phrase for 0 <= n <= 999,999: 421_007 -> "four hundred twenty-one thousand and seven".

    See the module docstring for the convention ("and" only between thousands and a final part below 100).
    Raises ValueError for anything that is not an integer in range (bools included).
    """
    n = _check_number(n, "english_number")
    thousands, rest = divmod(n, 1000)
    if thousands == 0:
        return _EN_BELOW_THOUSAND[rest]
    head = f"{_EN_BELOW_THOUSAND[thousands]} thousand"
    if rest == 0:
        return head
    return f"{head} and {_EN_BELOW_THOUSAND[rest]}" if rest < 100 else f"{head} {_EN_BELOW_THOUSAND[rest]}"


def german_number(n: int) -> str:
    """The German number word for 0 <= n <= 999,999: 421_007 -> "vierhunderteinundzwanzigtausendsieben".

    One lowercase word; "eins" at the end, "ein" before "und" / "hundert" / "tausend"; 100 is "einhundert",
    1000 is "eintausend". Raises ValueError for anything that is not an integer in range (bools included).
    """
    n = _check_number(n, "german_number")
    if n == 0:
        return _DE_UNITS[0]
    thousands, rest = divmod(n, 1000)
    head = f"{_DE_BEFORE_TAUSEND[thousands]}tausend" if thousands else ""
    return head + _DE_BELOW_THOUSAND_FINAL[rest]


# ---------------------------------------------------------------------------------------------- splits

_GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def _check_split_settings(proportions: tuple[float, float, float], seed: int) -> tuple[float, float, float]:
    """Validate the split proportions and seed; return the proportions as floats."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    try:
        values = tuple(float(p) for p in proportions)
    except (TypeError, ValueError):
        raise ValueError(f"proportions must be three numbers (train, validation, test), got {proportions!r}") from None
    if len(values) != len(SPLITS) or not all(math.isfinite(p) and p >= 0 for p in values):
        raise ValueError(
            f"proportions must be three non-negative numbers (train, validation, test), got {proportions!r}"
        )
    if not math.isclose(sum(values), 1.0, abs_tol=1e-9):
        raise ValueError(f"proportions must add up to 1, got {proportions!r} (sum {sum(values)})")
    return values  # type: ignore[return-value]


def _number_hashes(numbers: np.ndarray, seed: int) -> np.ndarray:
    """SplitMix64 of each number (uint64): a fixed bijection of `numbers + (seed + 1) * golden_gamma`."""
    offset = np.uint64(((int(seed) + 1) * _GOLDEN_GAMMA) & _MASK64)
    z = numbers.astype(np.uint64) + offset
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _split_codes(hashes: np.ndarray, proportions: tuple[float, float, float]) -> np.ndarray:
    """Split index (into SPLITS) of each hash, reading the top 53 bits as a fraction in [0, 1)."""
    fractions = (hashes >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    bounds = np.array([proportions[0], proportions[0] + proportions[1]])
    return np.searchsorted(bounds, fractions, side="right").astype(np.int8)


def _split_index(split: str) -> int:
    """Position of `split` in SPLITS; ValueError naming it and the choices otherwise."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return SPLITS.index(split)


def split_table(
    *, proportions: tuple[float, float, float] = DEFAULT_PROPORTIONS, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """The split of every number: an int8 array of shape (1_000_000,), entry n indexes SPLITS."""
    proportions = _check_split_settings(proportions, seed)
    return _split_codes(_number_hashes(np.arange(NUMBER_COUNT), seed), proportions)


def number_split(
    n: int, *, proportions: tuple[float, float, float] = DEFAULT_PROPORTIONS, seed: int = DEFAULT_SEED
) -> str:
    """The split ("train", "validation" or "test") that number `n` belongs to."""
    n = _check_number(n, "number_split")
    proportions = _check_split_settings(proportions, seed)
    return SPLITS[int(_split_codes(_number_hashes(np.array([n]), seed), proportions)[0])]


def split_numbers(
    split: str,
    *,
    limit: int | None = None,
    proportions: tuple[float, float, float] = DEFAULT_PROPORTIONS,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """The numbers of `split` in its fixed shuffled order (by hash): an int64 array, at most `limit` long."""
    index = _split_index(split)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    proportions = _check_split_settings(proportions, seed)
    hashes = _number_hashes(np.arange(NUMBER_COUNT), seed)
    numbers = np.flatnonzero(_split_codes(hashes, proportions) == index)
    numbers = numbers[np.argsort(hashes[numbers], kind="stable")]
    return numbers[:limit].astype(np.int64)


def number_pairs(
    split: str,
    *,
    limit: int | None = None,
    proportions: tuple[float, float, float] = DEFAULT_PROPORTIONS,
    seed: int = DEFAULT_SEED,
) -> list[tuple[str, str]]:
    """(english, german) phrase pairs of `split`, in the split's fixed order, at most `limit` of them."""
    numbers = split_numbers(split, limit=limit, proportions=proportions, seed=seed)
    return [(english_number(n), german_number(n)) for n in numbers.tolist()]


def _write_text_atomically(path: Path, lines: list[str]) -> None:
    """Write one line per entry to a temporary file, then rename it over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def write_number_corpus(
    folder: str | os.PathLike[str],
    *,
    limit: int | Mapping[str, int | None] | None = None,
    proportions: tuple[float, float, float] = DEFAULT_PROPORTIONS,
    seed: int = DEFAULT_SEED,
) -> dict[str, int]:
    """Write the corpus as parallel text files, like Multi30k: train.en / train.de, validation.*, test.*.

    Line i of `{split}.en` translates to line i of `{split}.de`, one UTF-8 phrase per line. `limit` caps every
    split (an int) or chosen splits (a mapping such as {"train": 20_000}). The folder is created if needed;
    each file is written to a temporary name and renamed. Returns the number of lines written per split.
    """
    if isinstance(limit, Mapping):
        unknown = sorted(set(limit) - set(SPLITS))
        if unknown:
            raise ValueError(f"unknown split {unknown[0]!r} in limit; choose from {', '.join(SPLITS)}")
        limits = {split: limit.get(split) for split in SPLITS}
    else:
        limits = dict.fromkeys(SPLITS, limit)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for split in SPLITS:
        pairs = number_pairs(split, limit=limits[split], proportions=proportions, seed=seed)
        _write_text_atomically(out / f"{split}.en", [en for en, _ in pairs])
        _write_text_atomically(out / f"{split}.de", [de for _, de in pairs])
        counts[split] = len(pairs)
    return counts
