"""UCF-101's split files: parsing, spellings and the errors that name the line."""

from __future__ import annotations

import pytest
from ucf_fixture import (
    CLASS_INDEX,
)

from lightning_selrel.data.ucf101.splits import read_class_index, read_split


def test_split_files_parse_with_crlf_blank_lines_and_handstand_spelling(ucf_tree):
    names = read_class_index(ucf_tree.annotations / "classInd.txt")
    assert names == CLASS_INDEX
    train = read_split(ucf_tree.annotations / "trainlist01.txt", names)
    test = read_split(ucf_tree.annotations / "testlist01.txt", names)
    assert len(train) == 6 and len(test) == 3
    assert ("HandstandPushups/v_HandStandPushups_g01_c01.avi", 1) in train  # 1-indexed in the file, 0 here
    assert [label for _, label in test] == [0, 1, 2]  # test list: label from the folder name


def test_split_label_that_disagrees_with_its_folder_fails(tmp_path):
    bad = tmp_path / "trainlist01.txt"
    bad.write_text("YoYo/v_YoYo_g01_c01.avi 1\n")
    with pytest.raises(ValueError, match=r"trainlist01.txt, line 1: label 1 disagrees with folder 'YoYo'"):
        read_split(bad, CLASS_INDEX)
    bad.write_text("Unknown/v_x.avi 1\n")
    with pytest.raises(ValueError, match="'Unknown'.*not in classInd"):
        read_split(bad, CLASS_INDEX)


def test_class_index_with_a_gap_fails(tmp_path):
    path = tmp_path / "classInd.txt"
    path.write_text("1 A\n3 B\n")
    with pytest.raises(ValueError, match="without gaps"):
        read_class_index(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"1 Apply\xffEyeMakeup\n", "is not a UTF-8 text file"), (b"", "lists no class"), (b"\n \n", "lists no class")],
)
def test_a_class_index_that_is_not_text_or_empty_names_the_file(tmp_path, content, message):
    path = tmp_path / "classInd.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as raised:
        read_class_index(path)
    assert str(path) in str(raised.value)
