#!/usr/bin/env python3
"""Makes test/fixtures/preprocess-torch.json: py-feat's face-chip preprocessing computed by torch
itself, for test/preprocess-torch.test.ts to hold the native code (native/preprocess) against.

Usage: python3 scripts/make_preprocess_fixtures.py [--out PATH] [--pyfeat-src DIR] [--pyfeat-git DIR]
Needs Python >= 3.9 and torch (made with torch 2.14.1, the venv's; 2.13.0 gave the same values); nothing else (no torchvision, no numpy).

Each step is py-feat's, with torch ops in py-feat's own order on float32 tensors:
  uint8 RGB frame -> .float() -> / 255.0                     (feat/detector_v2.py:138-140 in 2.1.5)
  -> crop to a 256x256 chip:
       'square'  extract_face_square_pad_torch               (feat/utils/image_operations.py:1233-1322,
                 py-feat 2.0.x-2.1.x: side = max(w,h)*1.2, reflection padding, pixel-centre grid)
       'stretch' extract_face_from_bbox_torch at dev commit 3128756c (v2.4)
                 (feat/utils/image_operations.py@3128756c:1120-1217: w,h each *1.2, clamped to the
                 frame, grid normalised by (W-1) with align_corners=False, zero padding)
  -> 256 -> 224:
       'antialias_bilinear' TF.resize(chips, [224, 224], antialias=True)   (inference.py:156, 2.x)
       'center_crop'        TF.center_crop(chips, [224, 224])              (inference.py@3128756c:124)
  -> (chips - mean) / std                                    (inference.py:157, ImageNet mean/std)

torchvision is not needed: for a float32 tensor torchvision.transforms.v2.functional.resize_image
(torchvision/transforms/v2/functional/_geometry.py) sets align_corners=False for BILINEAR and calls
torch.nn.functional.interpolate(image, size=[h, w], mode="bilinear", align_corners=False,
antialias=True) (float32 is in its acceptable_dtypes, so no cast); center_crop_image slices
[top:top+224, left:left+224] with top = left = int(round((256 - 224) / 2.0)) = 16.

Where py-feat's sources are available (the unpacked 2.1.5 wheel, --pyfeat-src; the git mirror for
the v2.4 commit, --pyfeat-git), the script runs py-feat's real functions, taken from those files
with `ast` and exec'd with torch and F (no other py-feat import), and checks that the restatements
below give bit-identical results. Without them it uses the restatements (which cite file:line).

Frames are deterministic noise (the hardest case for coordinate rounding: neighbouring pixels
differ by up to 1.0), made by a 32-bit integer hash that the test re-implements in JS, so the
fixture stores a seed instead of frame bytes. Full model inputs would be 588 KiB per case, so each
case stores torch's values at fixed sample positions (every border pixel of the 224x224 planes plus
hashed interior positions, the same positions for every case) and float64 sums of every row and of
every channel plane of the full tensor.
"""
from __future__ import annotations

import argparse
import ast
import base64
import json
import os
import struct
import subprocess
import sys
import textwrap
import types

import torch
import torch.nn.functional as F

CHIP_SIZE = 256  # feat/multitask/inference.py:41
MODEL_INPUT = 224  # feat/multitask/inference.py:42
EXPAND_BBOX = 1.2  # feat/multitask/__init__.py (EXPAND_BBOX), passed by detector_v2.py:183
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # feat/multitask/inference.py:44
IMAGENET_STD = (0.229, 0.224, 0.225)  # feat/multitask/inference.py:45
PLANE = MODEL_INPUT * MODEL_INPUT
INPUT_FLOATS = 3 * PLANE

V24_COMMIT = "3128756c"
RANDOM_SAMPLES = 2500
SAMPLE_SEED = 7

# ----------------------------------------------------------------------------------------------
# Deterministic frames: byte k of stream `seed` is lowbias32((seed * 0x9E3779B9 + k) mod 2^32) >> 24
# (lowbias32: Chris Wellons' 32-bit integer hash). In JS, with Math.imul and >>> 0, the same.

M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for int64 x in [0, 2^32) without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & M32


def lowbias32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hash_stream(seed: int, n: int) -> torch.Tensor:
    """n uint32 values (as int64) of stream `seed`."""
    k = torch.arange(n, dtype=torch.int64)
    return lowbias32(((seed * 0x9E3779B9) + k) & M32)


def make_frame(kind: str, seed: int, width: int, height: int) -> torch.Tensor:
    """[H, W, 3] uint8 RGB. 'noise': every byte (HWC order) from the stream; 'gray-noise': one
    value per pixel (row-major) repeated in R, G and B."""
    if kind == "noise":
        v = hash_stream(seed, height * width * 3) >> 24
        return v.to(torch.uint8).view(height, width, 3)
    if kind == "gray-noise":
        v = (hash_stream(seed, height * width) >> 24).to(torch.uint8).view(height, width, 1)
        return v.expand(height, width, 3).contiguous()
    raise ValueError(kind)


def sample_positions() -> torch.Tensor:
    """Flat NCHW indices into one 3x224x224 input: every border pixel of each plane (rows 0 and
    223, then columns 0 and 223 of rows 1..222), then RANDOM_SAMPLES hashed positions."""
    out = []
    last = MODEL_INPUT - 1
    for c in range(3):
        base = c * PLANE
        out += [base + x for x in range(MODEL_INPUT)]
        out += [base + last * MODEL_INPUT + x for x in range(MODEL_INPUT)]
        for y in range(1, last):
            out += [base + y * MODEL_INPUT, base + y * MODEL_INPUT + last]
    rnd = hash_stream(SAMPLE_SEED, RANDOM_SAMPLES) % INPUT_FLOATS
    return torch.tensor(out + rnd.tolist(), dtype=torch.int64)


# ----------------------------------------------------------------------------------------------
# Restatements of py-feat's code (used when its sources are absent; otherwise checked against it).


def square_crop(frame, detected_faces, face_size=256, expand_bbox=1.2):
    """py-feat 2.1.5 extract_face_square_pad_torch (feat/utils/image_operations.py:1233-1322),
    one frame, frame_idx None. Returns (chips, crop_affine [N,3] = origin_x, origin_y, side)."""
    B, C, H, W = frame.shape
    N = detected_faces.shape[0]
    detected_faces = detected_faces.float()
    x1, y1, x2, y2 = detected_faces[:, 0], detected_faces[:, 1], detected_faces[:, 2], detected_faces[:, 3]
    center_x = (x1 + x2) / 2  # :1278
    center_y = (y1 + y2) / 2  # :1279
    side = torch.maximum((x2 - x1), (y2 - y1)) * expand_bbox  # :1283
    side = side.clamp(min=1.0)  # :1284
    origin_x = center_x - side / 2  # :1285
    origin_y = center_y - side / 2  # :1286
    crop_affine = torch.stack([origin_x, origin_y, side], dim=-1)
    yy, xx = torch.meshgrid(torch.arange(face_size), torch.arange(face_size), indexing="ij")
    yy = yy.float()
    xx = xx.float()
    grid_x = origin_x.view(N, 1, 1) + (xx + 0.5) / face_size * side.view(N, 1, 1)  # :1297
    grid_y = origin_y.view(N, 1, 1) + (yy + 0.5) / face_size * side.view(N, 1, 1)  # :1298
    grid_x = 2 * (grid_x + 0.5) / W - 1  # :1304
    grid_y = 2 * (grid_y + 0.5) / H - 1  # :1305
    grid = torch.stack((grid_x, grid_y), dim=-1).float()
    frame = frame.float()
    frame_expanded = frame[torch.arange(N) % B]
    chips = F.grid_sample(frame_expanded, grid, padding_mode="reflection", align_corners=False)  # :1319
    return chips, crop_affine


def stretch_crop(frame, detected_faces, face_size=256, expand_bbox=1.2):
    """v2.4 extract_face_from_bbox_torch (feat/utils/image_operations.py@3128756c:1120-1217), one
    frame, frame_idx None. Returns (chips, new_bboxes rounded long, float box [new_x1..new_y2])."""
    B, C, H, W = frame.shape
    N = detected_faces.shape[0]
    x1, y1, x2, y2 = detected_faces[:, 0], detected_faces[:, 1], detected_faces[:, 2], detected_faces[:, 3]
    center_x = (x1 + x2) / 2
    center_y = (y1 + y2) / 2
    width = (x2 - x1) * expand_bbox  # :1161
    height = (y2 - y1) * expand_bbox  # :1162
    new_x1 = (center_x - width / 2).clamp(min=0)  # :1165
    new_y1 = (center_y - height / 2).clamp(min=0)
    new_x2 = (center_x + width / 2).clamp(max=W)
    new_y2 = (center_y + height / 2).clamp(max=H)  # :1168
    new_bboxes = torch.stack([new_x1, new_y1, new_x2, new_y2], dim=-1).round().long()  # :1174
    yy, xx = torch.meshgrid(torch.arange(face_size), torch.arange(face_size), indexing="ij")
    yy = yy.float()
    xx = xx.float()
    grid_x = (xx + 0.5) / face_size * (new_x2 - new_x1).view(N, 1, 1) + new_x1.view(N, 1, 1)  # :1186
    grid_y = (yy + 0.5) / face_size * (new_y2 - new_y1).view(N, 1, 1) + new_y1.view(N, 1, 1)
    grid_x = 2 * grid_x / (W - 1) - 1  # :1194
    grid_y = 2 * grid_y / (H - 1) - 1  # :1195
    grid = torch.stack((grid_x, grid_y), dim=-1)
    frame = frame.float()
    grid = grid.float()
    frame_expanded = frame[torch.arange(N) % B]
    chips = F.grid_sample(frame_expanded, grid, align_corners=False)  # :1214, padding "zeros"
    return chips, new_bboxes, torch.stack([new_x1, new_y1, new_x2, new_y2], dim=-1)


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)  # inference.py:126 (float32)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)  # inference.py:127


def to_input(chips, resize):
    """MultitaskModel.preprocess: 2.1.5 feat/multitask/inference.py:145-157 (antialias_bilinear) or
    3128756c feat/multitask/inference.py:117-125 (center_crop). The chips are always 256 here, so
    the F.interpolate branch is never taken."""
    if resize == "antialias_bilinear":
        chips = F.interpolate(chips, size=[MODEL_INPUT, MODEL_INPUT], mode="bilinear", align_corners=False, antialias=True)
    else:
        o = int(round((CHIP_SIZE - MODEL_INPUT) / 2.0))
        chips = chips[..., o : o + MODEL_INPUT, o : o + MODEL_INPUT]
    return (chips - _MEAN) / _STD


# ----------------------------------------------------------------------------------------------
# py-feat's real code, loaded from its source files.


class _TF:
    """The two torchvision.transforms.v2.functional calls py-feat's preprocess makes, as torchvision
    performs them on float32 NCHW tensors (see the module docstring)."""

    @staticmethod
    def resize(chips, size, antialias=True):
        return F.interpolate(chips, size=list(size), mode="bilinear", align_corners=False, antialias=antialias)

    @staticmethod
    def center_crop(chips, size):
        h, w = chips.shape[-2:]
        top, left = int(round((h - size[0]) / 2.0)), int(round((w - size[1]) / 2.0))
        return chips[..., top : top + size[0], left : left + size[1]]


class _RecordingF:
    """Stands in for torch.nn.functional inside py-feat's crop functions: grid_sample also records
    the caller's local variables (the float clamped box that the v2.4 function does not return)."""

    def __init__(self):
        self.locals = None

    def __getattr__(self, name):
        return getattr(F, name)

    def grid_sample(self, *args, **kwargs):
        self.locals = dict(sys._getframe(1).f_locals)
        return F.grid_sample(*args, **kwargs)


def _function_source(source: str, name: str, cls: str | None = None):
    tree = ast.parse(source)
    scope = tree.body
    if cls is not None:
        scope = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    node = next(n for n in scope if isinstance(n, ast.FunctionDef) and n.name == name)
    text = textwrap.dedent(ast.get_source_segment(source, node, padded=True))
    return text, node.lineno, node.end_lineno


def _exec_function(source: str, name: str, origin: str, namespace: dict, cls: str | None = None):
    text, first, last = _function_source(source, name, cls)
    exec(compile(text, f"{origin}:{first}", "exec"), namespace)
    return namespace[name], f"{origin}:{first}-{last}"


class PyFeat:
    """py-feat's functions where the sources are there; None where not."""

    def __init__(self, src_dir: str, git_dir: str):
        self.square = self.stretch = self.preprocess_aa = self.preprocess_cc = None
        self.origins = {}
        self.f_square, self.f_stretch = _RecordingF(), _RecordingF()
        ops = os.path.join(src_dir, "feat", "utils", "image_operations.py")
        inf = os.path.join(src_dir, "feat", "multitask", "inference.py")
        wheel = f"py-feat {os.path.basename(os.path.normpath(src_dir))} wheel"
        if os.path.isfile(ops) and os.path.isfile(inf):
            with open(ops) as fh:
                self.square, self.origins["square"] = _exec_function(
                    fh.read(), "extract_face_square_pad_torch", f"{wheel} feat/utils/image_operations.py",
                    {"torch": torch, "F": self.f_square})
            with open(inf) as fh:
                self.preprocess_aa, self.origins["antialias_bilinear"] = _exec_function(
                    fh.read(), "preprocess", f"{wheel} feat/multitask/inference.py", self._preprocess_globals(),
                    cls="MultitaskModel")
        try:
            show = lambda path: subprocess.run(  # noqa: E731
                ["git", "-C", git_dir, "show", f"{V24_COMMIT}:{path}"], check=True, capture_output=True, text=True).stdout
            ops24, inf24 = show("feat/utils/image_operations.py"), show("feat/multitask/inference.py")
        except (OSError, subprocess.CalledProcessError):
            return
        self.stretch, self.origins["stretch"] = _exec_function(
            ops24, "extract_face_from_bbox_torch", f"py-feat git {V24_COMMIT}:feat/utils/image_operations.py",
            {"torch": torch, "F": self.f_stretch})
        self.preprocess_cc, self.origins["center_crop"] = _exec_function(
            inf24, "preprocess", f"py-feat git {V24_COMMIT}:feat/multitask/inference.py", self._preprocess_globals(), cls="MultitaskModel")

    @staticmethod
    def _preprocess_globals():
        return {"torch": torch, "F": F, "TF": _TF, "CHIP_SIZE": CHIP_SIZE, "MODEL_INPUT": MODEL_INPUT}

    @staticmethod
    def model_self():
        # MultitaskModel.__init__ (inference.py:126-127): mean/std as float32 [3,1,1] tensors.
        return types.SimpleNamespace(device=torch.device("cpu"), _mean=_MEAN.clone(), _std=_STD.clone())


# ----------------------------------------------------------------------------------------------
# The cases.

FRAMES = {
    "A": ("noise", 1, 1280, 720),
    "B": ("noise", 2, 97, 61),
    "C": ("noise", 3, 300, 500),
    "D": ("gray-noise", 4, 64, 48),
    "E": ("noise", 7, 2, 9),
    "chip1": ("noise", 5, 256, 256),
    "chip2": ("noise", 6, 256, 256),
}

# (frame, name, box [x1, y1, x2, y2]); each runs with both crops.
BOXES = [
    ("A", "inside, fractional", [500.25, 200.5, 700.75, 450.125]),
    ("A", "far from the origin, fractional", [1000.37, 500.81, 1250.13, 700.49]),
    ("A", "off the left edge", [-80.5, 300.0, 120.0, 520.0]),
    ("A", "off the top edge", [600.0, -150.3, 780.0, 90.0]),
    ("A", "off the right edge", [1180.0, 250.0, 1350.5, 430.0]),
    ("A", "off the bottom edge", [300.0, 620.0, 480.0, 800.9]),
    ("A", "tiny 3x4 box", [640.3, 360.7, 643.3, 364.7]),
    ("A", "huge box, larger than the frame", [-400.0, -300.0, 1700.0, 1100.0]),
    ("B", "inside, fractional", [20.5, 10.25, 70.75, 50.5]),
    ("B", "tiny 3x4 box", [40.1, 30.2, 43.1, 34.2]),
    ("B", "off the top-left corner", [-10.0, -5.0, 30.0, 25.0]),
    ("B", "huge box, larger than the frame", [-100.0, -80.0, 200.0, 150.0]),
    ("C", "inside", [50.0, 100.0, 250.0, 380.0]),
    ("C", "off the right and bottom edges", [220.6, 400.4, 330.2, 540.8]),
    ("C", "huge box, several reflections", [-900.0, -700.0, 1200.0, 1300.0]),
    ("D", "inside (gray frame)", [10.0, 8.0, 50.0, 40.0]),
    ("D", "off the bottom-right corner (gray frame)", [40.5, 30.25, 70.0, 55.0]),
    ("A", "sub-pixel box at the bottom-right corner (square side clamped to 1)", [1279.2, 719.1, 1279.6, 719.5]),
    ("B", "sub-pixel box (square side clamped to 1)", [40.2, 30.3, 40.6, 30.5]),
    ("E", "2-pixel-wide frame, the box over all of it", [0.0, 0.0, 2.0, 9.0]),
    ("E", "2-pixel-wide frame, a sub-pixel box", [0.6, 3.2, 0.9, 3.4]),
]
PYFEAT_RESIZE = {"square": "antialias_bilinear", "stretch": "center_crop"}
# The native code takes crop and resize separately (the model file's metadata names each), so
# two cases also cross them.
CROSSED = [("A", "inside, fractional", "square", "center_crop"), ("C", "off the right and bottom edges", "stretch", "antialias_bilinear")]


def f32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


def b64(t: torch.Tensor) -> str:
    """Base64 of the tensor's values as little-endian float32 / float64 / int32 (no numpy needed)."""
    fmt = {torch.float32: "f", torch.float64: "d", torch.int32: "i"}[t.dtype]
    return base64.b64encode(struct.pack(f"<{t.numel()}{fmt}", *t.flatten().tolist())).decode("ascii")


class Runner:
    def __init__(self, pyfeat: PyFeat):
        self.pf = pyfeat
        self.checked = {"square": 0, "stretch": 0, "antialias_bilinear": 0, "center_crop": 0}

    def frames_unit(self, frame_hwc: torch.Tensor) -> torch.Tensor:
        # detector_v2.py:138-140: convert_image_to_tensor gives [B,3,H,W] uint8; .float(); / 255.0
        frames = frame_hwc.permute(2, 0, 1).unsqueeze(0).contiguous()
        frames_px = frames.float()
        return frames_px / 255.0

    def crop(self, mode, frames_unit, boxes):
        """-> chips, window [x, y, w, h] (float32 values), reported box [x, y, w, h]."""
        if mode == "square":
            chips, affine = square_crop(frames_unit, boxes, face_size=CHIP_SIZE, expand_bbox=EXPAND_BBOX)
            if self.pf.square is not None:
                real, real_affine = self.pf.square(frames_unit, boxes, face_size=CHIP_SIZE, expand_bbox=EXPAND_BBOX)
                assert torch.equal(real, chips) and torch.equal(real_affine, affine), "square restatement differs from py-feat"
                self.checked["square"] += 1
            ox, oy, side = affine[0]
            # _crop_affine_to_box (detector_v2.py:61-73) then convert_bbox_output
            # (image_operations.py:1606-1615): x1, y1, x2 - x1, y2 - y1, in float32.
            nb = torch.stack([ox, oy, ox + side, oy + side])
            box = [nb[0], nb[1], nb[2] - nb[0], nb[3] - nb[1]]
            window = [ox, oy, side, side]
        else:
            chips, new_bboxes, fbox = stretch_crop(frames_unit, boxes, face_size=CHIP_SIZE, expand_bbox=EXPAND_BBOX)
            if self.pf.stretch is not None:
                real, real_nb = self.pf.stretch(frames_unit, boxes, face_size=CHIP_SIZE, expand_bbox=EXPAND_BBOX)
                loc = self.pf.f_stretch.locals
                real_fbox = torch.stack([loc["new_x1"], loc["new_y1"], loc["new_x2"], loc["new_y2"]], dim=-1)
                assert torch.equal(real, chips) and torch.equal(real_nb, new_bboxes) and torch.equal(real_fbox, fbox), \
                    "stretch restatement differs from py-feat"
                self.checked["stretch"] += 1
            nx1, ny1, nx2, ny2 = fbox[0]
            window = [nx1, ny1, nx2 - nx1, ny2 - ny1]  # the extent is the grid's (new_x2 - new_x1)
            rb = new_bboxes[0]
            box = [rb[0], rb[1], rb[2] - rb[0], rb[3] - rb[1]]
        return chips, [float(v) for v in window], [float(v) for v in box]

    def preprocess(self, resize, chips):
        x = to_input(chips, resize)
        real = self.pf.preprocess_aa if resize == "antialias_bilinear" else self.pf.preprocess_cc
        if real is not None:
            assert torch.equal(real(PyFeat.model_self(), chips), x), f"{resize} restatement differs from py-feat"
            self.checked[resize] += 1
        return x


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "test", "fixtures", "preprocess-torch.json"))
    ap.add_argument("--pyfeat-src", default="/tmp/pyfeat-research/src/2.1.5", help="unpacked py-feat 2.1.5 wheel")
    ap.add_argument("--pyfeat-git", default="/work/.mirror/cosanlab+py-feat/repo", help=f"py-feat git repository holding {V24_COMMIT}")
    args = ap.parse_args()

    torch.set_num_threads(1)
    cap = torch.backends.cpu.get_cpu_capability()
    if cap not in ("AVX2", "AVX512"):
        # torch's grid_sample rounds (g + 1) * W/2 - 0.5 once (FMA) in its AVX2/AVX512 kernels,
        # twice in the DEFAULT one: one ulp of source coordinate, up to ~6e-5 per value on noise.
        print(f"warning: torch runs its {cap} CPU kernels; the fixture was made with AVX2/AVX512 ones "
              "(fused multiply-add in grid_sample), so values may differ from it by up to ~1e-4", file=sys.stderr)
    pf = PyFeat(args.pyfeat_src, args.pyfeat_git)
    run = Runner(pf)
    positions = sample_positions()
    frames = {k: make_frame(*v) for k, v in FRAMES.items()}

    jobs = []
    for frame, name, box in BOXES:
        for crop in ("square", "stretch"):
            jobs.append((frame, name, box, crop, PYFEAT_RESIZE[crop]))
    boxes_by_name = {(f, n): b for f, n, b in BOXES}
    for frame, name, crop, resize in CROSSED:
        jobs.append((frame, name, boxes_by_name[(frame, name)], crop, resize))
    jobs.append(("chip1", "256x256 chip given directly", None, None, "antialias_bilinear"))
    jobs.append(("chip2", "256x256 chip given directly", None, None, "center_crop"))

    cases = []
    for frame, name, box, crop, resize in jobs:
        kind, seed, width, height = FRAMES[frame]
        unit = run.frames_unit(frames[frame])
        if box is None:
            chips, window, rbox = unit, None, [0.0, 0.0, 256.0, 256.0]
        else:
            boxes = torch.tensor([box], dtype=torch.float32)  # detector boxes are float32
            chips, window, rbox = run.crop(crop, unit, boxes)
        x = run.preprocess(resize, chips)[0]
        assert x.dtype == torch.float32 and x.shape == (3, MODEL_INPUT, MODEL_INPUT)
        flat = x.reshape(-1)
        xd = x.double()
        cases.append({
            "name": f"{width}x{height} {kind}: {name}" + (f", {crop} crop, {resize}" if crop else f", {resize}"),
            "frame": {"kind": kind, "seed": seed, "width": width, "height": height},
            "box": None if box is None else [f32(v) for v in box],
            "crop": crop,
            "resize": resize,
            "window": window,
            "reportedBox": rbox,
            "values": b64(flat[positions]),
            "channelSums": xd.sum(dim=(1, 2)).tolist(),
            "rowSums": b64(xd.sum(dim=2).reshape(-1)),
        })

    fixture = {
        "about": "py-feat face-chip preprocessing computed by torch; made by scripts/make_preprocess_fixtures.py",
        "torch": torch.__version__,
        "cpuCapability": torch.backends.cpu.get_cpu_capability(),
        "pyfeatSources": pf.origins,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "frameGenerator": "byte k of stream seed = lowbias32((seed * 0x9E3779B9 + k) mod 2^32) >>> 24; "
                          "'noise': bytes of the HWC RGB frame in order; 'gray-noise': one byte per pixel, repeated in R, G, B",
        "samplePositions": b64(positions.to(torch.int32)),
        "samples": "values: float32 LE at samplePositions (flat NCHW indices into 3x224x224); "
                   "rowSums: float64 LE [3*224], sum of each row of each plane; channelSums: sum of each plane",
        "cases": cases,
    }
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(fixture, fh, indent=1)
        fh.write("\n")

    print(f"torch {torch.__version__} ({fixture['cpuCapability']}); {len(positions)} sample positions per case")
    if pf.origins:
        for k, v in pf.origins.items():
            print(f"  py-feat {k}: {v} (restatement bit-identical in {run.checked[k]} cases)")
    else:
        print("  py-feat sources not found: restatements only")
    for c in cases:
        w = "-" if c["window"] is None else "[" + ", ".join(f"{v:.6g}" for v in c["window"]) + "]"
        print(f"  {c['name']}: window {w} box {c['reportedBox']} sums {[round(s, 3) for s in c['channelSums']]}")
    print(f"wrote {out}: {len(cases)} cases, {os.path.getsize(out) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
