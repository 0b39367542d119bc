import os
import stat

import pytest

from provenance.files import atomic_file, atomic_folder, check_new_output, write_text_atomic


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


def test_a_failed_write_names_the_users_path_not_the_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "key.json"

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError) as failure:
        write_text_atomic(path, "secret material\n", mode=0o600)
    assert str(failure.value) == f"{path}: cannot write (No space left on device)"
    assert ".partial" not in str(failure.value) and list(tmp_path.iterdir()) == []


def test_a_folder_is_swapped_in_whole_or_not_at_all(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(10):
        (frames / f"frame_{i:05d}.png").write_bytes(b"old")
    with atomic_folder(frames) as building:
        for i in range(3):
            (building / f"frame_{i:05d}.png").write_bytes(b"new")
    assert sorted(p.name for p in frames.iterdir()) == [f"frame_{i:05d}.png" for i in range(3)]
    with pytest.raises(RuntimeError), atomic_folder(frames) as building:
        (building / "frame_00000.png").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert [p.read_bytes() for p in sorted(frames.iterdir())] == [b"new"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_atomic_file_keeps_the_suffix_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "clip.mp4"
    with atomic_file(target) as temporary:
        assert temporary.suffix == ".mp4" and temporary.parent == tmp_path
        temporary.write_bytes(b"video")
    assert target.read_bytes() == b"video"
    with pytest.raises(ValueError), atomic_file(target) as temporary:
        temporary.write_bytes(b"half")
        raise ValueError("encoder failed")
    assert target.read_bytes() == b"video" and [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
