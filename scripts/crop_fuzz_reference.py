#!/usr/bin/env python3
"""py-feat's face crop and model-input preprocessing on seeded random frames and boxes: the
reference for the crop fuzz of the parity suite (test/parity/crop-fuzz.test.ts). --crop square is
py-feat 2.1.5's (generations v2.5+), --crop stretch v2.4's.

    .venv/bin/python scripts/crop_fuzz_reference.py --crop square|stretch --seed S --count N --out DIR

Runs in the environment of `npm run setup:python` (.venv/). What runs is py-feat's code, loaded as
scripts/parity_reference.py loads it (load_release: the release's own files, with its stand-ins for
the modules whose imports this environment lacks). --crop square, py-feat 2.1.5:
  * Detectorv2.crop_faces_from_boxes (feat/detector_v2.py): frame / 255, then
    extract_face_square_pad_torch (feat/utils/image_operations.py: side = max(w, h) * 1.2, at least
    1, pixel-centre grid, reflection padding) and _crop_affine_to_box; called unbound with the two
    attributes it reads (device, face_size = CHIP_SIZE, as Detectorv2.__init__ sets it), since a
    Detectorv2 would need checkpoint weights;
  * MultitaskModel.preprocess (feat/multitask/inference.py): the 256 -> 224 antialiased bilinear
    resize and ImageNet normalisation, called unbound with the device, _mean and _std that
    MultitaskModel.__init__ makes (inference.py:126-127);
  * convert_bbox_output (feat/utils/image_operations.py) for the reported box (FaceRect).
The crop window (origin_x, origin_y, side, side) is extract_face_square_pad_torch's own
crop_affine, recorded on its way back to crop_faces_from_boxes.

--crop stretch, v2.4: no release ships it, so it runs as the parity reference runs v2.4
(parity_reference.v24_classes: py-feat 2.0.3's classes with dev commit 3128756c's methods, re-stated
there verbatim):
  * 3128756c's Detectorv2.crop_faces_from_boxes: frame / 255, then extract_face_from_bbox_torch
    (parity_reference.extract_face_from_bbox_torch_3128756c: w and h each * 1.2, clamped to the
    frame, grid normalised by (W - 1), zero padding; the clamped box rounded for new_boxes);
  * 3128756c's MultitaskModel.preprocess: centre crop 256 -> 224, ImageNet normalisation;
  * 2.0.3's convert_bbox_output (unchanged since 3128756c) of new_boxes, for the FaceRect.
The crop window (new_x1, new_y1, new_x2 - new_x1, new_y2 - new_y1: the float clamped box and the
extent its grid spans) is read from extract_face_from_bbox_torch's locals when it calls
grid_sample, since it returns only the rounded box.

Frames are uniform noise (every byte independent), the hard case: neighbouring pixels differ by up
to 1.0, so a sampling coordinate off by one float32 ulp shows. A few are grey noise (one value per
pixel in R, G and B, as py-feat repeats a grey photo), for the Node side's one-channel 'gray' frame.
Boxes are drawn per frame from the kinds in BOX_KINDS, each a float32 [x1, y1, x2, y2] that is
non-empty, touches the frame and (square) whose crop window stays within +-2^24 px (lib/image-input.ts
refuses the rest: there float32 no longer resolves pixels and torch's CPU and CUDA kernels differ;
the stretched window is clamped to the frame).

Output, in --out (about 0.6 MB per box: the full model inputs):
  manifest.json      crop, release, code files, torch version and CPU capability, seed, and per
                     frame its size, kind, file names and per box the label, box, window and FaceRect
  <frame>.rgb        the frame, H x W x 3 uint8 RGB
  <frame>.input.f32  py-feat's model inputs for its boxes, N x 3 x 224 x 224 float32 little-endian
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
RELEASE = {"square": "2.1.5", "stretch": "2.0.3"}   # stretch: 2.0.3's classes, 3128756c's methods
MAX_WINDOW_COORDINATE = 2 ** 24   # lib/image-input.ts

# (width, height, kind): a single pixel, one-pixel-wide and -high strips, tiny and odd sizes,
# extreme aspect ratios both ways, and HD. Reflection folds every far-off coordinate back into
# these, so the small ones are where it folds most often.
FRAMES = [
    (1, 1, "noise"),
    (1, 480, "noise"),
    (640, 1, "gray-noise"),
    (2, 9, "noise"),
    (13, 5, "gray-noise"),
    (97, 61, "noise"),
    (333, 1000, "noise"),
    (1000, 333, "gray-noise"),
    (1280, 720, "noise"),
]
# v2.4's stretched crop normalises its grid by (size - 1), so the package refuses frames under 2x2
# for it (lib/image-input.ts): its draw widens the one-pixel frames to two, its smallest.
STRETCH_FRAMES = [(max(W, 2), max(H, 2), kind) for W, H, kind in FRAMES]

BOX_KINDS = ["inside", "half-integer", "integer", "tiny", "extreme aspect", "off-frame",
             "huge", "log-uniform"]

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[crop-fuzz-ref {time.monotonic() - _T0:5.1f}s] {msg}", flush=True)


def make_frame(rng: np.random.Generator, width: int, height: int, kind: str) -> np.ndarray:
    """[H, W, 3] uint8 RGB."""
    if kind == "noise":
        return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    g = rng.integers(0, 256, size=(height, width, 1), dtype=np.uint8)
    return np.repeat(g, 3, axis=2)


def draw_box(rng: np.random.Generator, kind: str, W: int, H: int) -> list[float]:
    """One [x1, y1, x2, y2] of `kind` (fractional unless named otherwise). Sizes are relative to the frame's
    longer side m where that makes sense; 'huge' reaches 1e7 px (windows up to 1.2e7)."""
    m = max(W, H)
    u = rng.uniform
    if kind == "inside":
        w = m * u(0.02, 1.0)
        h = w * np.exp(u(-0.7, 0.7))
        cx, cy = u(0, W), u(0, H)
    elif kind in ("half-integer", "integer"):
        w = max(1.0, m * u(0.05, 0.8))
        h = max(1.0, w * np.exp(u(-0.5, 0.5)))
        cx, cy = u(0, W), u(0, H)
        q = 2.0 if kind == "half-integer" else 1.0
        x1, y1 = np.floor((cx - w / 2) * q) / q, np.floor((cy - h / 2) * q) / q
        return [x1, y1, x1 + max(1.0 / q, np.round(w * q) / q), y1 + max(1.0 / q, np.round(h * q) / q)]
    elif kind == "tiny":
        # under 1/1.2 px the side is clamped to 1 (image_operations.py:1284)
        w, h = 10 ** u(-3, 0.5), 10 ** u(-3, 0.5)
        cx, cy = u(0, W), u(0, H)
    elif kind == "extreme aspect":
        long = m * u(0.1, 2.0)
        short = long * 10 ** u(-4, -2)
        w, h = (long, short) if rng.integers(2) else (short, long)
        cx, cy = u(0, W), u(0, H)
    elif kind == "off-frame":
        # crossing an edge or a corner: the centre up to a box size outside the frame
        w = m * u(0.05, 1.5)
        h = w * np.exp(u(-0.7, 0.7))
        cx, cy = u(-w / 2, W + w / 2), u(-h / 2, H + h / 2)
    elif kind == "huge":
        # larger than the frame, many reflections; the longer side at most 1e7 px
        w = 10 ** u(np.log10(m) + 0.3, 7)
        h = w * np.exp(u(-1.0, 0.0))
        w, h = (w, h) if rng.integers(2) else (h, w)
        cx, cy = u(-W, 2 * W), u(-H, 2 * H)
    elif kind == "log-uniform":
        w, h = 10 ** u(-1, 5), 10 ** u(-1, 5)
        cx, cy = u(-m, 2 * m), u(-m, 2 * m)
    else:
        raise ValueError(kind)
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def valid(box: np.ndarray, W: int, H: int) -> bool:
    """lib/image-input.ts checkBox's rules, on the float32 values both sides use: non-empty and
    touching the frame."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return x2 > x1 and y2 > y1 and x2 > 0 and y2 > 0 and x1 < W and y1 < H


def draw_boxes(rng: np.random.Generator, n: int, W: int, H: int) -> tuple[np.ndarray, list[str]]:
    boxes, labels = [], []
    for i in range(n):
        kind = BOX_KINDS[i % len(BOX_KINDS)]
        while True:
            b = draw_box(rng, kind, W, H)
            b = np.asarray(b, dtype=np.float32)   # detector boxes are float32; both sides use these values
            if valid(b, W, H):
                break
        boxes.append(b)
        labels.append(kind)
    return np.stack(boxes), labels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--crop", choices=sorted(RELEASE), default="square")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--count", type=int, required=True, help="boxes in all, spread over the frames")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    sys.path.insert(0, str(SCRIPTS))
    import parity_reference
    import torch
    try:
        det, folder = parity_reference.load_release(RELEASE[args.crop])
    except parity_reference.ParityError as e:
        print(f"[crop-fuzz-ref] error: {e}", file=sys.stderr, flush=True)
        return 2
    inf = sys.modules["feat.multitask.inference"]

    # Each crop's window [x, y, width, height] as py-feat computed it, recorded during its call.
    windows = []
    if args.crop == "square":
        # crop_affine as extract_face_square_pad_torch hands it back (crop_faces_from_boxes looks
        # the function up in its module's globals at call time, so it calls this wrapper).
        crop = det.extract_face_square_pad_torch

        def recording_square_pad(*a, **kw):
            faces, crop_affine = crop(*a, **kw)
            ox, oy, side = crop_affine.unbind(-1)
            windows.append(torch.stack([ox, oy, side, side], dim=-1))
            return faces, crop_affine

        det.extract_face_square_pad_torch = recording_square_pad
        crop_faces_from_boxes, preprocess = det.Detectorv2.crop_faces_from_boxes, inf.MultitaskModel.preprocess
        frames, release = FRAMES, f"py-feat {RELEASE['square']}"
    else:
        # The v2.4 crop returns only the rounded box; its float box is a local when it calls
        # grid_sample (looked up on torch.nn.functional at call time, so this wrapper runs).
        crop = parity_reference.extract_face_from_bbox_torch_3128756c
        grid_sample = torch.nn.functional.grid_sample

        def recording_grid_sample(*a, **kw):
            caller = sys._getframe(1)
            if caller.f_code is crop.__code__:
                v = caller.f_locals
                windows.append(torch.stack([v["new_x1"], v["new_y1"], v["new_x2"] - v["new_x1"], v["new_y2"] - v["new_y1"]], dim=-1))
            return grid_sample(*a, **kw)

        torch.nn.functional.grid_sample = recording_grid_sample
        detector_v24, model_v24 = parity_reference.v24_classes(det)
        crop_faces_from_boxes, preprocess = detector_v24.crop_faces_from_boxes, model_v24.preprocess
        frames, release = STRETCH_FRAMES, f"py-feat {RELEASE['stretch']} with dev commit 3128756c's crop and preprocess (v2.4)"
    cpu = torch.device("cpu")
    detector = types.SimpleNamespace(device=cpu, face_size=inf.CHIP_SIZE)
    model = types.SimpleNamespace(device=cpu, _mean=torch.tensor(inf.IMAGENET_MEAN, device=cpu).view(3, 1, 1),
                                  _std=torch.tensor(inf.IMAGENET_STD, device=cpu).view(3, 1, 1))

    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    code = crop.__code__
    manifest = {
        "crop": args.crop,
        "release": release,
        "cropCode": f"{code.co_filename}:{code.co_firstlineno} ({code.co_name})",
        "preprocess": f"{preprocess.__code__.co_filename}:{preprocess.__code__.co_firstlineno}",
        "torch": torch.__version__,
        "cpuCapability": torch.backends.cpu.get_cpu_capability(),
        "seed": args.seed,
        "frames": [],
    }
    per_frame = [args.count // len(frames) + (i < args.count % len(frames)) for i in range(len(frames))]
    for i, ((W, H, kind), n) in enumerate(zip(frames, per_frame)):
        if n == 0:
            continue
        name = f"f{i}-{W}x{H}"
        frame = make_frame(rng, W, H, kind)
        boxes, labels = draw_boxes(rng, n, W, H)
        img = torch.from_numpy(frame).permute(2, 0, 1).contiguous().unsqueeze(0)  # [1,3,H,W] uint8, as ImageDataset + DataLoader
        windows.clear()
        with torch.inference_mode():
            faces_data = crop_faces_from_boxes(detector, img, torch.from_numpy(boxes))
            (fd,) = faces_data
            x = preprocess(model, fd["faces"])
            rect = det.convert_bbox_output(fd["new_boxes"], fd["scores"])[:, :4]
        (window,) = windows
        if x.dtype != torch.float32 or tuple(x.shape) != (n, 3, 224, 224):
            raise SystemExit(f"{name}: model input {x.dtype} {tuple(x.shape)}")
        a = window.numpy()
        reach = np.maximum.reduce([np.abs(a[:, 0]), np.abs(a[:, 1]), np.abs(a[:, 0].astype(np.float64) + a[:, 2]),
                                   np.abs(a[:, 1].astype(np.float64) + a[:, 3])])
        if args.crop == "square" and (reach > MAX_WINDOW_COORDINATE).any():
            raise SystemExit(f"{name}: a drawn box's window reaches past 2^24 px: the box kinds must keep within it")
        (args.out / f"{name}.rgb").write_bytes(frame.tobytes())
        x.numpy().astype("<f4").tofile(args.out / f"{name}.input.f32")
        manifest["frames"].append({
            "name": name, "width": W, "height": H, "kind": kind,
            "rgb": f"{name}.rgb", "input": f"{name}.input.f32",
            "boxes": [{"label": labels[k], "box": [float(v) for v in boxes[k]],
                       "window": [float(v) for v in a[k]], "rect": [float(v) for v in rect[k]]}
                      for k in range(n)],
        })
        log(f"{name} ({kind}): {n} boxes")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log(f"wrote {args.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
