import torch

from attndiff.audio.models import AudioClassifier, ModelConfig

SMALL = ModelConfig(channels=(4, 8), dropout=0.0, classifiers=3, selector_dim=4)


def test_selector_weights_sum_to_one_and_outputs_are_log_probabilities():
    model = AudioClassifier(SMALL, "cabcnn", 5).eval()
    log_p, alpha = model(torch.randn(6, 16, 20))
    assert alpha.shape == (6, 3) and torch.allclose(alpha.sum(1), torch.ones(6))
    assert torch.allclose(log_p.exp().sum(1), torch.ones(6), atol=1e-5)


def test_baseline_heads_and_parameter_counts():
    cab, lin, mlp = (AudioClassifier(SMALL, k, 5) for k in ("cabcnn", "linear", "mlp"))
    assert lin.parameter_counts()["head"] == 16 * 5 + 5  # front-end features: mean and max of 8 channels
    assert mlp.parameter_counts()["head"] >= cab.parameter_counts()["head"]
    front = cab.parameter_counts()["total"] - cab.parameter_counts()["head"]
    assert front == lin.parameter_counts()["total"] - lin.parameter_counts()["head"]  # the same front end


def test_cabcnn_overfits_a_tiny_set():
    torch.manual_seed(0)
    x = torch.randn(12, 16, 20)
    y = torch.arange(12) % 4
    model = AudioClassifier(SMALL, "cabcnn", 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        log_p, _ = model(x)
        loss = torch.nn.functional.nll_loss(log_p, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(x)[0].argmax(1) == y).all() and loss.item() < 0.1


def test_low_rank_classifiers_and_mlp_selector_variants():
    import dataclasses

    cfg = dataclasses.replace(SMALL, classifier_dim=2, selector="mlp")
    model = AudioClassifier(cfg, "cabcnn", 5).eval()
    log_p, alpha = model(torch.randn(4, 16, 20))
    assert log_p.shape == (4, 5) and torch.allclose(alpha.sum(1), torch.ones(4))
    assert model.parameter_counts()["head"] < AudioClassifier(SMALL, "cabcnn", 5).parameter_counts()["head"]
