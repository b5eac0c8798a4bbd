"""3DMM head tracking: fit a morphable model to 2-D iBUG-68 landmarks, batched in PyTorch.

JEAN (BMVC 2024, Sec. 3.3) renders the face with a NeRF in a canonical head space and gets the
camera of every frame from the head pose of a per-frame 3DMM fit, as AD-NeRF (ICCV 2021) does:
AD-NeRF's face tracker fits the Basel Face Model 2009 to the 68 detected landmarks, with one
identity per video, an expression and a rigid pose per frame and one focal length, and writes
the inverse of the head pose as the camera-to-world matrix of its ``transforms_*.json`` files.
This module does the same (:func:`fit_3dmm`) with the 3DDFA reduction of BFM 2009 restricted to
the 68 landmark vertices.

The model and its canonical head space (decimetres, origin at the mean-shape landmarks'
centroid): :mod:`jeancore.data.morphable_model`. The camera conventions, :func:`project` and the
result :class:`HeadTracking` (``tracking.npz``): :mod:`jeancore.data.camera`. Both are
re-exported here.
"""

from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np
import torch

from jeancore.errors import BadInputError

from .camera import HeadTracking, camera_to_head, fill_gaps, fill_rotation_gaps, project
from .morphable_model import N_LANDMARKS, MorphableModel, load_morphable_model

__all__ = [
    "HeadTracking",
    "MorphableModel",
    "fit_3dmm",
    "load_morphable_model",
    "project",
    "so3_exp",
]


def _skew(w):
    z = torch.zeros_like(w[..., 0])
    return torch.stack([torch.stack([z, -w[..., 2], w[..., 1]], -1),
                        torch.stack([w[..., 2], z, -w[..., 0]], -1),
                        torch.stack([-w[..., 1], w[..., 0], z], -1)], -2)


def so3_exp(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: axis-angle vectors -> rotation matrices, differentiable (also at 0).

    The fit's pose variables are axis-angle updates of each frame's rotation, and L-BFGS needs
    the gradient of the energy with respect to them: so this one rotation function is torch,
    for autograd. SciPy's ``Rotation`` (used everywhere else, :mod:`jeancore.data.camera`)
    works on numpy arrays and gives no gradients.

    Args:
        w: float tensor [..., 3], rotation angle (radians) times unit axis.

    Returns:
        float tensor [..., 3, 3], same dtype and device.
    """
    th2 = (w * w).sum(-1)
    small = th2 < 1e-8
    th2s = torch.where(small, torch.ones_like(th2), th2)
    th = th2s.sqrt()
    a = torch.where(small, 1 - th2 / 6, torch.sin(th) / th)
    b = torch.where(small, 0.5 - th2 / 24, (1 - torch.cos(th)) / th2s)
    k = _skew(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


# ------------------------------------------------------------------------------------------------
# fitting
# ------------------------------------------------------------------------------------------------
def _check_inputs(landmarks, image_size, valid, focal, min_valid_frames):
    if isinstance(landmarks, torch.Tensor):
        landmarks = landmarks.detach().cpu().numpy()
    landmarks = np.asarray(landmarks)
    if landmarks.dtype.kind != "f":
        raise ValueError(
            f"landmarks must be a floating array [T, 68, 2] in pixels, got dtype "
            f"{landmarks.dtype} (integer landmark indices, e.g. dlib's, need +0.5 to become "
            "pixel-corner coordinates of pixel centres)")
    if landmarks.ndim != 3 or landmarks.shape[1:] != (N_LANDMARKS, 2) or landmarks.shape[0] < 1:
        raise ValueError(f"landmarks must be [T, 68, 2] with T >= 1, got {list(landmarks.shape)}")
    t = landmarks.shape[0]
    try:
        w, h = image_size
        ok = all(float(v) == int(v) and int(v) > 0 for v in (w, h))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"image_size must be (W, H) positive integers, got {image_size!r}")
    w, h = int(w), int(h)
    if valid is None:
        valid = np.ones(t, bool)
    else:
        if isinstance(valid, torch.Tensor):
            valid = valid.detach().cpu().numpy()
        valid = np.asarray(valid)
        if valid.dtype != np.bool_ or valid.shape != (t,):
            raise ValueError(f"valid must be a bool array [T] = [{t}], got dtype {valid.dtype} "
                             f"shape {list(valid.shape)}")
    finite = np.isfinite(landmarks).all(axis=(1, 2))
    bad = np.flatnonzero(valid & ~finite)
    if bad.size:
        raise BadInputError(
            f"landmarks of {bad.size} valid frame(s) are not finite (first: {bad[:10].tolist()}); "
            "mark frames without a detected face False in `valid`")
    n_valid = int(valid.sum())
    if n_valid < max(1, int(min_valid_frames)):
        raise BadInputError(
            f"only {n_valid} of {t} frames have valid landmarks; the fit needs at least "
            f"{max(1, int(min_valid_frames))} (no face detected in the video?)")
    if focal is not None:
        focal = float(focal)
        if not (math.isfinite(focal) and focal > 0):
            raise ValueError(f"focal must be a positive number of pixels, got {focal}")
    return landmarks.astype(np.float64), (w, h), valid.copy(), focal


def _pseudo_huber(e2, c):
    """2 c^2 (sqrt(1 + e^2 / c^2) - 1): ~e^2 for e << c, ~2 c e beyond."""
    if c is None or math.isinf(c):
        return e2
    return 2 * c * c * (torch.sqrt(1 + e2 / (c * c)) - 1)


def _lbfgs(params: list[torch.Tensor], fn, max_iter: int) -> int:
    """Minimise ``fn()`` over the leaf tensors ``params`` (updated in place) with SciPy's
    L-BFGS-B; returns the number of iterations. (SciPy rather than ``torch.optim.LBFGS``, whose
    first use imports torch._dynamo: ~2 s, longer than the whole fit of a short video.)"""
    import scipy.optimize

    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    dev, dt = params[0].device, params[0].dtype

    def load(x):
        chunks = torch.from_numpy(x).to(device=dev, dtype=dt).split(sizes)
        with torch.no_grad():
            for p, c, shp in zip(params, chunks, shapes, strict=True):
                p.copy_(c.view(shp))

    def fg(x):
        load(x)
        for p in params:
            p.grad = None
        loss = fn()
        loss.backward()
        loss = float(loss.detach())
        g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                       for p in params])
        return loss, g.detach().cpu().numpy().astype(np.float64)

    x0 = torch.cat([p.detach().reshape(-1) for p in params]).cpu().numpy().astype(np.float64)
    res = scipy.optimize.minimize(fg, x0, jac=True, method="L-BFGS-B",
                                  options={"maxiter": max_iter, "maxcor": 20, "ftol": 1e-15,
                                           "gtol": 1e-10})
    load(res.x)
    for p in params:
        p.grad = None
    return int(res.nit), str(res.message)


def fit_3dmm(landmarks, image_size, valid=None, *, focal=None,
             model: MorphableModel | None = None, iterations: tuple[int, int] = (50, 200),
             landmark_sigma: float = 0.02, robust: float | None = 3.0, landmark_weights=None,
             identity_weight: float = 1.0, expression_weight: float = 1.0,
             smooth_expression: float = 0.5, smooth_rotation: float = 0.03,
             smooth_translation: float = 0.02, focal_prior: float | None = 0.25,
             fov_degrees: float = 25.0, prior_center: str = "zero", head_offset: float = 0.5,
             head_radius: float = 1.5, min_valid_frames: int = 1, device="cpu",
             threads: int | None = 1, progress: bool = False) -> HeadTracking:
    """Fit the 68-landmark 3DMM to a video's 2-D landmarks: head pose, camera, expressions.

    As AD-NeRF's face tracker (BFM 2009 fitted to 68 landmarks) and JEAN Sec. 3.3 (the head pose
    of a per-frame 3DMM fit gives the NeRF's camera): one identity vector per video, an
    expression vector and a rigid pose (rotation, translation) per frame, and one focal length,
    by maximum-a-posteriori least squares batched over all frames. Over the V valid frames t and
    the landmarks k, with whitened coefficients ``z = (coef - prior centre) / std`` (prior
    scale: the file's parameter std):

    ``E = sum_t,k w_k rho(|proj_tk - lm_tk|^2 / (sigma S)^2)
    + V identity_weight |z_id|^2 + expression_weight sum_t |z_exp_t|^2 + V (log(f / f0) / s_f)^2
    + sum_(t, t') 1/g [ |z_exp_t' - z_exp_t|^2 / s_e^2 + |R_t' - R_t|_F^2 / (2 s_r^2)
    + |t_t' - t_t|^2 / (depth^2 s_t^2) ]``

    * ``S``: the video's face size in pixels (median over frames of the RMS distance of the 68
      landmarks from their centroid), so the energy, and every default, is the same at any
      resolution; ``sigma = landmark_sigma``; ``rho(x) = 2 c^2 (sqrt(1 + x / c^2) - 1)``
      (pseudo-Huber, ``c = robust``: quadratic for small errors, linear for outliers).
    * The per-video priors (identity, focal) count once per valid frame: landmark errors of one
      face are correlated across frames (dlib's annotation differs systematically from the
      model's vertices, e.g. the inner brow ends and the jaw contour), so T frames do not carry
      T times the evidence about the face shape, and the fit should not depend on the video's
      length. Without this the identity runs to 10+ std and the focal (barely observable from a
      talking head's landmarks: the landmark error changes by < 0.05 px between 600 and 1800 px
      on a 450 px video) follows it.
    * Smoothness couples consecutive valid frames t, t' (gap g = t' - t, so a gap costs what
      first-order smoothness over the skipped frames would).

    Stages: (0) a closed-form weak-perspective pose per frame on the mean shape (SVD of the
    least-squares affine camera); (1) rigid pose + focal on the mean shape; (2) everything.
    (1) and (2) run SciPy's L-BFGS-B on the PyTorch energy and gradients, in float64, with the
    variables rescaled for conditioning. Invalid frames are left out of the fit; their pose and
    expression are interpolated from the neighbouring valid frames afterwards (linearly, slerp
    for rotations; held constant before the first and after the last valid frame).
    Cost: ~4 ms per energy + gradient evaluation and ~150-400 evaluations, mostly fixed
    overhead, so 100 frames take ~1.6 s and 500 frames ~2.2 s on 2 (shared) CPU cores.

    Args:
        landmarks: float [T, 68, 2] iBUG-68 landmarks in pixels, numpy or torch, pixel-corner
            convention: the centre of pixel (row i, column j) is (u, v) = (j + 0.5, i + 0.5).
            Values in invalid frames are ignored (NaN allowed there).
        image_size: (W, H) in pixels; the principal point is the image centre (W/2, H/2).
        valid: bool [T], False for frames without a detected face (default: all valid).
        focal: a known focal length in pixels (kept fixed); None (default) estimates it,
            starting from (and pulled with log-std ``focal_prior`` toward) a ``fov_degrees``
            field of view across the larger image side. Landmarks of a talking head barely
            constrain it (see above), so the estimate leans on the priors (Obama, 450 px:
            1015 px initial, ~1360 px fitted); pass the focal length when it is known.
        model: the 3DMM (default :func:`load_morphable_model`).
        iterations: maximum L-BFGS iterations of (stage 1, stage 2).
        landmark_sigma: landmark noise std per coordinate, as a fraction of the face size S.
        robust: pseudo-Huber threshold in units of ``landmark_sigma`` (None: plain squares).
        landmark_weights: optional float [68] per-landmark weights (default all 1; normalised
            to mean 1), e.g. lower on the jaw contour (0-16) for profile views.
        identity_weight, expression_weight: multipliers of the Gaussian priors.
        smooth_expression: expected change of the whitened expression between frames.
        smooth_rotation: expected rotation between frames, radians.
        smooth_translation: expected translation between frames, relative to the mean depth.
            (The three smoothness scales assume ~25 fps.)
        focal_prior: std of log(f / f0) (None or inf: no prior).
        fov_degrees: field of view across max(W, H) of the initial focal f0.
        prior_center: ``"zero"`` (the model's mean face) or ``"param_mean"`` (3DDFA's training
            means of the coefficients, see the module docstring).
        head_offset, head_radius: the head sphere (decimetres) behind ``near`` / ``far``.
        min_valid_frames: fewer valid frames than this (and at least 1) is an error.
        device: torch device of the fit.
        threads: torch intra-op threads during a CPU fit (restored afterwards; small tensors run
            fastest on one); None leaves the setting alone.
        progress: print a line per stage to stderr.

    Returns:
        :class:`HeadTracking` (numpy, decimetres and pixels). ``reprojection_error`` is NaN for
        invalid frames; ``projected`` covers every frame.

    Raises:
        ValueError: landmarks not a floating [T, 68, 2] array, image_size not two positive
            integers, ``valid`` not bool [T], focal not positive, bad landmark_weights or
            prior_center.
        BadInputError (a ValueError): non-finite landmarks in a valid frame, fewer than
            ``min_valid_frames`` valid frames, or all landmarks at one point.
    """
    lm_np, (img_w, img_h), valid_np, focal = _check_inputs(
        landmarks, image_size, valid, focal, min_valid_frames)
    if prior_center not in ("zero", "param_mean"):
        raise ValueError(f"prior_center must be 'zero' or 'param_mean', got {prior_center!r}")
    positive = {"landmark_sigma": landmark_sigma, "smooth_expression": smooth_expression,
                "smooth_rotation": smooth_rotation, "smooth_translation": smooth_translation,
                "head_radius": head_radius, "fov_degrees": fov_degrees}
    if robust is not None:
        positive["robust"] = robust
    if focal_prior is not None:
        positive["focal_prior"] = focal_prior
    for name, v in positive.items():
        if not (isinstance(v, (int, float)) and v > 0 and not math.isnan(v)):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    if not fov_degrees < 180:
        raise ValueError(f"fov_degrees must be below 180, got {fov_degrees}")
    for name, v in {"identity_weight": identity_weight,
                    "expression_weight": expression_weight}.items():
        if not (isinstance(v, (int, float)) and 0 <= v < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if len(tuple(iterations)) != 2 or any(int(v) != v or v < 0 for v in iterations):
        raise ValueError(f"iterations must be two integers >= 0, got {iterations!r}")
    dev = torch.device(device)
    prev_threads = torch.get_num_threads()
    if threads is not None and dev.type == "cpu":
        torch.set_num_threads(int(threads))
    try:
        return _fit(lm_np, img_w, img_h, valid_np, focal, model, iterations, landmark_sigma,
                    robust, landmark_weights, identity_weight, expression_weight,
                    smooth_expression, smooth_rotation, smooth_translation, focal_prior,
                    fov_degrees, prior_center, head_offset, head_radius, dev, progress)
    finally:
        torch.set_num_threads(prev_threads)


def _fit(lm_np, img_w, img_h, valid_np, focal, model, iterations, landmark_sigma, robust,
         landmark_weights, identity_weight, expression_weight, smooth_expression,
         smooth_rotation, smooth_translation, focal_prior, fov_degrees, prior_center,
         head_offset, head_radius, dev, progress) -> HeadTracking:
    clock = time.perf_counter()
    dt = torch.float64
    n_rigid, n_full = (int(v) for v in iterations)
    model = load_morphable_model(device=dev, dtype=dt) if model is None else model.to(dev, dt)
    if landmark_weights is None:
        lw = torch.ones(N_LANDMARKS, dtype=dt, device=dev)
    else:
        lw = torch.as_tensor(np.asarray(landmark_weights, np.float64), device=dev)
        if (lw.shape != (N_LANDMARKS,) or not bool(torch.isfinite(lw).all())
                or bool((lw < 0).any()) or not float(lw.sum()) > 0):
            raise ValueError("landmark_weights must be 68 finite non-negative numbers, not all 0")
    lw = lw / lw.mean()

    n_frames = lm_np.shape[0]
    idx = torch.as_tensor(np.flatnonzero(valid_np), device=dev)
    n_v = int(idx.numel())
    cx, cy = img_w / 2.0, img_h / 2.0
    lm = torch.as_tensor(lm_np[valid_np], dtype=dt, device=dev)  # [V, 68, 2]
    # image coordinates about the principal point, y up: obs = f Xc_xy / (-Xc_z)
    obs = torch.stack([lm[..., 0] - cx, -(lm[..., 1] - cy)], -1)
    centred = obs - obs.mean(1, keepdim=True)
    face_size = float(centred.pow(2).sum(-1).mean(-1).sqrt().median())
    if not face_size > 0:
        raise BadInputError("the landmarks of the valid frames all lie at one point "
                            "(face size 0): not a face")
    f0 = focal if focal is not None else 0.5 * max(img_w, img_h) / math.tan(
        math.radians(fov_degrees) / 2)
    log_f0 = math.log(f0)

    # ---- stage 0: weak-perspective pose per frame on the mean shape ---------------------------
    mshape = model.mean  # [68, 3], centroid at the origin
    aff = centred.transpose(1, 2) @ torch.linalg.pinv(mshape).T  # [V, 2, 3]: centred ~ X aff^T
    u_, sig, vh = torch.linalg.svd(aff, full_matrices=False)
    r2 = u_ @ vh  # nearest matrix with orthonormal rows
    rot0 = torch.cat([r2, torch.linalg.cross(r2[:, 0], r2[:, 1])[:, None]], 1)
    scale0 = sig.mean(-1)  # image scale f / depth, pixels per decimetre
    off0 = obs.mean(1)  # image position of the origin (the landmark centroid)

    # Variables: R = exp(k_pose w) R0; image scale s = s0 exp(k_pose l); origin's image position
    # m = m0 + S k_pose o; f = f0 exp(phi); then depth = f / s, t = (m / s, -depth), so f alone
    # changes only the perspective, not the size of the face. The energy is divided by V * 68, so
    # a per-frame variable has ~1/V the curvature of a per-video one, and a pose variable (a unit
    # moves landmarks by ~S pixels) ~1/sigma^2 that of a whitened coefficient: k_pose and k_exp
    # undo both for a well-conditioned L-BFGS problem.
    k_pose = landmark_sigma * math.sqrt(n_v)
    k_exp = math.sqrt(n_v)

    def var(*shape, grad=True):
        return torch.zeros(shape, dtype=dt, device=dev, requires_grad=grad)

    w, log_s, off = var(n_v, 3), var(n_v), var(n_v, 2)
    phi = var(grad=focal is None)
    z_id, z_exp = var(model.n_shape), var(n_v, model.n_expr)
    if prior_center == "param_mean":
        centre_id, centre_exp = model.shape_param_mean, model.expr_param_mean
    else:
        centre_id, centre_exp = torch.zeros_like(model.shape_std), torch.zeros_like(model.expr_std)

    inv_gap = 1.0 / (idx[1:] - idx[:-1]).to(dt)
    n_terms = float(n_v * N_LANDMARKS)
    noise2 = (face_size * landmark_sigma) ** 2
    use_focal_prior = focal is None and focal_prior is not None and math.isfinite(focal_prior)

    def state(with_shape: bool):
        rot = so3_exp(k_pose * w) @ rot0
        s = scale0 * torch.exp(k_pose * log_s)
        f = torch.exp(log_f0 + phi)
        m = off0 + face_size * k_pose * off
        trans = torch.cat([m / s[:, None], -(f / s)[:, None]], -1)
        expr = centre_exp + model.expr_std * (k_exp * z_exp)
        if with_shape:
            pts = model.points(centre_id + model.shape_std * z_id, expr)
        else:
            pts = mshape.expand(n_v, -1, -1)
        return rot, trans, f, expr, pts

    def energy(with_shape: bool):
        rot, trans, f, _, pts = state(with_shape)
        xc = torch.einsum("tij,tkj->tki", rot, pts) + trans[:, None]
        proj = f * xc[..., :2] / (-xc[..., 2:])
        e = (lw * _pseudo_huber((proj - obs).pow(2).sum(-1) / noise2, robust)).sum()
        if n_v > 1:
            d_rot = (rot[1:] - rot[:-1]).pow(2).sum((-1, -2)) / 2
            d_trans = (trans[1:] - trans[:-1]).pow(2).sum(-1) / trans[:, 2].detach().pow(2).mean()
            e = e + (inv_gap * d_rot).sum() / smooth_rotation ** 2
            e = e + (inv_gap * d_trans).sum() / smooth_translation ** 2
        if with_shape:
            e = e + n_v * identity_weight * z_id.pow(2).sum()
            e = e + expression_weight * (k_exp * z_exp).pow(2).sum()
            if n_v > 1:
                d_exp = (k_exp * (z_exp[1:] - z_exp[:-1])).pow(2).sum(-1)
                e = e + (inv_gap * d_exp).sum() / smooth_expression ** 2
        if use_focal_prior:
            e = e + n_v * (phi / focal_prior) ** 2
        return e / n_terms

    def run_stage(params, with_shape, max_iter, name):
        if max_iter <= 0:
            return
        n_iter, message = _lbfgs([p for p in params if p.requires_grad],
                                 lambda: energy(with_shape), max_iter)
        if progress:
            with torch.no_grad():
                loss = float(energy(with_shape))
                f_now = math.exp(log_f0 + float(phi))
            print(f"fit_3dmm: {name}: {n_iter} iterations ({message}), energy {loss:.4g}, focal "
                  f"{f_now:.1f} px, {time.perf_counter() - clock:.2f} s", file=sys.stderr)

    run_stage([w, log_s, off, phi], False, n_rigid, "rigid + focal on the mean shape")
    run_stage([w, log_s, off, phi, z_id, z_exp], True, n_full, "pose + identity + expression")

    # ---- outputs for every frame, invalid ones interpolated -----------------------------------
    with torch.no_grad():
        rot_v, trans_v, f_t, expr_v, _ = state(True)
        ident = centre_id + model.shape_std * z_id
    idx_np = np.flatnonzero(valid_np)
    rot_np = fill_rotation_gaps(rot_v.cpu().numpy(), idx_np, n_frames)
    trans_np = fill_gaps(trans_v.cpu().numpy(), idx_np, n_frames)
    expr_np = fill_gaps(expr_v.cpu().numpy(), idx_np, n_frames)
    with torch.no_grad():
        rot, trans, expr = (torch.from_numpy(a).to(dev) for a in (rot_np, trans_np, expr_np))
        f = float(f_t)
        proj = project(model.points(ident, expr), rot, trans, f, cx, cy)
        valid_t = torch.as_tensor(valid_np, device=dev)
        err = (proj - torch.as_tensor(lm_np, dtype=dt, device=dev)).norm(dim=-1).mean(-1)
        err = torch.where(valid_t, err, torch.full_like(err, float("nan")))
        centre, radius = model.head_sphere(head_offset, head_radius)
        depth = -(rot @ centre + trans)[:, 2]
        near = float(depth.min()) - radius
        far = float(depth.max()) + radius
    if near <= 0:
        warnings.warn(f"the head sphere (radius {radius}) reaches the camera (nearest centre "
                      f"depth {float(depth.min()):.3f}); near set to 1% of far", RuntimeWarning,
                      stacklevel=3)
        near = 0.01 * far
    if progress:
        e = err[valid_t]
        print(f"fit_3dmm: {n_frames} frames ({n_v} valid): reprojection error mean "
              f"{float(e.mean()):.3f} px, max {float(e.max()):.3f} px, focal {f:.1f} px, "
              f"{time.perf_counter() - clock:.2f} s", file=sys.stderr)

    def f32(x):
        return x.detach().cpu().numpy().astype(np.float32)

    return HeadTracking(
        identity=f32(ident), expression=f32(expr), rotation=f32(rot), translation=f32(trans),
        focal=f, cx=cx, cy=cy, image_size=(img_w, img_h), valid=valid_np,
        landmarks=lm_np.astype(np.float32), projected=f32(proj), reprojection_error=f32(err),
        camera_to_head=camera_to_head(rot_np, trans_np), near=near, far=far,
        head_center=f32(centre), head_radius=radius)
