import pytest
import torch

from attndiff import UserError
from attndiff.symmetry import groups

X = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)


@pytest.mark.parametrize("name,order", [("trivial", 1), ("C4", 4), ("D4", 8), ("H", 2), ("V", 2)])
def test_groups_are_closed_have_inverses_and_distinct_actions(name, order):
    g = groups.get(name)
    assert len(g) == order
    actions = {tuple(e(X).flatten().tolist()) for e in g}
    assert len(actions) == order  # no two elements act alike
    for a in g:
        assert torch.equal(a.inverse()(a(X)), X)
        for b in g:
            assert torch.equal((a @ b)(X), a(b(X)))
            assert a @ b in g.elements  # closure


def test_elements_are_what_their_names_say():
    d4 = {e.name: e for e in groups.get("D4")}
    img = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(d4["flip-lr"](img), torch.tensor([[2.0, 1.0], [4.0, 3.0]]))
    assert torch.equal(d4["flip-ud"](img), torch.tensor([[3.0, 4.0], [1.0, 2.0]]))
    assert torch.equal(d4["flip-diag"](img), img.T)
    assert torch.equal(d4["rot90"](img), torch.tensor([[2.0, 4.0], [1.0, 3.0]]))  # counter-clockwise
    assert [e.name for e in groups.get("V")] == ["rot0", "flip-ud"]


def test_apply_each_transforms_each_sample_by_its_own_element():
    c4 = groups.get("C4")
    out = c4.apply_each(X, [3, 1])
    assert torch.equal(out[0], torch.rot90(X[0], 3, (-2, -1))) and torch.equal(out[1], torch.rot90(X[1], 1, (-2, -1)))


def test_get_is_case_insensitive_and_rejects_unknown_names():
    assert groups.get("c4").name == "C4" and groups.get("none").is_trivial
    with pytest.raises(UserError, match="unknown symmetry group 'C8'"):
        groups.get("C8")
