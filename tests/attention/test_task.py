import pytest
import torch

from attndiff import UserError
from attndiff.attention.task import PAD, UNK, TaskConfig, build_vocab, load, tokenize


def test_synthetic_task_is_deterministic_and_shaped_as_the_paper():
    cfg = TaskConfig()
    a, b = load(cfg), load(cfg)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels)
    assert a.tokens.shape == (5000, 21)
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 4000, "dev": 50, "test": 950}
    # exactly one topic word per sentence, and it names the label
    is_topic = torch.isin(a.tokens, a.topic_ids)
    assert (is_topic.sum(1) == 1).all()
    topic_word = a.tokens[is_topic]
    assert torch.equal((topic_word - 2) // cfg.topic_words, a.labels)
    assert not torch.equal(load(TaskConfig(seed=1)).tokens, a.tokens)
    splits = torch.cat(list(a.splits.values()))
    assert len(splits.unique()) == 5000  # disjoint and complete


def test_sst_format_loader_vocabulary_and_padding(tmp_path):
    (tmp_path / "train.txt").write_text("1 a great , moving film\n0 a dull film\n\n1 great\n")
    (tmp_path / "test.txt").write_text("0 dull and unknown\n")
    corpus = load(TaskConfig(name=f"sst:{tmp_path}"))
    assert corpus.classes == ("negative", "positive")
    assert {k: len(v) for k, v in corpus.splits.items()} == {"train": 3, "dev": 0, "test": 1}
    assert corpus.words[:2] == ["<pad>", "<unk>"]
    assert corpus.words[2:5] == ["a", "film", "great"]  # most frequent first, ties alphabetical
    test_tokens, _ = corpus.part("test")
    words = [corpus.words[i] for i in test_tokens[0].tolist()]
    assert words[:3] == ["dull", "<unk>", "<unk>"]  # the vocabulary comes from train only
    assert (test_tokens[0, 3:] == PAD).all() and corpus.tokens.shape[1] == 5
    assert corpus.mask.sum().item() == 5 + 3 + 1 + 3


def test_missing_sst_data_and_unknown_task_are_clear(tmp_path):
    with pytest.raises(UserError, match="SST data not found"):
        load(TaskConfig(name=f"sst:{tmp_path / 'nope'}"))
    with pytest.raises(UserError, match="train.txt is missing"):
        load(TaskConfig(name=f"sst:{tmp_path}"))
    with pytest.raises(UserError, match="unknown task 'sst2'"):
        load(TaskConfig(name="sst2"))


def test_tokenizer_and_vocab():
    assert tokenize("It's GREAT,<br />isn't it?") == ["it's", "great", ",", "isn't", "it", "?"]
    assert build_vocab([["b", "a"], ["a"]], min_count=2) == ["<pad>", "<unk>", "a"]
    assert UNK == 1


def test_movie_review_sentences_load_with_a_seeded_split():
    corpus = load(TaskConfig(name="rt-polarity", split=(0.8, 0.1, 0.1)))
    assert len(corpus.labels) == 8530 and corpus.labels.float().mean() == 0.5
    assert {k: len(v) for k, v in corpus.splits.items()} == {"train": 6824, "dev": 853, "test": 853}
