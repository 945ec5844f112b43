"""DINOAdapter against lightly's DINO example and against a twin built by hand."""

from __future__ import annotations

import copy
import io
import re
import warnings

import pytest
import torch
import torchvision
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from selfdamage import ChannelDamage
from selfdamage.adapters import DINOAdapter

from .helpers import (
    FEATURES,
    assert_grads_match_plain,
    assert_twin_pass_moves_only_twin_stats,
    dino_cross_entropy,
    expected_shared_grads,
    hand_twin,
    tiny_backbone,
    views,
)

# lightly's DINOProjectionHead, built here for the references, uses torch's deprecated
# weight_norm; the adapter silences that warning for its own default heads.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated")


class LightlyDINO(nn.Module):
    """The model of lightly's examples/pytorch/dino.py, at our feature width."""

    def __init__(self, backbone: nn.Module, input_dim: int) -> None:
        super().__init__()
        self.student_backbone = backbone
        self.student_head = DINOProjectionHead(input_dim, 512, 64, 2048, freeze_last_layer=1)
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = DINOProjectionHead(input_dim, 512, 64, 2048)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

    def forward(self, x: Tensor) -> Tensor:
        y = self.student_backbone(x).flatten(start_dim=1)
        return self.student_head(y)

    def forward_teacher(self, x: Tensor) -> Tensor:
        y = self.teacher_backbone(x).flatten(start_dim=1)
        return self.teacher_head(y)


def lightly_dino(adapter: DINOAdapter) -> LightlyDINO:
    """lightly's model with the adapter's weights (its teacher head starts as the student's)."""
    reference = LightlyDINO(copy.deepcopy(adapter.backbone), FEATURES)
    head = adapter.wrapper.model.head.state_dict()
    reference.student_head.load_state_dict(head)
    reference.teacher_head.load_state_dict(head)
    return reference


def adapter_copy(adapter: DINOAdapter) -> DINOAdapter:
    """A deep copy: a bare copy of the encoder fails after a forward with gradient."""
    return copy.deepcopy(adapter)


class TestDINOAdapter:
    def test_baseline_reproduces_lightly_example(self) -> None:
        torch.manual_seed(0)
        adapter = DINOAdapter(tiny_backbone(), FEATURES, baseline=True)
        reference = lightly_dino(adapter)
        criterion = DINOLoss(output_dim=2048, warmup_teacher_temp_epochs=5)
        optimizers = [torch.optim.Adam(m.parameters(), lr=0.001) for m in (adapter, reference)]
        for step, epoch in enumerate([0, 0, 1]):  # the last layer is frozen in epoch 0
            m = cosine_schedule(step, 3, 0.9, 1.0)  # a low momentum, so the EMA shows
            adapter.update_momentum(m)
            update_momentum(reference.student_backbone, reference.teacher_backbone, m=m)
            update_momentum(reference.student_head, reference.teacher_head, m=m)
            x0, x1 = views(seed=step)
            loss = adapter(x0, x1, epoch=epoch)
            teacher_out = [reference.forward_teacher(x) for x in (x0, x1)]
            student_out = [reference(x) for x in (x0, x1)]
            expected = criterion(teacher_out, student_out, epoch=epoch)
            torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
            for optimizer, value in zip(optimizers, (loss, expected)):
                optimizer.zero_grad()
                value.backward()
            adapter.cancel_last_layer_gradients(epoch)
            reference.student_head.cancel_last_layer_gradients(current_epoch=epoch)
            for optimizer in optimizers:
                optimizer.step()
        torch.testing.assert_close(adapter.loss.center, criterion.center, rtol=1e-5, atol=1e-6)
        student, teacher = adapter.wrapper.model, adapter.momentum_encoder
        pairs = [
            (student.backbone, reference.student_backbone),
            (student.head, reference.student_head),
            (teacher.backbone, reference.teacher_backbone),
            (teacher.head, reference.teacher_head),
        ]
        for ours, theirs in pairs:
            for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)

    def test_undamaged_fresh_twin_is_a_plain_dino_step(self) -> None:
        torch.manual_seed(0)
        adapter = DINOAdapter(tiny_backbone(), FEATURES, 0.0)
        reference = lightly_dino(adapter)
        x0, x1 = views(seed=3)
        loss = adapter(x0, x1)
        with torch.no_grad():
            t0, t1 = reference.forward_teacher(x0), reference.forward_teacher(x1)
        s0, s1 = reference(x0), reference(x1)
        expected = dino_cross_entropy([t0, t1], [s0, s1], center=torch.zeros(2048))
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        loss.backward()
        expected.backward()
        plain = adapter_copy(adapter).wrapper.model  # the reference's gradients, our names
        for (_, ours), (_, theirs) in zip(
            plain.named_parameters(),
            [
                *reference.student_backbone.named_parameters(),
                *reference.student_head.named_parameters(),
            ],
        ):
            ours.grad = theirs.grad
        assert_grads_match_plain(adapter.wrapper, plain)
        # The center moved from 0 towards the teacher outputs' mean only.
        center = 0.1 * torch.cat([t0, t1]).mean(0)
        torch.testing.assert_close(adapter.loss.center.view(-1), center, rtol=1e-5, atol=1e-7)

    def test_damaged_step_matches_hand_built_twin(self) -> None:
        torch.manual_seed(0)
        adapter = DINOAdapter(tiny_backbone(), FEATURES, 0.5)
        optimizer = torch.optim.SGD(adapter.parameters(), lr=0.5)
        adapter.update_momentum(0.5)
        adapter(*views(seed=1)).backward()  # one step, so twin and dense BN state differ
        optimizer.step()
        optimizer.zero_grad()

        copied = adapter_copy(adapter)
        dense, twin = copied.wrapper.model, hand_twin(copied.wrapper)
        teacher, center = copied.momentum_encoder, adapter.loss.center.clone()
        x0, x1 = views(seed=2)
        loss = adapter(x0, x1)
        with torch.no_grad():
            t0, t1 = teacher(x0), teacher(x1)
        s0, s1 = dense(x0), twin(x1)
        expected = dino_cross_entropy([t0, t1], [s0, s1], center.view(-1))
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)

        loss.backward()
        expected.backward()
        grads = expected_shared_grads(adapter.wrapper, dense, twin)
        for name, param in adapter.wrapper.named_parameters():
            if param.requires_grad:  # not the head's weight_g (norm_last_layer=True)
                torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
        for name in ("backbone.0.weight", "head.layers.0.weight", "head.last_layer.weight_v"):
            assert dense.get_parameter(name).grad.abs().sum() > 0, name  # through both branches
            assert twin.get_parameter(name).grad.abs().sum() > 0, name
        # The center follows the teacher outputs only: the students do not feed it.
        expected_center = 0.9 * center.view(-1) + 0.1 * torch.cat([t0, t1]).mean(0)
        torch.testing.assert_close(adapter.loss.center.view(-1), expected_center)
        # Each branch updated its own running statistics, and only its own.
        for name, buffer in dense.named_buffers():
            torch.testing.assert_close(adapter.wrapper.model.get_buffer(name), buffer)
            torch.testing.assert_close(
                adapter.wrapper.twin_norms.get_buffer(name), twin.get_buffer(name)
            )
        assert_twin_pass_moves_only_twin_stats(adapter.wrapper, x1)

    def test_teacher_head_is_built_anew_with_the_students_weights(self) -> None:
        adapter = DINOAdapter(tiny_backbone(), FEATURES)
        head, teacher = adapter.wrapper.model.head, adapter.momentum_encoder.head
        assert type(teacher) is DINOProjectionHead and teacher is not head
        assert teacher.freeze_last_layer == head.freeze_last_layer == 1
        for (name, a), b in zip(head.state_dict().items(), teacher.state_dict().values()):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name
        assert not any(p.requires_grad for p in adapter.momentum_encoder.parameters())

    def test_a_given_weight_normed_head_is_copied_for_the_teacher(self) -> None:
        head = DINOProjectionHead(FEATURES, 32, 8, 64)
        head(torch.randn(2, FEATURES))  # its computed weight now carries a graph
        adapter = DINOAdapter(tiny_backbone(), FEATURES, head=head)
        assert adapter.wrapper.model.head is head and adapter.loss.center.shape == (1, 1, 64)
        teacher = adapter.momentum_encoder.head
        for a, b in zip(head.state_dict().values(), teacher.state_dict().values()):
            assert torch.equal(a, b)

    def test_deepcopy_and_pickle(self) -> None:
        torch.manual_seed(0)
        adapter = DINOAdapter(tiny_backbone(), FEATURES, 0.5)
        adapter(*views()).backward()  # the head's computed weight carries a graph
        with pytest.raises(RuntimeError, match="weight_norm"):
            copy.deepcopy(adapter.wrapper.model)  # as documented: copy the adapter instead
        buffer = io.BytesIO()
        torch.save(adapter, buffer)
        buffer.seek(0)
        copies = [copy.deepcopy(adapter), torch.load(buffer, weights_only=False)]
        x0, x1 = views(seed=1)
        for model in (adapter, *copies):
            model.eval()
        with torch.no_grad():
            expected = adapter(x0, x1)
            for clone in copies:
                torch.testing.assert_close(clone(x0, x1), expected, rtol=0, atol=0)

    def test_state_dict_round_trip_keeps_the_center(self) -> None:
        torch.manual_seed(0)
        adapter = DINOAdapter(tiny_backbone(), FEATURES, 0.5)
        optimizer = torch.optim.SGD(adapter.parameters(), lr=0.1)
        for step in range(2):
            adapter.update_momentum(0.9)
            adapter(*views(seed=step)).backward()
            optimizer.step()
            optimizer.zero_grad()
        state = adapter.state_dict()
        assert "loss.center" in state and state["loss.center"].abs().sum() > 0
        torch.manual_seed(1)
        fresh = DINOAdapter(tiny_backbone(), FEATURES, 0.5)
        fresh.load_state_dict(state)
        x0, x1 = views(seed=5)
        torch.testing.assert_close(fresh(x0, x1), adapter(x0, x1), rtol=0, atol=0)
        torch.testing.assert_close(fresh.loss.center, adapter.loss.center, rtol=0, atol=0)

    def test_epoch_drives_the_teacher_temperature_warm_up(self) -> None:
        torch.manual_seed(0)
        loss = DINOLoss(2048, warmup_teacher_temp=0.08, warmup_teacher_temp_epochs=3)
        adapter = DINOAdapter(tiny_backbone(), FEATURES, 0.5, loss=loss)
        adapter.eval()  # running statistics: every call sees the same model
        x0, x1 = views()
        with torch.no_grad():
            t0, t1 = adapter.momentum_encoder(x0), adapter.momentum_encoder(x1)
            s0, s1 = adapter.wrapper(x0), adapter.wrapper.damaged(x1)
            zero = torch.zeros(2048)
            for epoch, temp in [(0, 0.08), (1, 0.06), (5, 0.04), (None, 0.04)]:
                adapter.loss.center.zero_()
                expected = dino_cross_entropy([t0, t1], [s0, s1], zero, teacher_temp=temp)
                got = adapter(x0, x1, epoch=epoch)
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=str(epoch))
        # The default loss (lightly's example) warms up from 0.04 to 0.04: epoch is moot.
        default = DINOAdapter(tiny_backbone(), FEATURES, 0.5).eval()
        with torch.no_grad():
            warm = default(x0, x1, epoch=0)
            default.loss.center.zero_()  # the call moved it
            torch.testing.assert_close(warm, default(x0, x1), rtol=0, atol=0)

    @pytest.mark.parametrize(
        ("epoch", "error", "message"),
        [
            (-1, ValueError, "epoch must be >= 0, got epoch=-1"),
            (0.5, TypeError, "epoch must be an int"),
        ],
    )
    def test_bad_epoch(self, epoch: object, error: type[Exception], message: str) -> None:
        adapter = DINOAdapter(tiny_backbone(), FEATURES)
        with pytest.raises(error, match=re.escape(message)):
            adapter(*views(), epoch=epoch)  # type: ignore[arg-type]
        with pytest.raises(error, match=re.escape(message)):
            adapter.cancel_last_layer_gradients(epoch)  # type: ignore[arg-type]

    def test_cancel_last_layer_gradients_in_the_first_epoch(self) -> None:
        adapter = DINOAdapter(tiny_backbone(), FEATURES, 0.5)
        last = list(adapter.wrapper.model.head.last_layer.parameters())
        for epoch, frozen in [(0, True), (1, False)]:
            adapter.zero_grad()
            adapter(*views()).backward()
            adapter.cancel_last_layer_gradients(epoch)
            assert all(p.grad is None for p in last) == frozen
            assert adapter.wrapper.model.head.layers[0].weight.grad is not None
        custom = DINOAdapter(tiny_backbone(), FEATURES, head=nn.Linear(FEATURES, 8))
        with pytest.raises(TypeError, match="needs a DINOProjectionHead, but the head is a Linear"):
            custom.cancel_last_layer_gradients(0)

    def test_default_setup_warns_nothing_and_never_prunes_the_last_layer(self) -> None:
        resnet = torchvision.models.resnet18()
        backbone = nn.Sequential(*list(resnet.children())[:-1])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no torch weight_norm FutureWarning either
            adapter = DINOAdapter(backbone, 512, 0.9)
        assert all(name.startswith("backbone.") for name, _ in adapter.wrapper.named_masks())
        with pytest.warns(
            UserWarning, match=r"'head\.last_layer\.weight' \(its weight is computed"
        ):
            adapter = DINOAdapter(tiny_backbone(), FEATURES, 0.5, prunable=(nn.Conv2d, nn.Linear))
        names = [name for name, _ in adapter.wrapper.named_masks()]
        assert "head.layers.0.weight" in names and not any("last_layer" in n for n in names)

    def test_channel_damage_runs_the_compact_twin(self) -> None:
        damage = ChannelDamage(0.5, example_inputs=torch.randn(2, 3, 12, 12))
        with warnings.catch_warnings():
            warnings.filterwarnings("error", category=RuntimeWarning)  # no compact fallback
            adapter = DINOAdapter(tiny_backbone(), FEATURES, damage=damage)
            adapter(*views()).backward()
            adapter.refresh_mask()
        assert damage.compact_active and damage.fallback_reason is None
        assert torch.isfinite(adapter(*views()))

    def test_loss_must_fit_the_head(self) -> None:
        with pytest.raises(ValueError, match=r"DINOLoss\(output_dim=2048\)"):
            DINOAdapter(tiny_backbone(), FEATURES, loss=DINOLoss(128))
        with pytest.raises(ValueError, match=r"Pass loss=DINOLoss\(output_dim=D\)"):
            DINOAdapter(tiny_backbone(), FEATURES, head=nn.Identity())
