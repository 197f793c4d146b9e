"""Tiny ONNX models built with onnx.helper, so inference is tested without torch or weights.

The "band" model classifies each pixel by which of a few intensity centres it is nearest to:
logit_c = -k (x - centre_c)². Its answer is known exactly, it is pointwise (so tiled and
untiled predictions must agree), and it has the real I/O contract: input ``image`` float32
[N, 1, H, W], output ``probabilities`` [N, C, H, W].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_COLORS = [
    [0, 0, 0, 0],
    [1, 1, 1, 0.3],
    [0.5, 0.5, 0.5, 1],
    [0.1, 0.7, 0.2, 1],
    [0.95, 0.85, 0.1, 1],
    [1.0, 0.5, 0.0, 1],
]


def make_band_model(
    folder: Path,
    name: str = "band",
    centres: Sequence[float] = (0.1, 0.5, 0.9),
    k: float = 60.0,
    class_names: Sequence[str] | None = None,
    tile: int = 64,
    divisor: int = 16,
    output: str = "probabilities",
    voxel_size_nm: float | None = None,
    normalisation: dict | None = None,
    card_classes: int | None = None,
) -> Path:
    """Write ``folder/name.onnx`` and its card; return the card path."""
    from onnx import helper

    c = np.asarray(centres, dtype=np.float32)
    n = len(c)
    w = np.zeros((n, 2, 1, 1), np.float32)
    w[:, 0, 0, 0] = 2 * k * c
    w[:, 1, 0, 0] = -k
    b = (-k * c**2).astype(np.float32)
    out_name = "probabilities" if output == "probabilities" else "logits"
    nodes = [
        helper.make_node("Mul", ["image", "image"], ["sq"]),
        helper.make_node("Concat", ["image", "sq"], ["feat"], axis=1),
        helper.make_node("Conv", ["feat", "W", "B"], ["logits_raw"]),
    ]
    if output == "probabilities":
        nodes.append(helper.make_node("Softmax", ["logits_raw"], [out_name], axis=1))
    else:
        nodes.append(helper.make_node("Identity", ["logits_raw"], [out_name]))
    _save_onnx(folder, name, nodes, out_name, n, {"W": w, "B": b})
    names = list(class_names or [f"class{i}" for i in range(n)])
    ncard = card_classes or n
    names = (names + [f"extra{i}" for i in range(ncard)])[:ncard]
    card = {
        "format": "vemcell-model-card/1",
        "name": name,
        "onnx": f"{name}.onnx",
        "classes": [
            {"name": names[i], "color": DEFAULT_COLORS[i % len(DEFAULT_COLORS)]}
            for i in range(ncard)
        ],
        "background_class": 0,
        "input": {
            "tile": tile,
            "divisor": divisor,
            "normalisation": normalisation or {"method": "none"},
        },
        "output": output,
        "voxel_size_nm": voxel_size_nm,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(card), encoding="utf-8")
    return path


def _save_onnx(
    folder: Path, name: str, nodes, out_name: str, n: int, weights: dict, channels: int = 1
) -> None:
    """Check and save a one-input (``image``, ``channels`` slices) graph as ``folder/name.onnx``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", n, "H", "W"])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / f"{name}.onnx")


def make_lopsided_model(folder: Path, name: str = "lopsided", tile: int = 64) -> Path:
    """A 2-class model whose class-1 logit is a lopsided 3×3 filter of the image.

    It is not rotation- or mirror-equivariant, so test-time augmentation visibly changes it.
    """
    from onnx import helper

    card = make_band_model(folder, name, centres=(0.1, 0.9), tile=tile)  # the card; graph below
    w = np.zeros((2, 1, 3, 3), np.float32)
    w[1, 0] = [[0, 0, 0], [0, 4, 8], [0, 0, -2]]
    b = np.array([0, -4], np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "W", "B"], ["logits"], pads=[1, 1, 1, 1]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    _save_onnx(folder, name, nodes, "probabilities", 2, {"W": w, "B": b})
    return card


def make_context_model(folder: Path, name: str = "context", tile: int = 64) -> Path:
    """A 2-class model given each slice with one neighbour on either side (3 channels).

    Its class 1 is wherever the slice *before* is bright: only the first input channel counts,
    so a test can see that the neighbours arrive, and in which order.
    """
    from onnx import helper

    card = make_band_model(folder, name, centres=(0.1, 0.9), tile=tile)  # the card; graph below
    w = np.zeros((2, 3, 1, 1), np.float32)
    w[1, 0] = 20
    b = np.array([0, -10], np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    _save_onnx(folder, name, nodes, "probabilities", 2, {"W": w, "B": b}, channels=3)
    return card


def make_cells_model(folder: Path) -> Path:
    """The band model for :func:`two_cells_image`: background, cytoplasm and nucleus by grey
    level (0.1, 0.5, 0.9) at 20 nm, scaled as uint8."""
    return make_band_model(
        folder,
        name="band",
        centres=(0.1, 0.5, 0.9),
        class_names=("background", "cytoplasm", "nucleus"),
        tile=64,
        voxel_size_nm=20.0,
        normalisation={"method": "scale"},
    )


def two_cells_image(shape: tuple[int, int, int] = (48, 64, 96)) -> np.ndarray:
    """Two separate cells (0.5 grey) with a bright nucleus (0.9) each in resin (0.1), uint8."""
    z, y, x = np.indices(shape)
    img = np.full(shape, 0.1, np.float32)
    for cx in (26, 70):
        cell = ((z - 24) / 18) ** 2 + ((y - 32) / 22) ** 2 + ((x - cx) / 20) ** 2 < 1
        img[cell] = 0.5
        nucleus = (z - 24) ** 2 + (y - 32) ** 2 + (x - cx) ** 2 < 8**2
        img[nucleus] = 0.9
    return (img * 255).astype(np.uint8)
