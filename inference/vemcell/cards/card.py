"""Model cards: the JSON beside each ``.onnx`` that says everything the backend needs.

Nothing about a model is hard-coded anywhere else: classes, display colours, normalisation,
tile size and the voxel size it was trained at all come from here.

A card looks like::

    {
      "format": "vemcell-model-card/1",
      "name": "cmerolae6",
      "title": "C. merolae organelles (6 classes)",
      "onnx": "cmerolae6.onnx",
      "classes": [{"name": "background", "color": [0, 0, 0, 0]}, ...],
      "background_class": 0,
      "input": {"tile": 256, "divisor": 16,
                "normalisation": {"method": "percentile", "low": 0.5, "high": 99.5}},
      "output": "probabilities",
      "voxel_size_nm": 10.0,
      "cell_boundary_class": null,
      "min_size_um3": {"peroxisome": 0.0008},
      "training": {...}, "validation": {...}, "licence": "..."
    }

``normalisation.method`` is ``"scale"`` (divide by the dtype maximum, the paper's /255),
``"percentile"`` (robust ``low``/``high`` percentiles to [0, 1]) or ``"auto"`` (scale for
uint8, percentile otherwise). ``output`` is ``"probabilities"`` (softmax inside the network)
or ``"logits"``. ``cell_boundary_class`` names a membrane class for dense tissue (neurites):
cells are then split along it (:func:`vemcell.cells.membrane_cells`) instead of by the
distance watershed meant for cells surrounded by resin. ``min_size_um3`` gives, per class, the
volume below which a connected piece of that class is taken for a speck and given to the class
around it (:func:`vemcell.segment.remove_small_pieces`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vemcell.errors import VemcellError

CARD_FORMAT = "vemcell-model-card/1"
DEFAULT_MODEL = "cmerolae6"


@dataclass
class ClassInfo:
    """One output class: its name and RGBA display colour (sRGB, 0..1)."""

    name: str
    color: tuple[float, float, float, float]


@dataclass
class ModelCard:
    """The parsed model card of one ONNX model."""

    name: str
    onnx_path: Path
    classes: list[ClassInfo]
    background_class: int | None = 0
    tile: int = 256
    divisor: int = 16
    normalisation: dict[str, Any] = field(default_factory=lambda: {"method": "auto"})
    output: str = "probabilities"
    voxel_size_nm: float | None = None
    cell_boundary_class: int | None = None
    title: str = ""
    min_size_um3: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: The same network quantised to INT8 (card field ``onnx_int8``): faster on CPUs with
    #: integer dot-product instructions, within the card's stated IoU of the float model.
    int8_path: Path | None = None

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data (what :func:`write_card` stores)."""
        d = dict(self.raw)
        d.update(
            {
                "format": CARD_FORMAT,
                "name": self.name,
                "title": self.title or self.raw.get("title", self.name),
                "onnx": self.onnx_path.name,
                "classes": [{"name": c.name, "color": list(c.color)} for c in self.classes],
                "background_class": self.background_class,
                "input": {
                    "tile": self.tile,
                    "divisor": self.divisor,
                    "normalisation": self.normalisation,
                },
                "output": self.output,
                "voxel_size_nm": self.voxel_size_nm,
            }
        )
        if self.cell_boundary_class is not None:
            d["cell_boundary_class"] = self.cell_boundary_class
        if self.min_size_um3:
            d["min_size_um3"] = dict(self.min_size_um3)
        return d


def _color(value: Any, where: str) -> tuple[float, float, float, float]:
    if isinstance(value, str) and value.startswith("#") and len(value) in (7, 9):
        parts = [int(value[i : i + 2], 16) / 255.0 for i in range(1, len(value), 2)]
    else:
        try:
            parts = [float(v) for v in value]
        except (TypeError, ValueError):
            raise VemcellError(f"{where}: colour {value!r} is not [r, g, b(, a)].") from None
        if any(v > 1.0 for v in parts):
            parts = [v / 255.0 for v in parts]
    if len(parts) == 3:
        parts.append(1.0)
    if len(parts) != 4 or not all(0.0 <= v <= 1.0 for v in parts):
        raise VemcellError(f"{where}: colour {value!r} is not [r, g, b(, a)] in 0..1 or 0..255.")
    return tuple(parts)  # type: ignore[return-value]


def check_min_sizes(sizes: Any, class_names: list[str], where: str) -> dict[str, float]:
    """``{class name: µm³}`` checked: known classes, numbers of at least 0."""
    if not isinstance(sizes, dict):
        raise VemcellError(f"{where}: min_size_um3 must map class names to volumes in µm³.")
    out = {}
    for name, value in sizes.items():
        if name not in class_names:
            raise VemcellError(
                f"{where}: min_size_um3 names {name!r}, which is not one of the classes "
                f"({', '.join(class_names)})."
            )
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = -1.0
        if not v >= 0.0 or isinstance(value, bool):
            raise VemcellError(f"{where}: min_size_um3 for {name} must be a volume ≥ 0 µm³.")
        out[str(name)] = v
    return out


def parse_card(data: dict[str, Any], card_path: Path) -> ModelCard:
    """Build a :class:`ModelCard` from parsed JSON, checking every field the backend uses."""
    where = f"Model card {card_path.name}"
    classes_raw = data.get("classes")
    if not isinstance(classes_raw, list) or len(classes_raw) < 2:
        raise VemcellError(f"{where} must list at least two classes.")
    classes = []
    for i, c in enumerate(classes_raw):
        if isinstance(c, str):
            c = {"name": c}
        if not isinstance(c, dict) or not c.get("name"):
            raise VemcellError(f"{where}: class {i} has no name.")
        color = c.get("color", [0.5, 0.5, 0.5, 1.0])
        classes.append(ClassInfo(str(c["name"]), _color(color, where)))
    inp = data.get("input", {}) or {}
    onnx_name = _own_file(data.get("onnx") or card_path.with_suffix(".onnx").name, "onnx", where)
    int8_name = data.get("onnx_int8")
    int8_name = None if int8_name is None else _own_file(int8_name, "onnx_int8", where)
    bg = data.get("background_class", 0)
    if bg is not None and not (0 <= int(bg) < len(classes)):
        raise VemcellError(f"{where}: background_class {bg} is not one of the classes.")
    output = data.get("output", "probabilities")
    if output not in ("probabilities", "logits"):
        raise VemcellError(f"{where}: output must be 'probabilities' or 'logits', not {output!r}.")
    norm = inp.get("normalisation", {"method": "auto"})
    if norm.get("method", "auto") not in ("auto", "scale", "percentile", "none"):
        raise VemcellError(f"{where}: unknown normalisation method {norm.get('method')!r}.")
    tile = int(inp.get("tile", 256))
    divisor = int(inp.get("divisor", 16))
    if tile < divisor or tile % divisor:
        raise VemcellError(f"{where}: tile {tile} must be a multiple of divisor {divisor}.")
    vs = data.get("voxel_size_nm")
    cb = data.get("cell_boundary_class")
    if cb is not None and (
        isinstance(cb, bool) or not isinstance(cb, int) or not 0 <= cb < len(classes)
    ):
        raise VemcellError(f"{where}: cell_boundary_class {cb!r} is not one of the classes.")
    min_size = check_min_sizes(data.get("min_size_um3") or {}, [c.name for c in classes], where)
    return ModelCard(
        name=str(data.get("name", card_path.stem)),
        title=str(data.get("title", data.get("name", card_path.stem))),
        onnx_path=(card_path.parent / onnx_name),
        classes=classes,
        background_class=None if bg is None else int(bg),
        tile=tile,
        divisor=divisor,
        normalisation=dict(norm),
        output=output,
        voxel_size_nm=None if vs is None else float(vs),
        cell_boundary_class=cb,
        min_size_um3=min_size,
        raw=dict(data),
        path=card_path,
        int8_path=None if int8_name is None else card_path.parent / int8_name,
    )


def _own_file(name: Any, key: str, where: str) -> str:
    """A file name in the card's own folder (a card never reaches elsewhere on the disk)."""
    name = str(name)
    if Path(name).name != name or name in (".", ".."):
        raise VemcellError(
            f"{where}: {key!r} must name a file in the card's own folder, not {name!r}."
        )
    return name


def models_dirs() -> list[Path]:
    """Where shipped models are looked for, first match wins.

    ``$VEMCELL_MODELS``, then ``models/`` inside the installed package (the Blender extension
    and wheels bundle them there), then the repository's top-level ``models/`` (editable
    installs and a source checkout).
    """
    dirs = []
    env = os.environ.get("VEMCELL_MODELS")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    here = Path(__file__).resolve().parents[1]  # the vemcell package
    dirs += [here / "models", here.parent.parent / "models"]
    return [d for d in dirs if d.is_dir()]


def list_models() -> list[ModelCard]:
    """Every shipped model whose card parses, by name (first directory wins)."""
    seen: dict[str, ModelCard] = {}
    for d in models_dirs():
        for card_path in sorted(d.glob("*.json")):
            try:
                card = load_card(card_path)
            except VemcellError:
                continue
            seen.setdefault(card.name, card)
    return list(seen.values())


def load_card(path: str | os.PathLike) -> ModelCard:
    """Read a model card from its JSON file or from the ``.onnx`` beside it."""
    p = Path(path)
    card_path = p.with_suffix(".json") if p.suffix.lower() == ".onnx" else p
    if not card_path.exists():
        if p.suffix.lower() == ".onnx" and p.exists():
            raise VemcellError(
                f"Model {p.name} has no model card ({card_path.name} beside it); the card says "
                "which classes, colours and normalisation the model uses."
            )
        raise VemcellError(f"Model '{p}' does not exist.")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VemcellError(f"Model card {card_path.name} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise VemcellError(f"Model card {card_path.name} is not a JSON object.")
    card = parse_card(data, card_path)
    for path in (card.onnx_path, card.int8_path):
        if path is not None and not path.exists():
            raise VemcellError(f"Model card {card_path.name} names {path.name}, which is missing.")
    return card


def resolve_model(spec: str | os.PathLike | None) -> ModelCard:
    """Find a model by path (``.onnx`` or card) or by shipped name; ``None`` is the default."""
    name = DEFAULT_MODEL if spec is None else str(spec)
    p = Path(name)
    if p.suffix.lower() in (".onnx", ".json") or p.exists():
        return load_card(p)
    for card in list_models():
        if card.name == name:
            return card
    available = ", ".join(c.name for c in list_models()) or "none installed"
    raise VemcellError(f"No model named '{name}' (shipped models: {available}).")


def write_card(card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a card as pretty JSON (used by training/export)."""
    p = Path(path)
    p.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return p
