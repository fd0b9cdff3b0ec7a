import pytest

from attndiff import UserError
from attndiff.data import text


@pytest.mark.parametrize("content,message", [("", "has no sentences"), ("x good film\n", "label 0..4"),
                                             ("7 good film\n", "label 0..4"), ("1\n", "has no sentence")])
def test_sst_format_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        text.read_sst(path)


def test_one_interface_for_every_text_source(tmp_path):
    (tmp_path / "train.txt").write_text("1 a great film\n0 a dull film\n")
    (tmp_path / "test.txt").write_text("0 dull\n")
    sst = text.load(f"sst:{tmp_path}")
    assert sst.name == f"sst:{tmp_path}" and len(sst) == 3 and sst.splits["dev"] == ()
    assert text.load(f"sst:{tmp_path}", "test").texts == ("dull",)
    reviews = text.load("rt-polarity")
    assert len(reviews) == 8530 and set(reviews.labels) == {0, 1} and reviews.splits is None
    with pytest.raises(UserError, match="has no split 'train'"):
        text.load("rt-polarity", "train")
    with pytest.raises(UserError, match="unknown text dataset 'sst2'"):
        text.load("sst2")
