import os
import stat

import pytest

from provenance.files import check_new_output, write_text_atomic


def test_atomic_write_replaces_content_with_the_requested_mode(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    write_text_atomic(path, "first\n")
    write_text_atomic(path, "second\n", mode=0o600)
    assert path.read_text(encoding="utf-8") == "second\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]


def test_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("kept\n", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "half written \ud800 then a lone surrogate")
    assert path.read_text(encoding="utf-8") == "kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_existing_output_is_refused_without_force(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("kept\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="--force"):
        check_new_output(path, force=False)
    assert check_new_output(path, force=True) == path
