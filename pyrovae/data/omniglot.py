"""Omniglot at 28x28, Burda et al.'s split: 24,345 training and 8,070 test images of handwritten
characters from 50 alphabets, grey levels in [0, 1] (binarized dynamically for a Bernoulli
likelihood, as Burda et al. do), from their ``chardata.mat``.

``chardata.mat`` is checked against the git blob id Burda et al.'s repository (yburda/iwae,
``datasets/OMNIGLOT/chardata.mat``) publishes, 016a3536ffe5e1d38e42563a18d7a78bfaf643ec (the
SHA-1 of ``"blob <size>\0"`` and the file's bytes), after the download and at every load; its
SHA-256 is recorded beside it (``chardata.mat.sha256``) at the first verified load and checked
from then on. ``PYROVAE_SHA256_CHARDATA_MAT=<64 hex digits>`` pins a SHA-256 of your own instead.

Layout: ``data`` ``[784, 24345]`` and ``testdata`` ``[784, 8070]``, one image a column, each
column a 28x28 image in MATLAB's column-major order. Each column is turned upright and flattened
row-major here, the same images as Burda et al.'s ``data.T.reshape((-1, 28, 28)).reshape((-1,
784), order="F")``. ``target`` ``[50, N]`` (one-hot alphabet), where present, gives the labels.

References: Lake, Salakhutdinov, Tenenbaum, "Human-level concept learning through probabilistic
program induction" (Science 2015); Burda, Grosse, Salakhutdinov, "Importance Weighted
Autoencoders" (ICLR 2016).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import scipy.io

from ..errors import DataError
from .files import DataFile, default_folder, fetch, read_verified
from .images import Images

SIDE = 28
PARSE_ERRORS = (
    ValueError,
    TypeError,
    NotImplementedError,
    OSError,
    zlib.error,
    IndexError,
    KeyError,
    EOFError,
    struct.error,
    UnicodeDecodeError,
    AttributeError,
    OverflowError,
    MemoryError,
)
FILE = DataFile(
    "chardata.mat",
    ("https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat",),
    sha256=None,  # the repository publishes a git blob id, not a SHA-256: see the module's docstring
    git_blob="016a3536ffe5e1d38e42563a18d7a78bfaf643ec",
)


def upright(columns: np.ndarray) -> np.ndarray:
    """Images stored one a column, column-major, ``[H * W, N]`` -> upright, row-major ``[N, H * W]``."""
    n = columns.shape[1]
    images = columns.T.reshape(n, SIDE, SIDE)  # [N, W, H]: a column-major image read row-major is transposed
    return images.transpose(0, 2, 1).reshape(n, SIDE * SIDE)  # [N, H * W]


def load_omniglot(path: str | Path | None = None, progress: bool = False) -> Images:
    """Omniglot (Burda et al.'s split), grey levels ``[24345, 784]`` and ``[8070, 784]`` with
    alphabet labels, from the folder ``path`` (default ``$PYROVAE_DATA/omniglot``), downloading
    ``chardata.mat`` if missing once its SHA-256 is pinned (see the module's docstring)."""
    folder = Path(path) if path is not None else default_folder("omniglot")
    fetch("omniglot", [FILE], folder, progress)
    where = folder / FILE.name
    raw = read_verified(FILE, folder)
    try:
        mat = scipy.io.loadmat(io.BytesIO(raw))
    except (*PARSE_ERRORS, scipy.io.matlab.MatReadError) as e:  # a garbage file: every way its parser fails
        raise DataError(f"cannot read {where}: not a MATLAB file pyrovae can read ({type(e).__name__}: {e})") from e
    arrays, labels = {}, {}
    for split, key, target in (("train", "data", "target"), ("test", "testdata", "testtarget")):
        a = mat.get(key)
        if a is None or a.ndim != 2 or a.shape[0] != SIDE * SIDE or a.shape[1] == 0:
            shape = "missing" if a is None else f"of shape {a.shape}"
            raise DataError(f"cannot read {where}: {key!r} is {shape}; it needs [784, N], one image a column")
        if a.dtype.kind not in "biuf" or not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise DataError(f"cannot read {where}: {key!r} holds values outside [0, 1]; it needs grey levels")
        arrays[split] = upright(a).astype(np.float32)
        t = mat.get(target)
        labels[split] = np.argmax(t, axis=0) if t is not None and t.ndim == 2 and t.shape[1] == a.shape[1] else None
    return Images(
        train=arrays["train"],
        test=arrays["test"],
        train_labels=labels["train"],
        test_labels=labels["test"],
        image_shape=(1, SIDE, SIDE),
        source=f"Omniglot (Burda et al.'s 28x28 split) from {folder}",
        pixels="grey",
    )
