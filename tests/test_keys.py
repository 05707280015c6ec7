import os

import pytest

from medcurate.core.keys import KEY_ENV, MissingKeyError, load_key


def test_a_key_handed_in_wins_and_never_enters_the_environment(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "environment-key-0123456789")
    assert load_key(value="variable-key-0123456789abc") == b"variable-key-0123456789abc"
    assert os.environ[KEY_ENV] == "environment-key-0123456789"
    monkeypatch.delenv(KEY_ENV)
    load_key(value="variable-key-0123456789abc")
    assert KEY_ENV not in os.environ


def test_short_or_missing_keys_are_refused(monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(MissingKeyError, match="too short"):
        load_key(value="short")
    with pytest.raises(MissingKeyError, match="refuses to start"):
        load_key()
    demo = load_key(demo_key_file=tmp_path / "raw" / ".key")
    assert demo == load_key(demo_key_file=tmp_path / "raw" / ".key")
    assert (tmp_path / "raw").stat().st_mode & 0o077 == 0
