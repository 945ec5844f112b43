"""What channel damage relies on in torch-pruning, pinned: these fail when torch-pruning changes.

:mod:`selfdamage.damage._torch_pruning_graph` is the one module that reads torch-pruning's
dependency graph. The API it calls is pinned by name and signature, its budgeted walk
against torch-pruning's own ``get_pruning_group`` on small models, and the index mapping
through a flatten against numbers worked out by hand.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
import torch_pruning as tp
from torch import Tensor, nn

from selfdamage.damage._slices import HANDLER_NAMES
from selfdamage.damage._torch_pruning_graph import (
    BudgetedGraph,
    CouplingBudgetExceeded,
    build_graph,
    scoring_group,
    traced_groups,
)

BIG = 10**9


def _call(model: nn.Module, inputs: Any) -> Any:
    return model(inputs)


class Residual(nn.Module):
    """A residual addition, a concatenation, a depthwise and a grouped convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.grouped = nn.Conv2d(16, 8, 1, groups=2)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = x + self.body(x)
        x = torch.cat([x, self.depthwise(x)], dim=1)
        return self.head(self.grouped(x).mean((2, 3)))


def _flatten_net() -> nn.Sequential:
    """conv (4 channels, 2x2 outputs on a 4x4 input), BatchNorm, ReLU, flatten, linear."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3)
    )


def _groups(graph: Any) -> list[list[tuple[str, list[int], list[int]]]]:
    roots = (nn.modules.conv._ConvNd, nn.Linear)
    return [
        [(str(item.dep), list(item.idxs), list(item.root_idxs)) for item in group]
        for group in graph.get_all_groups(ignored_layers=[], root_module_types=roots)
    ]


def _traced(model: nn.Module, x: Tensor, graph: tp.DependencyGraph) -> Any:
    with torch.enable_grad():
        return graph.build_dependency(
            model.eval(), example_inputs=x, forward_fn=_call, verbose=False
        )


class TestTheApiWeCall:
    def test_names_and_signatures(self) -> None:
        def params(function: Any) -> list[str]:
            return list(inspect.signature(function).parameters)

        graph = tp.DependencyGraph
        assert params(graph.build_dependency)[:5] == [
            "self",
            "model",
            "example_inputs",
            "forward_fn",
            "output_transform",
        ]
        assert "verbose" in params(graph.build_dependency)
        assert params(graph.get_all_groups) == ["self", "ignored_layers", "root_module_types"]
        assert params(graph.get_pruning_group) == ["self", "module", "pruning_fn", "idxs"]
        for method in ("is_out_channel_pruning_fn", "get_pruner_of_module"):
            assert callable(getattr(graph, method))
        dependency = params(tp.dependency.Dependency.__init__)
        assert dependency == ["self", "trigger", "handler", "source", "target"]
        assert {"module", "grad_fn", "name"} <= set(params(tp.dependency.Node.__init__))
        for method in ("add_dep", "add_and_merge", "has_pruning_op", "items"):
            assert hasattr(tp.dependency.Group, method)

    def test_get_all_groups_asks_get_pruning_group_of_the_graph(self) -> None:
        graph = _traced(_flatten_net(), torch.randn(1, 3, 4, 4), BudgetedGraph(BIG))
        groups = _groups(graph)
        assert graph.most > 0 and len(groups) == 2  # conv and linear, through our walk


class TestTheBudgetedWalk:
    @pytest.mark.parametrize("make", [Residual, _flatten_net], ids=["residual", "flatten"])
    def test_same_groups_as_torch_prunings_own_walk(self, make: Any) -> None:
        torch.manual_seed(0)
        model, x = make(), torch.randn(2, 3, 4, 4)
        reference = _groups(_traced(model, x, tp.DependencyGraph()))
        assert reference and _groups(_traced(model, x, BudgetedGraph(BIG))) == reference

    def test_flatten_maps_each_channel_to_its_four_features(self) -> None:
        model = _flatten_net()
        graph, outputs = build_graph(model.eval(), torch.randn(1, 3, 4, 4), _call)
        position = {m: i for i, m in enumerate(model.modules())}
        groups = {g[0].module: g for g in traced_groups(graph, outputs, position)}
        assert list(groups) == [model[0], model[4]] or list(groups) == [model[4], model[0]]
        conv = [layer for layer in groups[model[0]] if layer.module is model[4]]
        head = [layer for layer in groups[model[4]] if layer.module is model[4]]
        # By hand: channel c of the 2x2 map is features 4c..4c+3 after the flatten.
        assert conv[0].idxs == tuple(range(16)) and not conv[0].output
        assert conv[0].root_idxs == tuple(c for c in range(4) for _ in range(4))
        assert head[0].output and head[0].model_output and head[0].idxs == (0, 1, 2)
        assert groups[model[0]][0].output and not groups[model[0]][0].model_output

    def test_budget_stops_the_group_that_outgrows_it(self) -> None:
        model, x = _flatten_net(), torch.randn(1, 3, 4, 4)
        spent = _traced(model, x, BudgetedGraph(BIG))
        _groups(spent)
        assert spent.most >= 16  # at least the 16 features the flatten maps to
        _groups(_traced(model, x, BudgetedGraph(spent.most)))  # exactly enough
        with pytest.raises(CouplingBudgetExceeded) as info:
            _groups(_traced(model, x, BudgetedGraph(spent.most - 1)))
        assert info.value.root is model[0]


def test_scoring_group_scores_as_torch_prunings_own() -> None:
    torch.manual_seed(0)
    model = _flatten_net()
    graph = _traced(model, torch.randn(1, 3, 4, 4), tp.DependencyGraph())
    first = next(iter(graph.get_all_groups(root_module_types=(nn.Conv2d,))))
    names = {m: n for n, m in model.named_modules()}
    layers = [
        (names[module], module, HANDLER_NAMES[item.dep.handler], item.idxs, item.root_idxs)
        for item in first
        if (module := item.dep.target.module) in names
    ]
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    torch.testing.assert_close(importance(scoring_group(layers)), importance(first))
