"""SDCLRProjectionHead against the reference code's layers, written out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from selfdamage.adapters import SDCLRProjectionHead, SimCLRAdapter

from .helpers import FEATURES, hand_twin, tiny_backbone, views

EPS = 1e-5  # BatchNorm1d's default


def reference_sequential(input_dim: int, hidden_dim: int, output_dim: int) -> nn.Sequential:
    """``proj_head`` of the SDCLR code (models/resnet_prune_multibn.py), one BN per layer:
    fc1 (bias) bn1 relu fc2 (no bias) bn2 relu fc3 (no bias) bn3."""
    return nn.Sequential(
        nn.Linear(input_dim, hidden_dim, bias=True),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, output_dim, bias=False),
        nn.BatchNorm1d(output_dim),
    )


def by_hand(head: SDCLRProjectionHead, x: Tensor, *, training: bool) -> Tensor:
    """The head's maths in plain tensor operations: batch statistics in training mode
    (biased variance), running statistics in eval mode."""
    layers = head.layers
    for i in (0, 3, 6):
        linear, norm = layers[i], layers[i + 1]
        assert isinstance(linear, nn.Linear) and isinstance(norm, nn.BatchNorm1d)
        x = x @ linear.weight.T + (linear.bias if linear.bias is not None else 0)
        if training:
            mean, var = x.mean(0), x.var(0, unbiased=False)
        else:
            assert norm.running_mean is not None and norm.running_var is not None
            mean, var = norm.running_mean, norm.running_var
        x = (x - mean) / torch.sqrt(var + EPS) * norm.weight + norm.bias
        if i < 6:
            x = x.clamp(min=0)
    return x


class TestSDCLRProjectionHead:
    def test_layers_are_the_reference_codes(self) -> None:
        head = SDCLRProjectionHead(512, 512, 128)
        kinds = [type(m) for m in head.layers]
        assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear, nn.BatchNorm1d]
        linears = [m for m in head.layers if isinstance(m, nn.Linear)]
        shapes = [(m.in_features, m.out_features, m.bias is not None) for m in linears]
        assert shapes == [(512, 512, True), (512, 512, False), (512, 128, False)]
        norms = [m for m in head.layers if isinstance(m, nn.BatchNorm1d)]
        assert [(m.num_features, m.affine, m.eps) for m in norms] == [
            (512, True, EPS),
            (512, True, EPS),
            (128, True, EPS),
        ]

    def test_state_dict_loads_into_the_reference_layers(self) -> None:
        head = SDCLRProjectionHead(8, 6, 4)
        reference = reference_sequential(8, 6, 4)
        state = {k.removeprefix("layers."): v for k, v in head.state_dict().items()}
        assert set(state) == set(reference.state_dict())  # same parameters, same shapes
        reference.load_state_dict(state)

    @pytest.mark.parametrize("training", [True, False])
    def test_forward_equals_the_reference(self, training: bool) -> None:
        torch.manual_seed(0)
        head = SDCLRProjectionHead(8, 6, 4)
        with torch.no_grad():  # non-trivial BN parameters and statistics
            for norm in (m for m in head.layers if isinstance(m, nn.BatchNorm1d)):
                norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.5, 0.5)
                norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2)
        reference = reference_sequential(8, 6, 4)
        reference.load_state_dict(
            {k.removeprefix("layers."): v for k, v in head.state_dict().items()}
        )
        head.train(training), reference.train(training)
        x = torch.randn(5, 8)
        expected = by_hand(head, x, training=training)
        out = head(x)
        torch.testing.assert_close(out, reference(x), rtol=0, atol=0)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)  # float32 rounding

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"input_dim": 0}, ValueError, "input_dim must be a positive integer, got input_dim=0"),
            ({"output_dim": 1.5}, TypeError, "output_dim must be an int, got output_dim=1.5"),
        ],
    )
    def test_bad_sizes(self, kwargs: dict[str, object], error: type, match: str) -> None:
        with pytest.raises(error, match=match):
            SDCLRProjectionHead(**kwargs)  # type: ignore[arg-type]


class TestInTheTwin:
    """The reference code's "dual BN": shared Linear weights, the twin's own BN state."""

    def adapter(self) -> SimCLRAdapter:
        torch.manual_seed(0)
        head = SDCLRProjectionHead(FEATURES, FEATURES, 8)
        return SimCLRAdapter(tiny_backbone(), FEATURES, 0.5, head=head)

    def test_each_head_norm_has_twin_state_and_no_linear_is_pruned(self) -> None:
        wrapper = self.adapter().wrapper
        twins = {n for n, _ in wrapper.twin_norms.named_modules() if n.startswith("head.")}
        assert twins >= {"head.layers.1", "head.layers.4", "head.layers.7"}
        assert not [name for name, _ in wrapper.named_masks() if name.startswith("head.")]

    @pytest.mark.parametrize("training", [True, False])
    def test_twin_pass_equals_hand_built_twin(self, training: bool) -> None:
        adapter = self.adapter()
        wrapper = adapter.wrapper
        with torch.no_grad():  # the twin's head statistics differ from the dense ones
            for name in ("head.layers.1", "head.layers.4", "head.layers.7"):
                twin = wrapper.twin_norms.get_submodule(name)
                twin.weight.uniform_(0.5, 1.5), twin.running_mean.uniform_(-1, 1)
        adapter.train(training)
        reference = hand_twin(wrapper).train(training)
        x0, _ = views()
        torch.testing.assert_close(wrapper.damaged(x0), reference(x0), rtol=1e-5, atol=1e-5)

    def test_statistics_move_only_in_their_own_branch(self) -> None:
        adapter = self.adapter()
        wrapper = adapter.wrapper
        names = ("head.layers.1", "head.layers.4", "head.layers.7")

        def stats(root: nn.Module) -> list[Tensor]:
            return [root.get_submodule(n).running_mean.clone() for n in names]  # type: ignore[union-attr]

        dense, twin = stats(wrapper.model), stats(wrapper.twin_norms)
        x0, x1 = views()
        wrapper.damaged(x1)
        assert all(torch.equal(a, b) for a, b in zip(stats(wrapper.model), dense))
        assert not any(torch.equal(a, b) for a, b in zip(stats(wrapper.twin_norms), twin))
        twin = stats(wrapper.twin_norms)
        wrapper(x0)
        assert all(torch.equal(a, b) for a, b in zip(stats(wrapper.twin_norms), twin))
        assert not any(torch.equal(a, b) for a, b in zip(stats(wrapper.model), dense))

    def test_trains_with_the_loss(self) -> None:
        adapter = self.adapter()
        x0, x1 = views()
        loss = adapter(x0, x1)
        loss.backward()
        head = adapter.wrapper.model.head
        assert isinstance(head, SDCLRProjectionHead)
        assert head.layers[0].weight.grad is not None and torch.isfinite(loss)
