"""benchmarks/scaling.py's fits: L(X) = (X_c / X)^alpha + L_inf (Kaplan et al. 2020, eq. 1.1-1.2 with the
irreducible loss of Henighan et al. 2020), by least squares (scipy.optimize.curve_fit), alpha's standard error
from the fit's covariance."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit


def power_law(x: np.ndarray, log_xc: float, alpha: float, l_inf: float) -> np.ndarray:
    """(X_c / x)^alpha + L_inf, with X_c given as its natural log (the fit is better conditioned so)."""
    return np.exp(alpha * (log_xc - np.log(x))) + l_inf


def _start(x: np.ndarray, y: np.ndarray, l_inf: float) -> tuple[float, float, float]:
    """Alpha and log X_c of a straight line through log(y - l_inf) against log x, for a guessed l_inf."""
    slope, intercept = np.polyfit(np.log(x), np.log(y - l_inf), 1)
    alpha = max(-slope, 1e-3)
    return intercept / alpha, alpha, l_inf


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float | int | None]:
    """The best L(X) through (xs, ys): alpha, its standard error (None with fewer than 4 points: no degree of
    freedom left), X_c (None past a float) and its log, L_inf, the root-mean-square residual, and at_bound: alpha
    or L_inf ended on a limit of the search (alpha in (1e-4, 10), L_inf in [0, min loss]), so the points do not
    pin that law down. Raises ValueError for fewer than 3 distinct X."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(x) < 3 or len(set(x.tolist())) < 3:
        raise ValueError(f"a fit of (X_c / X)^alpha + L_inf needs 3 or more distinct X, got {len(set(x.tolist()))}")
    lowest = float(y.min())
    best = None
    for share in (0.0, 0.5, 0.8, 0.9, 0.95, 0.99):  # a few starting L_inf: the fit has local minima
        try:
            with warnings.catch_warnings():  # 3 points: no covariance, and alpha_se is None
                warnings.simplefilter("ignore", OptimizeWarning)
                params, cov = curve_fit(power_law, x, y, p0=_start(x, y, share * lowest), maxfev=20000,
                                        bounds=([-1e3, 1e-4, 0.0], [1e3, 10.0, lowest]))
        except (RuntimeError, ValueError):
            continue
        residual = float(np.sqrt(np.mean((power_law(x, *params) - y) ** 2)))
        if best is None or residual < best[2]:
            best = (params, cov, residual)
    if best is None:
        raise ValueError("the power-law fit did not converge from any starting point")
    (log_xc, alpha, l_inf), cov, residual = best
    se = math.sqrt(cov[1, 1]) if len(x) > 3 and np.isfinite(cov[1, 1]) else None
    at_bound = not (1.001e-4 < alpha < 9.99) or l_inf <= 1e-6 * lowest or l_inf >= lowest * (1 - 1e-6)
    x_c = math.exp(log_xc) if log_xc < 700 else None  # a near-flat law puts X_c past any float
    return {"alpha": float(alpha), "alpha_se": se, "log_x_c": float(log_xc), "x_c": x_c, "l_inf": float(l_inf),
            "rms_residual": residual, "points": len(x), "at_bound": bool(at_bound)}
