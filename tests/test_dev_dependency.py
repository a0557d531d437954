"""A missing dev dependency skips on a developer's machine and fails under CI=true."""

from __future__ import annotations

import pytest

from .dev_dependency import import_dev, missing


def test_a_present_module_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert import_dev("json").dumps([1]) == "[1]"


def test_a_missing_module_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="tformer_no_such_module"):
        import_dev("tformer_no_such_module")


@pytest.mark.parametrize("value", ["true", "TRUE", "1"])
def test_a_missing_module_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true and the dev dependency 'tformer_no_such_module'"):
        import_dev("tformer_no_such_module")
    with pytest.raises(pytest.fail.Exception, match="no Chromium"):
        missing("no Chromium found")
