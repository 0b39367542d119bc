import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

from provenance.keys import KeyFileError, WatermarkKey

PATTERN_SNIPPET = """
import sys, torch
from provenance.keys import WatermarkKey
key = WatermarkKey.load(sys.argv[1])
tg, ng = key.generator("pattern", 3, "x")
print(key.subkey("p", 1).hex(), torch.randn(4, generator=tg).tolist(), ng.random(3).tolist())
"""


def test_subkeys_are_deterministic_and_purpose_separated():
    key = WatermarkKey.from_seed(7)
    assert key.subkey("a", 1) == key.subkey("a", 1)
    assert len({key.subkey("a", 1), key.subkey("a", 2), key.subkey("b", 1), key.subkey("a1")}) == 4
    # length-prefixed parts: ("ab", "c") and ("a", "bc") must differ
    assert key.subkey("x", "ab", "c") != key.subkey("x", "a", "bc")
    assert WatermarkKey.from_seed(8).subkey("a", 1) != key.subkey("a", 1)


def test_generators_reproduce_and_purposes_are_independent():
    key = WatermarkKey.from_seed(1)
    t1, n1 = key.generator("noise", 0)
    t2, n2 = key.generator("noise", 0)
    assert torch.equal(torch.randn(1000, generator=t1), torch.randn(1000, generator=t2))
    assert np.array_equal(n1.random(1000), n2.random(1000))
    a = torch.randn(20000, generator=key.generator("noise", 0)[0])
    b = torch.randn(20000, generator=key.generator("noise", 1)[0])
    c = torch.randn(20000, generator=key.generator("other", 0)[0])
    # independent streams: correlations consistent with zero (|r| < 4/sqrt(n))
    for x, y in ((a, b), (a, c), (b, c)):
        assert abs(torch.corrcoef(torch.stack([x, y]))[0, 1]) < 4 / 20000**0.5


def test_same_pattern_in_another_process(tmp_path):
    key = WatermarkKey.generate(label="x")
    path = key.save(tmp_path / "k.json")
    runs = [
        subprocess.run([sys.executable, "-c", PATTERN_SNIPPET, str(path)], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    tg, ng = key.generator("pattern", 3, "x")
    here = f"{key.subkey('p', 1).hex()} {torch.randn(4, generator=tg).tolist()} {ng.random(3).tolist()}\n"
    assert runs[0] == runs[1] == here


def test_secret_never_in_repr_or_str():
    key = WatermarkKey.generate(label="team")
    for text in (repr(key), str(key), f"{key}"):
        assert key.secret.hex() not in text
        assert key.key_id in text


def test_key_id_is_public_and_one_way():
    key = WatermarkKey.from_seed(3)
    assert len(key.key_id) == 16
    assert key.key_id not in key.secret.hex()
    assert WatermarkKey.from_seed(4).key_id != key.key_id


def test_key_file_round_trip_mode_and_no_overwrite(tmp_path):
    key = WatermarkKey.generate(label="lab")
    path = key.save(tmp_path / "sub" / "key.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = WatermarkKey.load(path)
    assert loaded.secret == key.secret and loaded.label == "lab" and loaded.key_id == key.key_id
    with pytest.raises(FileExistsError):
        WatermarkKey.generate().save(path)
    assert WatermarkKey.load(path).secret == key.secret  # untouched
    assert list(path.parent.iterdir()) == [path]  # no temp files left behind


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        '{"format": "provenance-watermark-key", "version": 1, "secret": "abcd"}',
        '{"format": "something-else", "version": 1}',
        '{"format": "provenance-watermark-key", "version": 9, "secret": "' + "00" * 32 + '"}',
        '{"format": "provenance-watermark-key", "version": 1, "secret": "zz' + "00" * 31 + '"}',
        "[1, 2, 3]",
    ],
)
def test_malformed_key_files_are_rejected(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(KeyFileError) as info:
        WatermarkKey.load(path)
    assert str(path) in str(info.value)


def test_truncated_key_file_rejected_without_leaking_secret(tmp_path):
    key = WatermarkKey.generate()
    path = key.save(tmp_path / "k.json")
    full = path.read_text()
    path.write_text(full[: len(full) // 2])
    with pytest.raises(KeyFileError) as info:
        WatermarkKey.load(path)
    assert key.secret.hex()[:16] not in str(info.value)


def test_inconsistent_key_id_rejected(tmp_path):
    data = WatermarkKey.from_seed(1).to_dict()
    data["key_id"] = WatermarkKey.from_seed(2).key_id
    path = tmp_path / "k.json"
    path.write_text(json.dumps(data))
    with pytest.raises(KeyFileError, match="inconsistent"):
        WatermarkKey.load(path)


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyFileError, match="no such key file"):
        WatermarkKey.load(tmp_path / "none.json")
