"""A LightGBM booster's probabilities for a few rows, without ``Booster.predict``'s overhead.

``Booster.predict`` costs about 70 us a call before any tree is read (it builds a predictor from
the parameters and checks the input each time), which is most of its time for the one to a few
dozen rows an API request predicts: the client's row, the rows of the direction check, the six
person-periods of the horizon model. LightGBM's C API has a path made for that case
(``LGBM_BoosterPredictForMatSingleRowFastInit`` once, then ``...SingleRowFast`` per row, about
6-12 us): the same predictor code, one row at a time, so the same bits as ``Booster.predict``
(tests). More rows than ``FEW`` go to ``Booster.predict``, whose per-call cost is then small.

A fast-path handle may not be used by two threads at once, so each thread gets its own, made on
its first call. Pickled, the predictor keeps only its booster and makes new handles.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from typing import Any

import numpy as np
from lightgbm import Booster
from lightgbm.basic import _LIB, _c_str, _safe_call

FEW = 32  # rows predicted one by one at most; more go to Booster.predict in one call
_NORMAL, _FLOAT64 = 0, 1  # C_API_PREDICT_NORMAL, C_API_DTYPE_FLOAT64


class RowPredictor:
    """``booster.predict(X, num_threads=1)`` for float64 rows, the few-row case fast."""

    def __init__(self, booster: Booster) -> None:
        self.booster = booster
        best = booster.best_iteration
        self._iterations = best if best > 0 else -1  # as Booster.predict's num_iteration=None
        self._columns = booster.num_feature()
        self._local = threading.local()

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (raw: before any calibration) of the rows of X, float64."""
        if len(X) > FEW or X.ndim != 2 or X.shape[1] != self._columns:
            return np.asarray(
                self.booster.predict(X, num_iteration=self._iterations, num_threads=1),
                dtype=np.float64,
            )
        rows = np.ascontiguousarray(X, dtype=np.float64)
        out = np.empty(len(rows))
        handle, length = self._handle(), ctypes.byref(ctypes.c_int64())
        row, into = rows.ctypes.data, out.ctypes.data
        for i in range(len(rows)):
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                    handle,
                    ctypes.c_void_p(row + i * rows.strides[0]),
                    length,
                    ctypes.c_void_p(into + i * out.strides[0]),
                )
            )
        return out

    def _handle(self) -> ctypes.c_void_p:
        """This thread's fast-path handle, made on first use and freed with the predictor."""
        handle: ctypes.c_void_p | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = ctypes.c_void_p()
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                    self.booster._handle,
                    ctypes.c_int(_NORMAL),
                    ctypes.c_int(0),
                    ctypes.c_int(self._iterations),
                    ctypes.c_int(_FLOAT64),
                    ctypes.c_int32(self._columns),
                    _c_str("num_threads=1"),
                    ctypes.byref(handle),
                )
            )
            weakref.finalize(self, _LIB.LGBM_FastConfigFree, handle)
            self._local.handle = handle
        return handle

    def __getstate__(self) -> dict[str, Any]:
        return {"booster": self.booster}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["booster"])  # type: ignore[misc]
