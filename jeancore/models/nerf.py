"""The AD-NeRF field: the implicit function F_theta of JEAN's dynamic NeRF (Sec. 3.3, Eq. 5;
suppl. 8.4.2). The AD-NeRF backbone (:mod:`jeancore.models.adnerf`) uses two of them.

F_theta(e_in, d, x) -> (c, sigma): AD-NeRF's ``FaceNeRF`` MLP (Guo et al. 2021), which is
NeRF's MLP with the condition vector concatenated to the encoded point:

* input: gamma(x) (10 frequencies, 63 values) and e_in (96 values: a 32-d audio code and a
  64-d expression code, not encoded);
* ``depth`` (8) linear layers of ``width`` (128) with ReLU; after layer 4 (``skips``) the input
  [gamma(x), e_in] is concatenated again (NeRF's skip connection);
* density head: one linear layer -> raw density sigma (see "Density activation" below);
* colour head: a linear "feature" layer, concatenation with gamma(d) (4 frequencies,
  27 values), one linear layer of ``width // 2`` with ReLU, a linear layer to RGB and a sigmoid.

Density activation: compositing (:func:`jeancore.ops.composite`) computes
alpha = 1 - exp(-relu(sigma) delta), the ReLU of NeRF / AD-NeRF's ``raw2alpha``. With
``density_activation="relu"`` the network returns the raw linear output and that ReLU is the
activation (AD-NeRF); with ``"softplus"`` (default) it returns softplus(raw - 1) >= 0
(mip-NeRF), so the ReLU does nothing and a negative raw density still gets a gradient (the
ReLU version can die: all densities negative, no gradient, a render of pure background).
Optional Gaussian noise on the density during training (NeRF's ``raw_noise_std``) is added
by the backbone, before compositing's ReLU.

The condition e_in is the same for every sample of a ray (and, in training, for every ray of
the frame): the layers that read it are evaluated as ``W_x gamma(x) + (W_e e_in + b)``, with
the second term computed once per ray (or once per frame) instead of once per sample. This is
the same function as ``Linear(cat(gamma(x), e_in))`` (the weights are stored that way too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError, ConfigError
from ._checks import check_int, known_settings
from .encoding import encoded_dim, positional_encoding

__all__ = ["DENSITY_ACTIVATIONS", "MLP_CONFIG_KEYS", "NerfMLP"]

MLP_CONFIG_KEYS = ("cond_dim", "depth", "width", "skips", "pos_freqs", "dir_freqs",
                   "density_activation")
DENSITY_ACTIVATIONS = ("softplus", "relu")


class NerfMLP(nn.Module):
    """AD-NeRF / JEAN radiance-field MLP F_theta (Eq. 5).

    Args:
        cond_dim: width of e_in (96 = 32 audio + 64 expression; 0: unconditioned NeRF).
        depth: linear layers of the trunk (8).
        width: hidden width (128, JEAN suppl. 8.4.2).
        skips: trunk layers after which [gamma(x), e_in] is concatenated again ((4,)).
        pos_freqs: positional-encoding frequencies of x (10).
        dir_freqs: frequencies of the viewing direction (4).
        density_activation: ``"softplus"`` (default): sigma = softplus(raw - 1) (mip-NeRF's
            choice), never "dead"; ``"relu"``: the raw output, ReLU'd by compositing (NeRF /
            AD-NeRF), which can die: we saw every density of a cpu-smoke run go negative
            within 100 steps, after which no gradient reaches it and the render stays the
            background.

    Raises:
        ConfigError: widths < 1 (cond_dim < 0), skips outside 0 .. depth - 2.
    """

    def __init__(self, cond_dim: int = 96, depth: int = 8, width: int = 128, skips=(4,),
                 pos_freqs: int = 10, dir_freqs: int = 4, density_activation: str = "softplus"):
        super().__init__()
        if density_activation not in DENSITY_ACTIVATIONS:
            raise ConfigError(f"density_activation must be one of {DENSITY_ACTIVATIONS}, got "
                              f"{density_activation!r}")
        self.density_activation = density_activation
        self.cond_dim = check_int("cond_dim", cond_dim, 0)
        self.depth = check_int("depth", depth)
        self.width = check_int("width", width)
        self.pos_freqs = check_int("pos_freqs", pos_freqs, 0)
        self.dir_freqs = check_int("dir_freqs", dir_freqs, 0)
        self.skips = tuple(sorted(check_int("skip", s, 0) for s in skips))
        if any(s > self.depth - 2 for s in self.skips):
            raise ConfigError(f"skips must be layers 0 .. depth - 2 = {self.depth - 2}, got "
                              f"{self.skips}")
        self.pos_dim = encoded_dim(3, self.pos_freqs)
        self.dir_dim = encoded_dim(3, self.dir_freqs)
        in_dim = self.pos_dim + self.cond_dim
        self.trunk = nn.ModuleList([nn.Linear(in_dim, self.width)] + [
            nn.Linear(self.width + (in_dim if i - 1 in self.skips else 0), self.width)
            for i in range(1, self.depth)])
        self.density = nn.Linear(self.width, 1)
        self.feature = nn.Linear(self.width, self.width)
        self.view = nn.Linear(self.width + self.dir_dim, self.width // 2 or 1)
        self.rgb = nn.Linear(self.width // 2 or 1, 3)

    def config(self) -> dict:
        """Constructor arguments (plain Python types), stored in checkpoints."""
        return {"cond_dim": self.cond_dim, "depth": self.depth, "width": self.width,
                "skips": list(self.skips), "pos_freqs": self.pos_freqs,
                "dir_freqs": self.dir_freqs, "density_activation": self.density_activation}

    @classmethod
    def from_config(cls, config: dict) -> NerfMLP:
        """A new MLP from :meth:`config`'s dict (unknown keys raise ConfigError)."""
        return cls(**known_settings(config, MLP_CONFIG_KEYS, "NeRF MLP"))

    def _cond_term(self, layer: nn.Linear, cond, lead: int) -> torch.Tensor:
        """W_e e_in + b for a layer whose input is [gamma(x), e_in, (h)]: [N, 1, W] or [W]."""
        b = layer.bias
        if self.cond_dim == 0:
            return b
        w_e = layer.weight[:, self.pos_dim:self.pos_dim + self.cond_dim]
        term = F.linear(cond, w_e, b)
        return term[:, None, :] if term.dim() == 2 else term

    def forward(self, points: torch.Tensor, dirs: torch.Tensor, cond: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour and raw density at samples along rays.

        Args:
            points: sample positions float [N, S, 3] in the normalised head space (the
                backbone maps the head sphere to the unit sphere).
            dirs: unit viewing directions of the rays, float [N, 3] (canonical head space).
            cond: e_in, float [N, cond_dim] (one per ray) or [cond_dim] (one for all rays);
                None when cond_dim is 0.

        Returns:
            (rgb float [N, S, 3] in (0, 1), sigma float [N, S]: raw density, before the ReLU
            that compositing applies).

        Raises:
            BadInputError: shapes that do not fit.
        """
        if points.dim() != 3 or points.shape[-1] != 3:
            raise BadInputError(f"points must be [N, S, 3], got {list(points.shape)}")
        n = points.shape[0]
        if dirs.shape != (n, 3):
            raise BadInputError(f"dirs must be [N={n}, 3], got {list(dirs.shape)}")
        if self.cond_dim:
            if cond is None or cond.shape not in ((self.cond_dim,), (n, self.cond_dim)):
                raise BadInputError(f"cond must be [{self.cond_dim}] or [N={n}, "
                                    f"{self.cond_dim}], got "
                                    f"{None if cond is None else list(cond.shape)}")
        pe = positional_encoding(points, self.pos_freqs)                    # [N, S, P]
        p = self.pos_dim
        h = pe
        for i, layer in enumerate(self.trunk):
            if i == 0:
                h = F.linear(pe, layer.weight[:, :p]) + self._cond_term(layer, cond, n)
            elif i - 1 in self.skips:
                h = (F.linear(h, layer.weight[:, p + self.cond_dim:])
                     + F.linear(pe, layer.weight[:, :p]) + self._cond_term(layer, cond, n))
            else:
                h = layer(h)
            h = F.relu(h)
        sigma = self.density(h).squeeze(-1)
        if self.density_activation == "softplus":
            sigma = F.softplus(sigma - 1.0)
        feat = self.feature(h)
        de = positional_encoding(dirs, self.dir_freqs)                      # [N, Dd]
        w = self.view.weight
        v = F.linear(feat, w[:, :self.width]) + F.linear(de, w[:, self.width:],
                                                          self.view.bias)[:, None, :]
        rgb = torch.sigmoid(self.rgb(F.relu(v)))
        return rgb, sigma
