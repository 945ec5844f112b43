"""Geometric harmonization against the authors' formulas (MediaBrain-SJTU/Geometric-Harmonization).

Every reference here is computed independently, in float64 NumPy, step by step from the
authors' code as read at commit 9f7057c; each test names the file and function it follows.
"""

from __future__ import annotations

import math
from pathlib import Path

import ddp_harness
import numpy as np
import pytest
import torch

from selfdamage.longtail.harmonization import (
    GeometricHarmonization,
    harmonization_loss,
    sinkhorn,
)
from selfdamage.longtail.simplex_etf import simplex_etf

AUTHORS_TARGET = Path(
    "/work/refs/MediaBrain-SJTU+Geometric-Harmonization/target/100_128_target.npy"
)


def _sphere_scores(n: int, k: int, seed: int) -> torch.Tensor:
    """Unit-norm rows, like the authors' ``F.normalize(z.mm(target.t()), dim=1)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, k, generator=g), dim=1)


def _ref_sinkhorn(out: np.ndarray, eps: float, iters: int, stat: np.ndarray | None) -> np.ndarray:
    """utils.py, ``sinkhorn``: Q is (K, N); r, c column vectors; r first, then c; times N."""
    q = np.exp(out / eps).T
    k, n = q.shape
    mass_k = np.full((k, 1), 1.0 / k) if stat is None else (stat / stat.sum()).reshape(k, 1)
    c = np.full((n, 1), 1.0 / n)
    for _ in range(iters):
        r = mass_k / (q @ c)
        c = (1.0 / n) / (q.T @ r)
    return (r * q * c.T).T * n


def _ref_log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _ref_gh(x: np.ndarray, y: np.ndarray, stat: np.ndarray | None, eps: float, iters: int):
    """utils.py, ``GHLoss.loss`` (gamma = 0.1): the value and its gradient in x and y.

    The assignments are constants (``@torch.no_grad``), so the gradient of
    ``-mean(sum(q * log_softmax(v / g)))`` in ``v`` is ``(softmax(v / g) - q) / (g N)``.
    """
    gamma, n = 0.1, x.shape[0]
    q_x, q_y = _ref_sinkhorn(x, eps, iters, stat), _ref_sinkhorn(y, eps, iters, stat)
    ls_x, ls_y = _ref_log_softmax(x / gamma), _ref_log_softmax(y / gamma)
    loss = -(q_x * ls_y).sum(1).mean() - (q_y * ls_x).sum(1).mean()
    grad_x = (np.exp(ls_x) - q_y) / (gamma * n)
    grad_y = (np.exp(ls_y) - q_x) / (gamma * n)
    return loss, grad_x, grad_y


def _ref_scores_backward(z: np.ndarray, target: np.ndarray, grad_l: np.ndarray) -> np.ndarray:
    """Chain rule through ``l = normalize(z @ M^T)``: ``dl/ds = (I - l l^T) / |s|``."""
    s = z @ target.T
    norm = np.linalg.norm(s, axis=1, keepdims=True)
    ell = s / norm
    grad_s = (grad_l - ell * (ell * grad_l).sum(1, keepdims=True)) / norm
    return grad_s @ target


class TestSimplexETF:
    """target/gen_target.py, ``simplex_equiangular_tight_frame``."""

    @pytest.mark.parametrize(("k", "d"), [(2, 2), (5, 8), (10, 10), (100, 128)])
    def test_unit_norms_and_equal_angles(self, k: int, d: int) -> None:
        m = simplex_etf(k, d).double()
        gram = m @ m.T
        expected = torch.full((k, k), -1.0 / (k - 1), dtype=torch.float64)
        expected.fill_diagonal_(1.0)
        torch.testing.assert_close(gram, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(m.sum(0), torch.zeros(d, dtype=torch.float64), atol=1e-5, rtol=0)

    def test_is_their_construction_on_the_same_gaussian(self) -> None:
        # sqrt(k/(k-1)) (I - 11^T/k) polar(A), the polar factor here by another route:
        # (A A^T)^(-1/2) A, from an eigendecomposition instead of an SVD.
        k, d, seed = 6, 9, 3
        a = torch.randn(k, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        a = a.numpy()
        w, v = np.linalg.eigh(a @ a.T)
        polar = v @ np.diag(w**-0.5) @ v.T @ a
        expected = math.sqrt(k / (k - 1)) * (np.eye(k) - np.ones((k, k)) / k) @ polar
        np.testing.assert_allclose(simplex_etf(k, d, seed=seed).numpy(), expected, atol=1e-6)

    def test_seed_fixes_the_frame_and_only_rotates_it(self) -> None:
        assert torch.equal(simplex_etf(5, 8, seed=1), simplex_etf(5, 8, seed=1))
        a, b = simplex_etf(5, 8, seed=1), simplex_etf(5, 8, seed=2)
        assert not torch.allclose(a, b)
        torch.testing.assert_close(a @ a.T, b @ b.T, atol=1e-6, rtol=0)

    @pytest.mark.skipif(not AUTHORS_TARGET.exists(), reason="authors' checkout not here")
    def test_same_geometry_as_their_shipped_file(self) -> None:
        theirs = torch.from_numpy(np.load(AUTHORS_TARGET))
        ours = simplex_etf(100, 128).double()
        torch.testing.assert_close(ours @ ours.T, theirs @ theirs.T, atol=1e-6, rtol=0)

    @pytest.mark.parametrize(
        ("k", "d", "match"),
        [(5, 4, "num_vertices must be <= dim"), (1, 4, "num_vertices must be >= 2")],
    )
    def test_rejects_sizes_without_an_etf(self, k: int, d: int, match: str) -> None:
        # k = d + 1 passes their assert but gives no ETF: the polar factor of a (d+1, d)
        # Gaussian has orthonormal columns, not rows.
        with pytest.raises(ValueError, match=match):
            simplex_etf(k, d)


class TestSinkhorn:
    """utils.py, ``sinkhorn``."""

    @pytest.mark.parametrize("prior", [None, [0.5, 0.2, 0.2, 0.1, 0.0], [3.0, 1.0, 1.0, 1.0, 2.0]])
    def test_matches_their_iteration(self, prior: list[float] | None) -> None:
        out = _sphere_scores(12, 5, seed=0)
        stat = None if prior is None else np.array(prior)
        expected = _ref_sinkhorn(out.double().numpy(), 0.05, 300, stat)
        prior_t = None if prior is None else torch.tensor(prior)
        q = sinkhorn(out, prior_t, epsilon=0.05, iterations=300)
        np.testing.assert_allclose(q.numpy(), expected, rtol=1e-4, atol=1e-6)

    def test_few_iterations_match_too(self) -> None:
        # The max shift is exact at any iteration count, not only at convergence.
        out = _sphere_scores(7, 3, seed=1) * 0.7
        expected = _ref_sinkhorn(out.double().numpy(), 0.05, 2, None)
        q = sinkhorn(out, epsilon=0.05, iterations=2)
        np.testing.assert_allclose(q.numpy(), expected, rtol=1e-4, atol=1e-7)

    def test_marginals(self) -> None:
        out = _sphere_scores(40, 4, seed=2)
        prior = torch.tensor([0.4, 0.3, 0.2, 0.1])
        q = sinkhorn(out, prior * 10, epsilon=0.05, iterations=300)
        torch.testing.assert_close(q.sum(1), torch.ones(40), atol=1e-5, rtol=0)
        torch.testing.assert_close(q.sum(0), 40 * prior, atol=1e-2, rtol=0)

    def test_no_gradient(self) -> None:
        out = _sphere_scores(6, 3, seed=3).requires_grad_()
        assert not sinkhorn(out, iterations=3).requires_grad

    @pytest.mark.parametrize(
        "logits",
        [
            [[0.0, 0.0], [-6.0, -6.0]],  # a row 120 epsilon below the other
            [[0.0, -6.0], [0.0, -6.0]],  # a column 120 epsilon below the other
        ],
    )
    def test_rows_and_columns_far_below_the_max(self, logits: list[list[float]]) -> None:
        # Each sample scores both prototypes alike, or both samples score them alike: by
        # symmetry, every sample gives half to each prototype (was NaN: exp underflowed).
        q = sinkhorn(torch.tensor(logits))
        torch.testing.assert_close(q, torch.full((2, 2), 0.5), atol=1e-6, rtol=0)

    def test_raw_logits_converge_to_the_float64_iteration(self) -> None:
        # Unnormalised scores spanning ~300 epsilon; in float64 their kernel is finite,
        # so the authors' iteration runs as is. 1000 iterations: converged, so the start
        # of the far rows (exp(-50) / N here) no longer shows.
        torch.manual_seed(0)
        logits = torch.randn(64, 10) * 2
        expected = _ref_sinkhorn(logits.double().numpy(), 0.05, 1000, None)
        q = sinkhorn(logits, iterations=1000)
        np.testing.assert_allclose(q.numpy(), expected, rtol=0, atol=1e-5)
        q = sinkhorn(logits)  # the authors' 300: finite, rows 1, columns near N / K
        assert torch.isfinite(q).all()
        torch.testing.assert_close(q.sum(1), torch.ones(64), atol=1e-5, rtol=0)
        torch.testing.assert_close(q.sum(0), torch.full((10,), 6.4), atol=0.05, rtol=0)

    def test_raw_logits_with_an_empty_prototype(self) -> None:
        # A prototype without mass gets none, and no row is left without a column.
        logits = torch.randn(40, 5, generator=torch.Generator().manual_seed(1)) * 2
        prior = [0.3, 0.0, 0.2, 0.1, 0.4]
        expected = _ref_sinkhorn(logits.double().numpy(), 0.05, 300, np.array(prior))
        q = sinkhorn(logits, torch.tensor(prior))
        np.testing.assert_allclose(q.numpy(), expected, rtol=0, atol=1e-5)
        assert (q[:, 1] == 0).all()
        torch.testing.assert_close(q.sum(0), 40 * torch.tensor(prior), atol=1e-3, rtol=0)

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"iterations": 0}, ValueError, "iterations must be >= 1, got iterations=0."),
            ({"iterations": 2.0}, TypeError, "iterations must be an int, got iterations=2.0."),
            ({"epsilon": 0.0}, ValueError, "epsilon must be > 0.0, got epsilon=0.0."),
            ({"epsilon": -0.1}, ValueError, "epsilon must be > 0.0, got epsilon=-0.1."),
            (
                {"epsilon": float("nan")},
                ValueError,
                "epsilon must be a finite number > 0.0, got epsilon=nan.",
            ),
            (
                {"prior": torch.zeros(2)},
                ValueError,
                "prior must be finite and non-negative with a positive sum (it is normalised "
                "here), got prior=tensor([0., 0.]).",
            ),
            (
                {"prior": torch.tensor([1.0, -0.5])},
                ValueError,
                "prior must be finite and non-negative with a positive sum (it is normalised "
                "here), got prior=tensor([ 1.0000, -0.5000]).",
            ),
            (
                {"prior": torch.ones(3)},
                ValueError,
                "prior must have shape (2,), one mass per prototype (column of the scores), "
                "got shape (3,).",
            ),
            (
                {"prior": [0.5, 0.5]},
                TypeError,
                "prior must be a real tensor of shape (2,), one mass per prototype, or None "
                "for uniform, got list.",
            ),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], error: type, message: str) -> None:
        # The same words as GeometricHarmonization's for its settings; both functions.
        logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        kwargs = dict(kwargs)
        prior = kwargs.pop("prior", None)
        with pytest.raises(error) as raised:
            sinkhorn(logits, prior, **kwargs)  # type: ignore[arg-type]
        assert str(raised.value) == message
        with pytest.raises(error) as raised:
            harmonization_loss(logits, logits, prior, **kwargs)  # type: ignore[arg-type]
        assert str(raised.value) == message


class TestHarmonizationLoss:
    """utils.py, ``GHLoss.loss`` (with ``sinkhorn``, l = 0.05, gamma = 0.1)."""

    @pytest.mark.parametrize("prior", [None, [0.4, 0.3, 0.2, 0.05, 0.05]])
    def test_value_and_gradient(self, prior: list[float] | None) -> None:
        x, y = _sphere_scores(10, 5, seed=4), _sphere_scores(10, 5, seed=5)
        stat = None if prior is None else np.array(prior)
        loss_ref, gx_ref, gy_ref = _ref_gh(x.double().numpy(), y.double().numpy(), stat, 0.05, 300)
        x.requires_grad_(), y.requires_grad_()
        prior_t = None if prior is None else torch.tensor(prior)
        loss = harmonization_loss(x, y, prior_t, epsilon=0.05, iterations=300, temperature=0.1)
        loss.backward()
        assert loss.item() == pytest.approx(loss_ref, rel=1e-5)
        np.testing.assert_allclose(x.grad.numpy(), gx_ref, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(y.grad.numpy(), gy_ref, rtol=1e-4, atol=1e-6)

    @pytest.mark.parametrize(
        ("temperature", "error", "message"),
        [
            (0.0, ValueError, "temperature must be > 0.0, got temperature=0.0."),
            (-1.0, ValueError, "temperature must be > 0.0, got temperature=-1.0."),
            ("0.1", TypeError, "temperature must be a float, got temperature='0.1'."),
        ],
    )
    def test_bad_temperature(self, temperature: object, error: type, message: str) -> None:
        # As GeometricHarmonization(temperature=...) says; was NaN (0) or a number (-1).
        logits = _sphere_scores(4, 2, seed=0)
        with pytest.raises(error) as raised:
            harmonization_loss(logits, logits, temperature=temperature)  # type: ignore[arg-type]
        assert str(raised.value) == message


def _gh(**kwargs: object) -> GeometricHarmonization:
    defaults: dict[str, object] = {"dim": 8, "num_prototypes": 4, "num_samples": 6}
    return GeometricHarmonization(**{**defaults, **kwargs})  # type: ignore[arg-type]


class TestGeometricHarmonization:
    """train_cifar.py, ``ssl_training`` (branch ``simclr_GH`` / ``sdclr_GH``)."""

    def test_defaults_are_the_authors(self) -> None:
        gh = GeometricHarmonization(num_samples=3)
        assert gh.target.shape == (100, 128)  # --target_dim 100, 128-d projection
        assert (gh.warmup_epochs, gh.ramp_epochs) == (500, 10)  # README --warm_up, GH_warm_up
        assert (gh.sinkhorn_iterations, gh.epsilon, gh.temperature) == (300, 0.05, 0.1)
        assert (gh.weight, gh.momentum, gh.warmup_momentum, gh.prior_every) == (1, 0.999, 0.9, 20)

    def test_weight_schedule(self) -> None:
        # w = (epoch + 1 - warm_up) / GH_warm_up up to 1; GH only for epoch + 1 > warm_up.
        warm_up, ramp = 5, 10
        gh = _gh(warmup_epochs=warm_up, ramp_epochs=ramp, weight=2.0)
        for epoch in range(20):
            gh.set_epoch(epoch)
            expected = 0.0 if epoch + 1 <= warm_up else min(1.0, (epoch + 1 - warm_up) / ramp)
            assert gh.current_weight == pytest.approx(2.0 * expected)

    def test_zero_in_warm_up(self) -> None:
        gh = _gh(warmup_epochs=3)
        z = torch.randn(4, 8, requires_grad=True)
        gh.set_epoch(2)
        loss = gh(z, z)
        assert loss.item() == 0.0 and not loss.requires_grad

    def test_loss_and_gradient_on_projections(self) -> None:
        gh = _gh(warmup_epochs=0, ramp_epochs=4)
        gh.prior.copy_(torch.tensor([0.5, 0.25, 0.125, 0.125]))
        gh.set_epoch(1)  # weight (1 + 1 - 0) / 4 = 0.5
        g = torch.Generator().manual_seed(6)
        z0, z1 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
        target, stat = gh.target.double().numpy(), gh.prior.double().numpy()

        def scores(z: torch.Tensor) -> np.ndarray:
            s = z.double().numpy() @ target.T
            return s / np.linalg.norm(s, axis=1, keepdims=True)

        loss_ref, g0, g1 = _ref_gh(scores(z0), scores(z1), stat, 0.05, 300)
        z0.requires_grad_(), z1.requires_grad_()
        loss = gh(z0, z1)
        loss.backward()
        assert loss.item() == pytest.approx(0.5 * loss_ref, rel=1e-5)
        grad0 = 0.5 * _ref_scores_backward(z0.detach().double().numpy(), target, g0)
        grad1 = 0.5 * _ref_scores_backward(z1.detach().double().numpy(), target, g1)
        np.testing.assert_allclose(z0.grad.numpy(), grad0, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(z1.grad.numpy(), grad1, rtol=1e-4, atol=1e-6)

    def test_twin_composition_is_their_two_branch_gradient(self) -> None:
        # sdclr_GH: the dense step adds GH(t(f1), t(f2 no grad)), the pruned step adds
        # GH(t(f1 detached), t(f2)), both with w and the same pi. One call on both
        # branches gives the same gradient (the loss value is counted once, not twice).
        gh = _gh(warmup_epochs=0, ramp_epochs=0)
        f1, f2 = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
        (gh(f1, f2.detach()) + gh(f1.detach(), f2)).backward()
        theirs = f1.grad.clone(), f2.grad.clone()
        f1.grad, f2.grad = None, None
        gh(f1, f2).backward()
        torch.testing.assert_close((f1.grad, f2.grad), theirs, atol=1e-7, rtol=1e-5)

    def test_memory_and_prior_follow_their_loop(self) -> None:
        # The per-sample loop after each step, then the pi estimate in refresh epochs.
        warm_up, every, n_data = 3, 4, 6
        gh = _gh(warmup_epochs=warm_up, prior_every=every, num_samples=n_data)
        target = gh.target.double().numpy()
        memory, pi = np.zeros((n_data, 4)), np.full(4, 0.25)
        g = torch.Generator().manual_seed(7)
        for epoch in range(9):
            gh.set_epoch(epoch)
            beta = 0.999 if epoch >= warm_up else 0.9
            for _ in range(2):  # two steps of three samples
                index = torch.randperm(n_data, generator=g)[:3]
                z = torch.randn(3, 8, generator=g)
                gh.update(z, index)
                s = z.double().numpy() @ target.T
                logit = s / np.linalg.norm(s, axis=1, keepdims=True)
                for count in range(3):
                    i = int(index[count])
                    if epoch == 0:
                        memory[i] += logit[count]
                    else:
                        memory[i] = beta * memory[i] + (1.0 - beta) * logit[count]
                if ((epoch + 1) % every == 0 or epoch + 1 == warm_up) and epoch + 1 >= warm_up:
                    preds = memory.argmax(1)
                    counts = np.array([(preds == c).sum() for c in range(4)])
                    pi = counts / counts.sum()
                np.testing.assert_allclose(gh.memory.numpy(), memory, atol=1e-6)
                np.testing.assert_allclose(gh.prior.numpy(), pi, atol=1e-7)

    def test_state_dict_round_trip_resumes_identically(self) -> None:
        def run(gh: GeometricHarmonization, epochs: range) -> list[float]:
            losses = []
            for epoch in epochs:
                gh.set_epoch(epoch)
                g = torch.Generator().manual_seed(epoch)
                z0, z1 = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
                losses.append(gh(z0, z1).item())
                gh.update(z0, torch.randperm(6, generator=g)[:3])
            return losses

        kwargs = {"warmup_epochs": 2, "ramp_epochs": 2, "prior_every": 1}
        straight = _gh(**kwargs)
        expected = run(straight, range(6))
        first = _gh(**kwargs)
        head = run(first, range(3))
        resumed = _gh(seed=99, **kwargs)  # another frame until the state is loaded
        resumed.load_state_dict(first.state_dict())
        assert resumed.epoch == 2
        assert head + run(resumed, range(3, 6)) == expected
        for name, buffer in straight.state_dict().items():
            if isinstance(buffer, torch.Tensor):
                assert torch.equal(resumed.state_dict()[name], buffer), name

    def test_scaled_to_keeps_their_fractions(self) -> None:
        gh = GeometricHarmonization.scaled_to(1000, num_samples=2)
        assert (gh.warmup_epochs, gh.ramp_epochs, gh.prior_every) == (500, 10, 20)
        gh = GeometricHarmonization.scaled_to(40, num_samples=2, ramp_epochs=3)
        assert (gh.warmup_epochs, gh.ramp_epochs, gh.prior_every) == (20, 3, 1)

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"num_prototypes": 9}, ValueError, r"num_prototypes must be in \[2, 8\]"),
            ({"epsilon": 0.0}, ValueError, "epsilon must be > 0.0"),
            ({"momentum": 1.5}, ValueError, "momentum must be in"),
            ({"sinkhorn_iterations": 0}, ValueError, "sinkhorn_iterations must be >= 1"),
            ({"num_samples": 2.5}, TypeError, "num_samples must be an int"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], error: type, match: str) -> None:
        with pytest.raises(error, match=match):
            _gh(**kwargs)

    def test_bad_inputs(self) -> None:
        gh = _gh(warmup_epochs=0)
        with pytest.raises(ValueError, match=r"z0 must be projections of shape \(N, 8\)"):
            gh(torch.randn(3, 7), torch.randn(3, 7))
        with pytest.raises(ValueError, match="z0 and z1 must have the same shape"):
            gh(torch.randn(3, 8), torch.randn(2, 8))
        with pytest.raises(ValueError, match="indices must be an integer tensor of shape"):
            gh.update(torch.randn(3, 8), torch.zeros(3))
        with pytest.raises(ValueError, match=r"got dtype=torch\.bool"):
            gh.update(torch.randn(3, 8), torch.tensor([True, False, True]))
        assert gh.memory.abs().sum() == 0  # nothing recorded
        with pytest.raises(ValueError, match="epoch must be >= 0"):
            gh.set_epoch(-1)


def _ddp_update(rank: int, world: int, z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    gh = _gh(warmup_epochs=1, prior_every=1)
    rows = slice(rank * 2, rank * 2 + 2)
    gh.update(z[rows], index[rows])
    return gh.memory


@pytest.mark.slow
def test_ddp_update_sees_every_rank(tmp_path: Path) -> None:
    # train_imagenet_places.py all-reduces the memory over ranks; here scores are gathered.
    z, index = torch.randn(4, 8), torch.tensor([5, 0, 3, 1])
    single = _gh(warmup_epochs=1, prior_every=1)
    single.update(z, index)
    for memory in ddp_harness.run(_ddp_update, tmp_path, z, index):
        torch.testing.assert_close(memory, single.memory)
