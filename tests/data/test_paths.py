"""Image paths from dataset files must stay inside the dataset root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mile.data.errors import DataError, PathEscapeError
from mile.data.paths import existing_dir, resolve_image_path, split_file


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root/sub").mkdir(parents=True)
    (tmp_path / "root/sub/a.jpg").write_bytes(b"x")
    (tmp_path / "root/b.jpg").write_bytes(b"x")
    (tmp_path / "outside.jpg").write_bytes(b"secret")
    return tmp_path / "root"


def test_relative_path_resolves_inside_root(root: Path) -> None:
    resolved = resolve_image_path(root, "sub/a.jpg")
    assert resolved == (root / "sub/a.jpg").resolve()
    assert resolved.is_absolute()


def test_dotdot_that_stays_inside_is_allowed(root: Path) -> None:
    assert resolve_image_path(root, "sub/../b.jpg") == (root / "b.jpg").resolve()


def test_missing_file_is_not_a_path_error(root: Path) -> None:
    # existence is a separate, countable bad-record reason
    assert resolve_image_path(root, "sub/none.jpg") == (root / "sub/none.jpg").resolve()


@pytest.mark.parametrize("relative", ["../outside.jpg", "sub/../../outside.jpg", "../../../../etc/passwd"])
def test_dotdot_escape_is_refused(root: Path, relative: str) -> None:
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        resolve_image_path(root, relative, where="train.json, record 3 (qid 7)")


def test_error_names_file_record_and_path(root: Path) -> None:
    with pytest.raises(PathEscapeError) as info:
        resolve_image_path(root, "../outside.jpg", where="train.json, record 3 (qid 7)")
    message = str(info.value)
    assert "train.json, record 3 (qid 7)" in message and "'../outside.jpg'" in message
    assert str(root.resolve()) in message


def test_absolute_path_outside_root_is_refused(root: Path) -> None:
    with pytest.raises(PathEscapeError):
        resolve_image_path(root, str(root.parent / "outside.jpg"))
    with pytest.raises(PathEscapeError):
        resolve_image_path(root, "/etc/passwd")


def test_absolute_path_inside_root_is_allowed(root: Path) -> None:
    assert resolve_image_path(root, str(root / "b.jpg")) == (root / "b.jpg").resolve()


def test_symlink_to_file_outside_is_refused(root: Path) -> None:
    os.symlink(root.parent / "outside.jpg", root / "link.jpg")
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        resolve_image_path(root, "link.jpg")


def test_symlinked_directory_outside_is_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/c.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere", root / "linked")
    with pytest.raises(PathEscapeError):
        resolve_image_path(root, "linked/c.jpg")


def test_symlink_inside_root_is_allowed(root: Path) -> None:
    os.symlink(root / "sub/a.jpg", root / "alias.jpg")
    assert resolve_image_path(root, "alias.jpg") == (root / "sub/a.jpg").resolve()


def test_symlinked_root_itself_is_fine(root: Path, tmp_path: Path) -> None:
    os.symlink(root, tmp_path / "root_link")
    assert resolve_image_path(tmp_path / "root_link", "b.jpg") == (root / "b.jpg").resolve()


@pytest.mark.parametrize("relative", ["", "   ", "a\x00b.jpg"])
def test_empty_or_nul_path_is_refused(root: Path, relative: str) -> None:
    with pytest.raises(PathEscapeError):
        resolve_image_path(root, relative)


def test_symlink_loop_is_refused(root: Path) -> None:
    os.symlink(root / "loop_b", root / "loop_a")
    os.symlink(root / "loop_a", root / "loop_b")
    with pytest.raises(PathEscapeError):
        resolve_image_path(root, "loop_a/x.jpg")


def test_existing_dir_and_split_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a directory"):
        existing_dir(tmp_path / "nope", "SLAKE")
    (tmp_path / "train.json").write_text("[]")
    files = {"train": "train.json", "test": "test.json"}
    assert split_file(tmp_path, "train", files, "X") == tmp_path / "train.json"
    with pytest.raises(DataError, match=r"unknown X split 'val'; valid splits: \['test', 'train'\]"):
        split_file(tmp_path, "val", files, "X")
    with pytest.raises(DataError, match="test.json does not exist"):
        split_file(tmp_path, "test", files, "X")
