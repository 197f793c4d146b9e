"""Export Meta's Segment Anything (SAM) as two ONNX files so inference needs only onnxruntime.

``vemcell sam-export --checkpoint sam_vit_b_01ec64.pth --model-type vit_b --out DIR`` writes

* ``DIR/sam_encoder.onnx`` — the ViT image encoder: ``image`` float32 (1, 3, S, S), already
  resized (longest side S), normalised with the card's pixel mean/std and zero-padded, to
  ``image_embeddings`` (1, C, S/16, S/16);
* ``DIR/sam_decoder.onnx`` — prompt encoder + mask decoder, built with segment_anything's own
  :class:`~segment_anything.utils.onnx.SamOnnxModel` (the official ONNX wrapper), with every
  mask token kept (``return_single_mask=False``) and a dynamic prompt batch, so one call scores
  a whole batch of grid points as the automatic mask generator does;
* ``DIR/sam.json`` — the card :mod:`vemcell.cells.sam` reads (sizes, normalisation, provenance).

Needs the ``sam`` extra (segment-anything, torch, torchvision, onnx). Checkpoints come from
Meta's segment-anything release (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``,
``sam_vit_h_4b8939.pth``); none is downloaded here. :func:`tiny_sam` builds a randomly
initialised miniature from the same modelling classes for tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.errors import VemcellError

MODEL_TYPES = ("vit_b", "vit_l", "vit_h")
CARD_NAME = "sam.json"
CARD_FORMAT = "vemcell-sam-card/1"
ENCODER_NAME = "sam_encoder.onnx"
DECODER_NAME = "sam_decoder.onnx"
OPSET = 17


def _import() -> tuple[Any, Any]:
    try:
        import segment_anything
        import torch
    except ImportError as exc:
        raise VemcellError(
            "Exporting SAM needs the 'sam' extra (segment-anything, torch, torchvision): "
            f"pip install 'vemcell[sam]' ({exc})."
        ) from None
    return torch, segment_anything


def load_checkpoint(checkpoint: str | os.PathLike, model_type: str) -> Any:
    """Build the SAM of ``model_type`` and load Meta's official ``checkpoint`` into it (CPU)."""
    torch, sa = _import()
    if model_type not in MODEL_TYPES:
        raise VemcellError(
            f"--model-type must be one of {', '.join(MODEL_TYPES)}, not {model_type!r}."
        )
    path = Path(checkpoint)
    if not path.is_file():
        raise VemcellError(f"Checkpoint '{path}' does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise VemcellError(
            f"'{path.name}' is not a readable PyTorch checkpoint ({type(exc).__name__})."
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    sam = sa.sam_model_registry[model_type](checkpoint=None)
    try:
        sam.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VemcellError(
            f"'{path.name}' is not a SAM {model_type} checkpoint ({first[:160]}); check "
            "--model-type (sam_vit_b_01ec64.pth is vit_b, sam_vit_l_0b3195.pth vit_l, "
            "sam_vit_h_4b8939.pth vit_h)."
        ) from None
    sam.eval()
    return sam


def tiny_sam(seed: int = 0, img_size: int = 128, embed_dim: int = 32, prompt_dim: int = 32) -> Any:
    """A randomly initialised miniature SAM from segment_anything's modelling classes.

    Same architecture and I/O as the real models (ViT encoder with a neck, prompt encoder,
    two-way-transformer mask decoder with three multimask outputs), a few hundred kB of
    weights: what the tests export and run.
    """
    torch, _ = _import()
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    patch = 16
    grid = img_size // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            patch_size=patch,
            embed_dim=embed_dim,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=prompt_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=4,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=8,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    sam.eval()
    return sam


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _dummy_decoder_inputs(torch: Any, sam: Any, n_prompts: int = 2) -> dict[str, Any]:
    emb_dim = sam.prompt_encoder.embed_dim
    h, w = sam.prompt_encoder.image_embedding_size
    s = sam.image_encoder.img_size
    g = torch.Generator().manual_seed(1)
    coords = torch.rand(n_prompts, 2, 2, generator=g) * s
    labels = torch.tensor([[1.0, -1.0]] * n_prompts)
    return {
        "image_embeddings": torch.randn(1, emb_dim, h, w, generator=g),
        "point_coords": coords.float(),
        "point_labels": labels.float(),
        "mask_input": torch.zeros(1, 1, 4 * h, 4 * w),
        "has_mask_input": torch.tensor([0.0]),
        "orig_im_size": torch.tensor([float(s) * 0.75, float(s)]),
    }


def export_sam(
    sam: Any,
    out_dir: str | os.PathLike,
    *,
    model_type: str,
    source: dict[str, Any] | None = None,
    opset: int = OPSET,
    check: bool = True,
) -> Path:
    """Write the encoder and decoder ONNX files and the card into ``out_dir``.

    Files are written in a temporary folder beside ``out_dir`` and moved in at the end, so a
    failed export leaves ``out_dir`` as it was. With ``check``, onnxruntime runs both files on
    random inputs and the largest difference from PyTorch is recorded in the card.

    Returns
    -------
    Path
        The card (``out_dir/sam.json``).
    """
    torch, sa = _import()
    from segment_anything.utils.onnx import SamOnnxModel

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VemcellError(f"--out '{out}' is a file; give a folder for the exported SAM.")
    out.parent.mkdir(parents=True, exist_ok=True)
    s = int(sam.image_encoder.img_size)
    h, w = (int(v) for v in sam.prompt_encoder.image_embedding_size)
    emb_dim = int(sam.prompt_encoder.embed_dim)

    class _Encoder(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.image_encoder = model.image_encoder

        def forward(self, image: Any) -> Any:
            return self.image_encoder(image)

    class _Decoder(SamOnnxModel):
        """SamOnnxModel with the crop to the unpadded size kept symbolic.

        segment-anything 1.0 crops with ``int(prepadded_size[0])``, which tracing freezes to
        the example's aspect ratio; slicing with the tensors keeps it a function of
        ``orig_im_size``.
        """

        def mask_postprocessing(self, masks: Any, orig_im_size: Any) -> Any:
            f = torch.nn.functional
            masks = f.interpolate(
                masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False
            )
            pre = self.resize_longest_image_size(orig_im_size, self.img_size)
            masks = masks[..., : pre[0], : pre[1]]
            size = orig_im_size.to(torch.int64)
            return f.interpolate(
                masks, size=(size[0], size[1]), mode="bilinear", align_corners=False
            )

    encoder = _Encoder(sam).eval()
    decoder = _Decoder(sam, return_single_mask=False).eval()
    image = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
    dec_in = _dummy_decoder_inputs(torch, sam)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer and legacy-exporter notices; the export check below is what counts.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                encoder,
                (image,),
                str(tmp / ENCODER_NAME),
                input_names=["image"],
                output_names=["image_embeddings"],
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
            torch.onnx.export(
                decoder,
                tuple(dec_in.values()),
                str(tmp / DECODER_NAME),
                input_names=list(dec_in),
                output_names=["masks", "iou_predictions", "low_res_masks"],
                dynamic_axes={
                    "point_coords": {0: "prompts", 1: "points"},
                    "point_labels": {0: "prompts", 1: "points"},
                },
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        card: dict[str, Any] = {
            "format": CARD_FORMAT,
            "name": f"sam_{model_type}",
            "model_type": model_type,
            "encoder": ENCODER_NAME,
            "decoder": DECODER_NAME,
            "img_size": s,
            "embedding_size": [h, w],
            "embedding_dim": emb_dim,
            "mask_input_size": [4 * h, 4 * w],
            "mask_threshold": float(sam.mask_threshold),
            "multimask_outputs": int(sam.mask_decoder.num_multimask_outputs),
            "pixel_mean": [float(v) for v in sam.pixel_mean.flatten()],
            "pixel_std": [float(v) for v in sam.pixel_std.flatten()],
            "source": source or {},
            "exported_with": {
                "torch": torch.__version__,
                "segment_anything": getattr(sa, "__version__", "1.0"),
                "opset": opset,
            },
            "licence": "Segment Anything weights and code: Apache-2.0 (Meta AI).",
        }
        if check:
            card["export_check"] = _check(torch, encoder, decoder, image, dec_in, tmp)
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / CARD_NAME


def _check(
    torch: Any, encoder: Any, decoder: Any, image: Any, dec_in: dict[str, Any], folder: Path
) -> dict[str, float]:
    """Largest absolute difference between onnxruntime and PyTorch on the export inputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    enc = ort.InferenceSession(str(folder / ENCODER_NAME), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(folder / DECODER_NAME), opts, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref_emb = encoder(image).numpy()
        ref_masks, ref_iou, _ = (t.numpy() for t in decoder(*dec_in.values()))
    emb = enc.run(None, {"image": image.numpy()})[0]
    feeds = {k: v.numpy() for k, v in dec_in.items()}
    masks, iou, _ = dec.run(None, feeds)
    diffs = {
        "encoder_max_abs_diff": float(np.max(np.abs(emb - ref_emb))),
        "decoder_masks_max_abs_diff": float(np.max(np.abs(masks - ref_masks))),
        "decoder_iou_max_abs_diff": float(np.max(np.abs(iou - ref_iou))),
    }
    # Another prompt count and aspect ratio than the export example: both must stay dynamic.
    s = float(dec_in["image_embeddings"].shape[-1] * 16)
    other = dict(dec_in)
    other["point_coords"] = dec_in["point_coords"][:1].repeat(3, 1, 1) * 0.5
    other["point_labels"] = dec_in["point_labels"][:1].repeat(3, 1)
    other["orig_im_size"] = torch.tensor([s, s * 0.4])
    with torch.no_grad():
        ref2 = decoder(*other.values())[0].numpy()
    got2 = dec.run(None, {k: v.numpy() for k, v in other.items()})[0]
    if got2.shape != ref2.shape:
        raise VemcellError(
            f"The exported SAM decoder gives masks of shape {got2.shape}, not {ref2.shape}."
        )
    diffs["decoder_other_size_max_abs_diff"] = float(np.max(np.abs(got2 - ref2)))
    scale = max(1.0, float(np.max(np.abs(ref_masks))), float(np.max(np.abs(ref_emb))))
    if max(diffs.values()) > 1e-2 * scale:
        raise VemcellError(
            f"The exported SAM disagrees with PyTorch ({diffs}); the export is not usable."
        )
    return diffs


def export_checkpoint(
    checkpoint: str | os.PathLike, model_type: str, out_dir: str | os.PathLike
) -> Path:
    """Load Meta's checkpoint and export it (what ``vemcell sam-export`` runs)."""
    sam = load_checkpoint(checkpoint, model_type)
    path = Path(checkpoint)
    source = {"checkpoint": path.name, "sha256": _sha256(path)}
    return export_sam(sam, out_dir, model_type=model_type, source=source)


TINY_SOURCE = {
    "checkpoint": None,
    "tiny": True,
    "seed": 0,
    "note": "randomly initialised miniature SAM for tests; it segments nothing meaningful",
}


def export_tiny(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Export :func:`tiny_sam` (the test fixture ``tests/fixtures/tiny_sam``)."""
    return export_sam(
        tiny_sam(seed), out_dir, model_type="tiny", source={**TINY_SOURCE, "seed": seed}
    )


if __name__ == "__main__":  # python -m vemcell_train.sam_export OUT  (regenerates the fixture)
    import sys

    print(export_tiny(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tiny_sam"))
