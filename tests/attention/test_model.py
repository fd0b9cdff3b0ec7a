import numpy as np
import pytest
import torch

from attndiff.attention.dynamics import (
    AttnTrainConfig,
    Sentences,
    epoch_gradients,
    reduced_attention,
    sen_deviation,
    sen_theory,
    train_attention,
)
from attndiff.attention.model import AttentionClassifier, ModelConfig, loss_and_accuracy
from attndiff.attention.task import TaskConfig, load

SMALL = TaskConfig(vocab=2000, sentences=800, m=8)  # non-topic words rare enough to stay near 0


@pytest.fixture(scope="module")
def corpus():
    return load(SMALL)


def test_keys_start_at_zero_and_fc_has_a_fixed_unit_diagonal_head(corpus):
    model = AttentionClassifier(ModelConfig(), len(corpus.words), 4)
    assert model.keys.abs().max() == 0 and not model.query.requires_grad
    assert torch.equal(model.fixed_head.diagonal(), torch.ones(4))
    assert "fixed_head" in model.state_dict() and all(p is not model.fixed_head for p in model.parameters())


@pytest.mark.parametrize("freeze", ["freeze_keys", "freeze_embeddings"])
def test_frozen_parts_and_the_fc_matrix_never_change(corpus, freeze):
    model = AttentionClassifier(ModelConfig(embed_std=0.1, **{freeze: True}), len(corpus.words), 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_attention(model, corpus, AttnTrainConfig(epochs=30, snapshot_every=10), progress=False)
    after = model.state_dict()
    frozen = "keys" if freeze == "freeze_keys" else "embedding"
    assert torch.equal(after[frozen], before[frozen])
    assert torch.equal(after["fixed_head"], before["fixed_head"]) and torch.equal(after["query"], before["query"])
    trained = "embedding" if frozen == "keys" else "keys"
    assert not torch.equal(after[trained], before[trained])


def test_masked_padding_gives_pad_no_attention():
    model = AttentionClassifier(ModelConfig(), 10, 2)
    with torch.no_grad():
        model.keys.normal_()
    tokens = torch.tensor([[3, 4, 0, 0]])
    a = model.attention(tokens, tokens != 0)
    assert a[0, 2:].sum() == 0 and torch.isclose(a.sum(), torch.tensor(1.0))
    assert model.attention(tokens)[0, 2:].sum() > 0  # the paper's variant: PAD takes part


def test_sen_theory_closed_form():
    assert sen_theory(0.0, 20, q_norm=1.0) == 0.0
    s, m = 2.0, 20
    assert np.isclose(sen_theory(s, m, q_norm=0.5) ** 2, 2 * s + (2 / m) * (np.exp(s) - 1))


def test_fc_dynamics_follow_the_sen_relation_and_attention_goes_to_topic_words(corpus):
    """Small lr: gradient descent close to gradient flow, where the relation is exact."""
    def run(lr, epochs):
        model = AttentionClassifier(ModelConfig(head="fc"), len(corpus.words), 4)
        h = train_attention(model, corpus, AttnTrainConfig(epochs=epochs, lr=lr, snapshot_every=50), progress=False)
        ids = corpus.topic_ids.numpy()
        dev = sen_deviation(h.scores[:, ids].astype(float), h.norms[:, ids].astype(float), SMALL.m, h.q_norm[0])
        return h, dev.max()

    h, dev = run(0.5, 1500)
    assert h.loss[-1] < 0.5 * h.loss[0]
    assert h.attention[-1] > 0.6 and h.attention[-1] > 5 * h.attention[0]  # from 1/(m+1) towards 1
    assert (h.scores[-1, corpus.topic_ids.numpy()] > 1).all()
    assert dev < 0.015
    _, dev_big_lr = run(5.0, 150)  # the same time lr x epochs with steps 10 times larger
    assert dev_big_lr > 2 * dev


def test_head_lr_applies_to_the_trainable_head_only(corpus):
    model = AttentionClassifier(ModelConfig(head="tc", embed_std=0.1), len(corpus.words), 4)
    head_before = model.head.weight.detach().clone()
    train_attention(model, corpus, AttnTrainConfig(epochs=20, lr=0.5, head_lr=1e-9, snapshot_every=10),
                    progress=False)
    assert (model.head.weight - head_before).abs().max() < 1e-6
    assert model.keys.abs().max() > 1e-4


@pytest.mark.parametrize("head", ["fc", "tc", "tl"])
@pytest.mark.parametrize("padding", ["mask", "none"])
@pytest.mark.parametrize("flags", [{}, {"freeze_keys": True}, {"freeze_embeddings": True}, {"train_query": True}])
def test_closed_form_gradients_equal_autograd(head, padding, flags):
    """The sparse closed-form epoch (float64 inside) against autograd through the plain forward,
    on sentences with repeated words and padding, away from the zero-key start."""
    from attndiff.attention.dynamics import Sentences, epoch_gradients
    from attndiff.attention.task import PAD

    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, 30, (12, 7), generator=gen)
    tokens[:, 0] = tokens[:, 1]  # a repeated word in every sentence
    tokens[::3, -2:] = PAD
    labels = torch.randint(0, 3, (12,), generator=gen)
    model = AttentionClassifier(ModelConfig(head=head, embed_std=0.3, **flags), 30, 3).double()
    with torch.no_grad():
        model.keys.normal_(0, 0.5, generator=gen)
    mask = tokens != PAD if padding == "mask" else None
    loss, acc = epoch_gradients(model, Sentences(tokens, 30, mask), labels)
    closed = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    expected_loss, expected_acc = loss_and_accuracy(model, tokens, labels, mask)
    expected_loss.backward()
    assert abs(loss - expected_loss.item()) < 1e-10 and acc == expected_acc
    assert closed.keys() == {name for name, p in model.named_parameters() if p.requires_grad}
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(closed[name], p.grad, rtol=1e-6, atol=1e-9), name


@pytest.mark.parametrize("head", ["fc", "tc", "tl"])
def test_reduced_model_is_the_full_model_with_the_other_words_pinned_at_zero(corpus, head):
    """The theory's reduced model equals gradient descent on the full model whose non-topic words
    are held at exactly zero; left free, they drift and the two part (the measured gap)."""
    cfg = AttnTrainConfig(epochs=300, lr=0.5, head_lr=0.2, snapshot_every=50)
    model = AttentionClassifier(ModelConfig(head=head, embed_std=0.05), len(corpus.words), 4).double()
    epochs, predicted = reduced_attention(model, corpus, cfg)
    tokens, labels = corpus.part("train")
    others = torch.ones(len(corpus.words), dtype=torch.bool)
    others[corpus.topic_ids] = False
    with torch.no_grad():
        model.embedding[others] = 0.0
    head_params = list(model.head.parameters()) if model.head is not None else []
    opt = torch.optim.SGD([{"params": [model.embedding, model.keys], "lr": cfg.lr},
                           *([{"params": head_params, "lr": cfg.head_lr}] if head_params else [])])
    sentences, pinned = Sentences(tokens, len(corpus.words)), []
    is_topic = torch.isin(tokens, corpus.topic_ids)
    for epoch in range(cfg.epochs + 1):
        if epoch % cfg.snapshot_every == 0:
            with torch.no_grad():
                pinned.append(float((model.attention(tokens) * is_topic).sum(1).mean()))
        epoch_gradients(model, sentences, labels)
        model.embedding.grad[others] = 0.0
        model.keys.grad[others] = 0.0
        opt.step()
    assert epochs.tolist() == list(range(0, cfg.epochs + 1, cfg.snapshot_every))
    assert predicted[0] == pytest.approx(1 / (SMALL.m + 1))
    assert predicted[-1] > 1.05 * predicted[0]  # the topic words gained attention
    np.testing.assert_allclose(predicted, pinned, rtol=1e-9)
