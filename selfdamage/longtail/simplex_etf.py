"""The simplex equiangular tight frame: geometric harmonization's fixed target geometry."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from selfdamage._checks import check_int

__all__ = ["simplex_etf"]


def simplex_etf(num_vertices: int, dim: int, *, seed: int = 0) -> Tensor:
    """``num_vertices`` unit vectors in ``dim`` dimensions, every pair at the same angle.

    A simplex equiangular tight frame (ETF): the rows ``m_i`` have ``|m_i| = 1`` and
    ``<m_i, m_j> = -1/(K-1)`` for ``i != j`` (``K = num_vertices``), the most spread-out
    configuration of ``K`` points on the sphere, and they sum to zero. It is the target
    geometry of geometric harmonization [0], built as the authors build it (their
    ``target/gen_target.py``, ``simplex_equiangular_tight_frame``)::

        A ~ N(0, 1) of shape (K, dim)
        U = polar factor of A          # A = U P, U with orthonormal rows
        M = sqrt(K / (K - 1)) * (I - 11^T / K) @ U

    so ``M M^T = K/(K-1) (I - 11^T/K)``. The authors draw ``A`` from an unseeded NumPy
    generator and ship the result as a file; here ``A`` comes from a seeded
    ``torch.Generator``, so the same ``seed`` gives the same frame on every machine. Any
    two frames differ by a rotation only: the geometry (the Gram matrix) is the same.
    Computed in float64, returned in float32 (the authors cast it with ``.float()``).

    The construction needs ``K <= dim``: the authors' check allows ``K = dim + 1``, but
    there the polar factor has orthonormal columns, not rows, and ``M`` is not equiangular.

    - [0] Geometric Harmonization, NeurIPS 2023, https://arxiv.org/abs/2310.17622

    Args:
        num_vertices: ``K``, the number of directions, at least 2 (the authors: 100).
        dim: The dimension of the space, at least ``num_vertices`` (the authors: 128,
            the projection's width).
        seed: Seed of the Gaussian draw.

    Returns:
        The frame, shape ``(num_vertices, dim)``, float32, on the CPU.

    Raises:
        TypeError: If an argument is not an int.
        ValueError: If ``num_vertices < 2`` or ``num_vertices > dim``.

    Examples:
        >>> m = simplex_etf(4, 8)
        >>> m.shape
        torch.Size([4, 8])
        >>> (m @ m.T).mul(3).round()  # K - 1 = 3: 3 on the diagonal, -1 elsewhere
        tensor([[ 3., -1., -1., -1.],
                [-1.,  3., -1., -1.],
                [-1., -1.,  3., -1.],
                [-1., -1., -1.,  3.]])
        >>> torch.equal(simplex_etf(4, 8), m)  # the same seed, the same frame
        True
    """
    k = check_int("num_vertices", num_vertices, 2)
    dim = check_int("dim", dim, 1)
    seed = check_int("seed", seed)
    if k > dim:
        raise ValueError(
            f"num_vertices must be <= dim, got num_vertices={k} with dim={dim}. A simplex "
            f"ETF of {k} vertices built this way needs {k} dimensions: raise dim or lower "
            "num_vertices."
        )
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(k, dim, generator=generator, dtype=torch.float64)
    left, _, right_t = torch.linalg.svd(gaussian, full_matrices=False)
    polar = left @ right_t  # the orthonormal-row factor of gaussian = polar @ sym. positive
    centred = polar - polar.mean(dim=0, keepdim=True)  # (I - 11^T/K) @ polar
    frame: Tensor = math.sqrt(k / (k - 1)) * centred
    return frame.float()
