"""The 68-landmark 3DMM the head tracking fits (:func:`jeancore.data.tracking.fit_3dmm`): the
3DDFA reduction of the Basel Face Model 2009 restricted to the 68 iBUG landmark vertices
(``third_party/bfm/bfm_3ddfa_68kp.npz``: 40 identity and 10 expression components), in
canonical head space.

Canonical head space: **decimetres** (1 unit = 10 cm = 1e5 micrometres, the file's unit), axes
of the 3DMM: x toward the subject's left (image right for a frontal face; landmark 0, the jaw's
image-left end, has x < 0), y up, z out of the face toward the viewer. **Origin: the centroid
of the 68 mean-shape landmarks** (``MorphableModel.origin`` is where that centroid lies in the
file's coordinates). The head sphere is centred ``head_offset`` (default 0.5) units behind that
centroid, i.e. at (0, 0, -0.5), with radius ``head_radius`` (default 1.5 units = 15 cm).

About the parameter statistics in the file: ``mean`` is the BFM mean shape plus the mean of the
expression model (3DDFA's ``u_shp + u_exp``) and does NOT include ``shape_param_mean`` /
``expr_param_mean``, which are the averages of 3DDFA's fitted coefficients over its training
set (300W-LP): adding ``basis @ param_mean`` moves the landmarks by 0.9 mm (identity) and
1.8 mm (expression) RMS and opens the mouth by a further 3.3 mm. The fit therefore centres the
Gaussian priors on zero coefficients (the model's own mean face) by default;
``prior_center="param_mean"`` centres them on the data averages instead. Either way the
coefficients returned are raw 3DDFA coefficients (``point = mean + shape_basis @ identity +
expr_basis @ expression``) and the file's ``*_param_std`` are the prior scales.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from jeancore.errors import BadInputError

__all__ = ["MICROMETRES_PER_UNIT", "N_LANDMARKS", "MorphableModel", "load_morphable_model"]

N_LANDMARKS = 68
MICROMETRES_PER_UNIT = 1.0e5  # canonical unit: 1 decimetre


@dataclass
class MorphableModel:
    """A linear 3DMM at the 68 iBUG landmarks, in canonical head space (decimetres).

    ``points = mean + shape_basis @ identity + expr_basis @ expression``, with raw 3DDFA
    coefficients (the file's units; ``shape_std`` / ``expr_std`` are their typical sizes).

    Attributes (torch tensors, all on one device; float unless said):
        mean: [68, 3] mean-shape landmarks (mean identity + mean expression), iBUG order
            (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth), decimetres, origin at
            their own centroid (so ``mean.mean(0) == 0``).
        shape_basis: [68, 3, 40] identity basis, decimetres per coefficient.
        expr_basis: [68, 3, 10] expression basis, decimetres per coefficient (component 0 opens
            the mouth).
        shape_std, expr_std: [40], [10] prior scales of the coefficients (3DDFA whitening std).
        shape_param_mean, expr_param_mean: [40], [10] 3DDFA's training-set means of the
            coefficients (NOT included in ``mean``; see the module docstring).
        vertex_index: [68] int64, rows of the full 53 215-vertex BFM these landmarks come from.
        origin: [3] where the canonical origin lies in the file's frame, in decimetres
            (file coordinates / 1e5 = canonical coordinates + origin).
    """

    mean: torch.Tensor
    shape_basis: torch.Tensor
    expr_basis: torch.Tensor
    shape_std: torch.Tensor
    expr_std: torch.Tensor
    shape_param_mean: torch.Tensor
    expr_param_mean: torch.Tensor
    vertex_index: torch.Tensor
    origin: torch.Tensor

    @property
    def n_shape(self) -> int:
        return int(self.shape_basis.shape[-1])

    @property
    def n_expr(self) -> int:
        return int(self.expr_basis.shape[-1])

    def to(self, device=None, dtype=None) -> MorphableModel:
        """A copy on ``device`` with floating tensors cast to ``dtype`` (index stays int64)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to(device=device, dtype=dtype if v.is_floating_point() else None)
        return MorphableModel(**out)

    def points(self, identity, expression) -> torch.Tensor:
        """Landmark positions of the model.

        Args:
            identity: raw identity coefficients, float tensor/array [40] (one face for all
                frames) or [T, 40].
            expression: raw expression coefficients, float [T, 10].

        Returns:
            float tensor [T, 68, 3] in canonical head space (decimetres), dtype of ``mean``.

        Raises:
            ValueError: wrong shapes, or T differing between identity [T, 40] and expression.
        """
        dt, dev = self.mean.dtype, self.mean.device
        identity = torch.as_tensor(identity, dtype=dt, device=dev)
        expression = torch.as_tensor(expression, dtype=dt, device=dev)
        ns, ne = self.n_shape, self.n_expr
        if expression.dim() != 2 or expression.shape[1] != ne:
            raise ValueError(f"expression must be [T, {ne}], got {list(expression.shape)}")
        if identity.shape == (ns,):
            identity = identity.expand(expression.shape[0], ns)
        elif identity.dim() != 2 or identity.shape != (expression.shape[0], ns):
            raise ValueError(
                f"identity must be [{ns}] or [T, {ns}] with T = {expression.shape[0]} (from "
                f"expression), got {list(identity.shape)}")
        return (self.mean + torch.einsum("kcs,ts->tkc", self.shape_basis, identity)
                + torch.einsum("kce,te->tkc", self.expr_basis, expression))

    def head_sphere(self, offset: float = 0.5, radius: float = 1.5) -> tuple[torch.Tensor, float]:
        """The head sphere: centre = centroid of the mean-shape landmarks moved ``offset`` units
        back (-z), i.e. (0, 0, -offset) in canonical space, and ``radius`` (decimetres)."""
        centre = self.mean.mean(0).clone()
        centre[2] -= offset
        return centre, float(radius)


def load_morphable_model(path=None, *, device="cpu", dtype=torch.float32) -> MorphableModel:
    """Load the 68-landmark 3DMM (``bfm_3ddfa_68kp.npz`` layout) into canonical head space.

    Converts the file's micrometres to decimetres and moves the origin to the centroid of the 68
    mean-shape landmarks (see the module docstring).

    Args:
        path: the npz file; default ``asset_path("bfm", "bfm_3ddfa_68kp.npz")`` (the vendored
            3DDFA reduction of BFM 2009: research-use terms, see third_party/bfm/README.md).
        device, dtype: where and in which floating dtype the tensors go.

    Raises:
        FileNotFoundError: no such file (or the vendored file is missing).
        BadInputError: the file lacks an array or an array has the wrong shape.
    """
    if path is None:
        from jeancore._assets import asset_path
        path = asset_path("bfm", "bfm_3ddfa_68kp.npz")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"3DMM file {path} not found")
    with np.load(path) as z:
        need = ("mean", "shape_basis", "expr_basis", "shape_param_mean", "shape_param_std",
                "expr_param_mean", "expr_param_std", "vertex_index")
        missing = [k for k in need if k not in z.files]
        if missing:
            raise BadInputError(f"{path} is not a 68-landmark 3DMM file: missing {missing}")
        a = {k: np.asarray(z[k]) for k in need}
    ns, ne = a["shape_basis"].shape[-1], a["expr_basis"].shape[-1]
    expect = {"mean": (68, 3), "shape_basis": (68, 3, ns), "expr_basis": (68, 3, ne),
              "shape_param_mean": (ns,), "shape_param_std": (ns,), "expr_param_mean": (ne,),
              "expr_param_std": (ne,), "vertex_index": (68,)}
    for k, shp in expect.items():
        if a[k].shape != shp:
            raise BadInputError(f"{path}: array {k!r} has shape {a[k].shape}, expected {shp}")
    mean = a["mean"].astype(np.float64) / MICROMETRES_PER_UNIT
    origin = mean.mean(0)

    def t(x, scale=1.0):
        return torch.as_tensor(np.asarray(x, np.float64) / scale, dtype=dtype, device=device)

    return MorphableModel(
        mean=t(mean - origin),
        shape_basis=t(a["shape_basis"], MICROMETRES_PER_UNIT),
        expr_basis=t(a["expr_basis"], MICROMETRES_PER_UNIT),
        shape_std=t(a["shape_param_std"]),
        expr_std=t(a["expr_param_std"]),
        shape_param_mean=t(a["shape_param_mean"]),
        expr_param_mean=t(a["expr_param_mean"]),
        vertex_index=torch.as_tensor(a["vertex_index"], dtype=torch.int64, device=device),
        origin=t(origin),
    )
