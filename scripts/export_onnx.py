#!/usr/bin/env python3
"""Export a py-feat face_multitask_v2 checkpoint to ONNX under face-multitask's contract.

    .venv/bin/python scripts/export_onnx.py CHECKPOINT [--out DIR] [--generation G] [--no-fp16]
    .venv/bin/python scripts/export_onnx.py --random-weights --generation v2.4|v2.5|v2.7|v2.8 \
        [--seed N] [--random-config JSON] [--out DIR] [--no-fp16]
    .venv/bin/python scripts/export_onnx.py --check-env

The environment comes from `npm run setup:python` (scripts/setup-python.sh -> .venv/).

What it does, step by step (each step prints a progress line):
  1. reads the checkpoint: a torch pickle {"model": state_dict, "config": dict} (v2.4's
     face_multitask_v2.pt) or a safetensors file whose metadata holds the config as JSON (v2.5+);
  2. tells the generation from the file: tensor names and shapes (hard: they fix the architecture),
     then the file name and the config (see docs/pyfeat-conventions.md);
  3. builds the network with the model class of the py-feat release that ships that generation
     (v2.5: py-feat 2.0.3; v2.7: 2.1.1; v2.8: 2.1.5; v2.4: 2.0.3's classes, which build exactly the
     dev-commit 3128756c network, see scripts/pyfeat_v24/), loads the weights strictly, eval, FP32;
  4. exports FP32 ONNX through a wrapper that returns only the contract's tensors in a fixed order
     (opset 17, input `input`, dynamic batch axis `N`), and writes the contract metadata, taken from
     the project's own TypeScript (dist/lib/contract-metadata.js: contractMetadata()) so the values
     cannot drift from what the runtime checks;
  5. verifies: ONNX Runtime (CPU) on a random batch of 3 against the PyTorch model, per output;
  6. checks the file with the Node side's contract reader (dist/lib/contract.js readModelSpec);
  7. FP16 (unless --no-fp16; scripts/onnx_fp16.py): converts the FP32 file to FP16 with FP32 islands
     and explicit Casts at their boundaries (GRN, LayerNorm, GroupNorm, the AU graph's normalise /
     cosine / top-k / adjacency, the AU cosine classifier, mesh -> unified features, v2.6+ eye boxes,
     RoiAlign and pose rotation, the gaze readout), float32 input and outputs, the FP32 file's
     metadata with face_multitask.precision=fp16; checks the graph (onnx checker, strict type
     inference, every node in its intended precision); compares it with the FP32 file in ONNX
     Runtime (CPU) on face crops of py-feat's test photos and on noise, per output, against fixed
     tolerances (AU 0.02, emotion probability 0.01, valence/arousal 0.01, gaze 0.01 rad, mesh 0.5 px
     on the 256 chip, pose 0.01, blendshapes 0.02); any NaN or a difference over a tolerance fails
     the export (exit status 1) and leaves no FP16 file; then the Node contract reader checks it.
  8. TensorRT (scripts/tensorrt_onnx_rules.py): at step 4 each EyeLike of a static size becomes the
     constant it makes (TensorRT's parser refuses one it cannot size while parsing); both files are
     checked against what TensorRT's ONNX parser states it refuses, each problem printed as a warning
     (the CPU path runs such a file; `face-multitask build` would fail on it).

Output: <out>/face_multitask_<gen>[.random-seed<N>].fp32.onnx and, unless --no-fp16, .fp16.onnx
(<out>: --out, else the checkpoint's folder; with --random-weights, the current directory).

Exit status: 0 done, 1 the export failed (an unreadable or unknown checkpoint, an output folder
that cannot be written, a failed check, a missing environment), 2 bad arguments (argparse's usage
errors, and a --random-config the release's config or network refuses), as the face-multitask CLI; 130 when interrupted (Ctrl-C, SIGTERM, SIGHUP), which the CLI reports as 1.
Failures are reported as one line `[export] error: ...` on stderr.

--random-weights makes a checkpoint of that generation's architecture with seeded random weights
(BatchNorm running statistics, norm affines and ConvNeXt V2's GRN randomised too, so that they
matter), writes it in that generation's own format and file name under <out>/random-seed<N>/, and
exports it exactly like a real checkpoint. --random-config '{"gaze_head_frame": true, "gaze_bins": 0}'
lays settings over the generation's known config (RANDOM_CONFIG), for the architecture variants a real
checkpoint of that release may have (the parity suite runs some).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import types
from pathlib import Path

# ONNX Runtime's Linux wheels (1.29 on) start Microsoft's usage telemetry unless this is set when it is
# imported; off unless the user set it (ORT_DISABLE_TELEMETRY=0 allows it), as in the Node package.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
SETUP_HINT = "npm run setup:python   (bash scripts/setup-python.sh: creates .venv/), then run this script with .venv/bin/python"

OPSET = 17                      # default; >= 16 for RoiAlign's aligned (half_pixel) mode in the v2.7+ gaze head
INPUT_NAME = "input"
BATCH_AXIS = "N"
VERIFY_TOLERANCE = 1e-3
VERIFY_BATCH = 3
EXPORT_BATCH = 2                # differs from VERIFY_BATCH, so the check also exercises the dynamic axis

# Contract outputs in the fixed order the ONNX file lists them (docs/onnx-contract.md).
CONTRACT_OUTPUTS = [           # (name, shape after the batch axis, required)
    ("p_au", (20,), True),
    ("emotion_logits", (7,), True),
    ("va", (2,), True),
    ("gaze", (2,), True),
    ("mesh", (478, 3), True),
    ("pose", (6,), True),
    ("blendshapes", (52,), False),
]


@dataclasses.dataclass(frozen=True)
class Generation:
    name: str
    file_name: str              # py-feat's HF_WEIGHTS_FILE for it
    file_format: str            # "pt" or "safetensors"
    code_release: str           # py-feat release whose feat/multitask builds the network
    code_note: str
    # Published sizes (py-feat's model card on Hugging Face), printed as a sanity check, never enforced.
    published_trainable: int | None = None
    published_state_tensors: tuple[int, int] | None = None   # (numel incl. buffers, tensor count)


GENERATIONS: dict[str, Generation] = {g.name: g for g in [
    Generation("v2.4", "face_multitask_v2.pt", "pt", "2.0.3",
               "py-feat 2.0.3 classes = dev commit 3128756c network (scripts/pyfeat_v24)",
               published_trainable=37_560_058),
    Generation("v2.5", "face_multitask_v2.safetensors", "safetensors", "2.0.3", "py-feat 2.0.3",
               published_trainable=38_226_991),
    Generation("v2.7", "face_multitask_v27.safetensors", "safetensors", "2.1.1", "py-feat 2.1.1"),
    Generation("v2.8", "face_multitask_v28.safetensors", "safetensors", "2.1.5", "py-feat 2.1.5",
               published_state_tensors=(41_694_779, 373)),
]}
NAME_TO_GENERATION = {g.file_name: g.name for g in GENERATIONS.values()}
RELEASES = sorted({g.code_release for g in GENERATIONS.values()})

# Config of each generation's published checkpoint as far as it is known (inferred from the published
# parameter counts in GENERATIONS; the real JSON could not be read). Applied on top of the
# release's ModelV2Config defaults for --random-weights. v2.7's emotion_use_au_prob is not known;
# True (the v2.4/v2.5 value) is used. v2.8's False follows from its exact tensor count.
RANDOM_CONFIG: dict[str, dict] = {
    "v2.5": dict(n_au=20, n_emotion=7, use_head_v3=True, drop_mefl=True, emotion_use_au_prob=True,
                 n_blendshape=52, bs_use_mesh=True, mesh_normalized=True),
    "v2.7": dict(n_au=20, n_emotion=7, use_head_v3=True, drop_mefl=True, emotion_use_au_prob=True,
                 n_blendshape=52, bs_use_mesh=True, mesh_normalized=True,
                 gaze_eye_roi=True, gaze_pose_6d=True, gaze_bins=180, gaze_hidden=0),
    "v2.8": dict(n_au=20, n_emotion=7, use_head_v3=True, drop_mefl=True, emotion_use_au_prob=False,
                 n_blendshape=52, bs_use_mesh=True, mesh_normalized=True,
                 gaze_eye_roi=True, gaze_pose_6d=True, gaze_bins=180, gaze_hidden=0),
}
RANDOM_MARKER = "face_multitask.random_weights_seed"     # safetensors metadata / .pt dict key


class ExportError(Exception):
    """A problem with the input or the environment, reported without a traceback."""


class BadArgument(ExportError):
    """An argument found wrong only once py-feat's code is loaded: exit 2, as argparse's are."""


_T0 = time.monotonic()


def _progress(line: str) -> None:
    """Prints a progress line to stdout. A reader that went away (`export ... | head -1`) ends the
    progress, not the export: stdout then goes to the null device, so neither later lines nor the
    flush at exit fail."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def step(msg: str) -> None:
    _progress(f"[export {time.monotonic() - _T0:7.1f}s] {msg}")


def note(msg: str) -> None:
    _progress(f"                 {msg}")


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------

REQUIRED_MODULES = [            # (import name, pip name)
    ("numpy", "numpy"), ("torch", "torch"), ("torchvision", "torchvision"), ("timm", "timm"),
    ("safetensors", "safetensors"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
]


def require_packages() -> None:
    missing = []
    for mod, pip_name in REQUIRED_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # noqa: PERF203
            missing.append(f"{pip_name} ({e.__class__.__name__}: {e})")
        except (ImportError, MemoryError, OSError) as e:
            # Installed, but it cannot be loaded (out of memory, a broken install): setting up again may not help.
            raise ExportError(f"the Python package {pip_name} of {sys.executable} is installed but cannot be loaded "
                              f"({e.__class__.__name__}: {e}); out of memory, or a broken install") from None
    if missing:
        # A Python the user chose (the CLI runs $FACE_MULTITASK_PYTHON) is theirs to fix, not the venv.
        chosen = os.environ.get("FACE_MULTITASK_PYTHON")
        fix = (f"install {SCRIPTS.parent / 'requirements-python.txt'} into it ({sys.executable} -m pip install -r ...), "
               "or unset FACE_MULTITASK_PYTHON to use the project's .venv" if chosen else f"Install them with: {SETUP_HINT}")
        raise ExportError(f"missing Python package(s) for {sys.executable}"
                          + (" (FACE_MULTITASK_PYTHON)" if chosen else "") + ": " + "; ".join(missing) + f". {fix[0].upper()}{fix[1:]}")


def find_release(release: str) -> Path:
    """The folder that holds py-feat `release`'s `feat/` package (setup-python.sh puts it there)."""
    for base in (Path(sys.prefix), ROOT / ".venv"):
        side = base / f"pyfeat-{release}"
        if (side / "feat" / "multitask" / "model_v2.py").is_file():
            return side
    try:
        dist = importlib.metadata.distribution("py-feat")
        if dist.version == release:
            site = Path(dist.locate_file(""))
            if (site / "feat" / "multitask" / "model_v2.py").is_file():
                return site
    except importlib.metadata.PackageNotFoundError:
        pass
    raise ExportError(f"py-feat {release}'s model code is not installed (looked for "
                      f"{Path(sys.prefix) / f'pyfeat-{release}'} and a pip-installed py-feat=={release}). "
                      f"Install it with: {SETUP_HINT}")


def import_release(release: str):
    """Imports py-feat `release`'s feat.multitask.model_v2 and returns the module.

    feat/__init__.py is not run: it imports xgboost, pandas and the whole detector stack, none of
    which the model needs. A bare `feat` package whose __path__ is the release's folder stands in,
    so `feat.multitask.*` (and the heads it imports lazily) resolve inside that release only. One
    release per process: a second, different release is refused."""
    folder = find_release(release)
    feat_dir = folder / "feat"
    have = sys.modules.get("feat")
    if have is not None:
        if list(getattr(have, "__path__", [])) != [str(feat_dir)]:
            raise ExportError(f"this process already imported feat from {list(getattr(have, '__path__', []))}; "
                              f"py-feat {release} needs a separate process")
    else:
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
        pkg = types.ModuleType("feat")
        pkg.__path__ = [str(feat_dir)]
        pkg.__file__ = str(feat_dir / "__init__.py")
        pkg.__package__ = "feat"
        pkg.__doc__ = f"py-feat {release} (feat/__init__.py not run: face-multitask export stub)"
        sys.modules["feat"] = pkg
    try:
        mv2 = importlib.import_module("feat.multitask.model_v2")
    except ImportError as e:
        raise ExportError(f"importing py-feat {release}'s feat.multitask.model_v2 from {folder} failed: {e}. "
                          f"Install the environment with: {SETUP_HINT}") from e
    if not Path(mv2.__file__).resolve().is_relative_to(feat_dir.resolve()):
        raise ExportError(f"feat.multitask.model_v2 came from {mv2.__file__}, not from {feat_dir}")
    dist_info = list(folder.glob(f"py_feat-{release}.dist-info"))
    if not dist_info:
        raise ExportError(f"{folder} holds no py_feat-{release}.dist-info: not py-feat {release}? ({SETUP_HINT})")
    return mv2


def check_env() -> int:
    """--check-env: versions, and each release's model classes imported in a process of its own."""
    require_packages()
    import numpy, onnx, onnxruntime, safetensors, timm, torch, torchvision  # noqa: E401
    print(f"python {sys.version.split()[0]} ({sys.executable})")
    for m in (torch, torchvision, timm, safetensors, onnx, onnxruntime, numpy):
        print(f"  {m.__name__:12s} {m.__version__}")
    ok = True
    for release in RELEASES:
        r = subprocess.run([sys.executable, __file__, "--import-release", release],
                           capture_output=True, text=True)
        print(("  " + r.stdout.strip()) if r.returncode == 0 else
              f"  py-feat {release}: FAILED\n{r.stdout}{r.stderr}")
        ok = ok and r.returncode == 0
    return 0 if ok else 1


def import_release_main(release: str) -> int:
    mv2 = import_release(release)
    extra = ""
    if release == GENERATIONS["v2.4"].code_release:
        sys.path.insert(0, str(SCRIPTS))
        import pyfeat_v24
        pyfeat_v24.check_release_code(mv2)
        extra = f"; v2.4 (3128756c) config relation checked"
    fields = len(dataclasses.fields(mv2.ModelV2Config))
    print(f"py-feat {release}: {Path(mv2.__file__).parent} (ModelV2Config: {fields} fields{extra})")
    return 0


# ---------------------------------------------------------------------------------------------
# Reading a checkpoint
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Checkpoint:
    path: Path
    file_format: str                    # "pt" | "safetensors"
    config: dict
    state_dict: dict                    # name -> torch.Tensor
    random_seed: int | None             # set when this exporter made it with --random-weights


def sniff_format(path: Path) -> str:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "pt"                                      # torch.save's zip format
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "pt"                                      # legacy torch.save pickle
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
        if head[8:9] == b"{":                            # a safetensors header cut off: a partial download
            raise ExportError(f"{path}: a safetensors file cut off: its header alone is {n} bytes, the file "
                              f"{size} (an interrupted download or copy?)")
    hint = " (it looks like an ONNX file already)" if path.suffix == ".onnx" else ""
    raise ExportError(f"{path}: neither a torch checkpoint (a pickle of {{'model': state_dict, 'config': dict}}) "
                      f"nor a safetensors file{hint}; first bytes {head[:8]!r}")


def safetensors_cut_off(path: Path) -> str | None:
    """Why a safetensors file whose header reads is still unreadable, where it is shorter than its
    header says its tensors are (a download stopped after the header)."""
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        need, size = 8 + n + int(end), path.stat().st_size
    except (OSError, ValueError, TypeError, KeyError, IndexError, struct.error):
        return None
    if size >= need:
        return None
    return f"a safetensors file cut off: its tensors end at byte {need}, the file has {size} (an interrupted download or copy?)"


def random_marker(path: Path, value) -> int | None:
    """The seed a --random-weights checkpoint records (RANDOM_MARKER), or None when there is none."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ExportError(f"{path}: {RANDOM_MARKER} is {value!r}, not the integer seed this exporter "
                          f"writes") from None


def read_checkpoint(path: Path, trust_pickle: bool) -> Checkpoint:
    import torch
    fmt = sniff_format(path)
    random_seed = None
    if fmt == "safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise ExportError(f"{path}: {safetensors_cut_off(path) or 'not a readable safetensors file'}: {e}") from e
        if "config" not in meta:
            raise ExportError(f"{path}: safetensors metadata has no 'config' (py-feat's files keep the "
                              f"model config there as JSON); metadata keys: {sorted(meta)}")
        try:
            config = json.loads(meta["config"])
        except json.JSONDecodeError as e:
            raise ExportError(f"{path}: safetensors metadata 'config' is not JSON: {e}") from e
        if not isinstance(config, dict):
            kind = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
            raise ExportError(f"{path}: safetensors metadata 'config' is {kind.get(type(config), 'null')}, "
                              f"not a JSON object of the model's settings")
        random_seed = random_marker(path, meta.get(RANDOM_MARKER))
    else:
        try:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=not trust_pickle)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError...
            if not trust_pickle and "weights_only" in str(e):
                # torch's own text goes on about options it lists later, with terminal colour codes: only
                # the line naming what it refused is kept.
                plain = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
                # What it refused, without torch's advice (add_safe_globals: for a caller of torch.load, not of this CLI).
                found = re.search(r"Unsupported global: GLOBAL [\w.]+", plain)
                why = found.group(0) if found else ""
                raise ExportError(f"{path}: the pickle holds objects beyond tensors and plain containers, "
                                  f"which torch.load(weights_only=True) refuses. If you trust the file, "
                                  f"pass --trust-pickle." + (f" ({why})" if why else "")) from e
            raise ExportError(f"{path}: not a readable torch checkpoint: {e.__class__.__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from e
        if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
            keys = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else []
            if keys and all(hasattr(v, "shape") for v in ckpt.values()):
                what = f"a bare state dict of {len(keys)} tensors ({', '.join(keys[:3])}, ...), without the config"
            elif isinstance(ckpt, dict):
                what = f"a dict with keys {keys[:10]}" + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
            else:
                what = type(ckpt).__name__
            raise ExportError(f"{path}: a torch pickle, but not py-feat's {{'model': state_dict, 'config': dict}} "
                              f"checkpoint: it holds {what}")
        state, config = ckpt["model"], ckpt["config"]
        if dataclasses.is_dataclass(config):
            config = dataclasses.asdict(config)
        elif not isinstance(config, dict) and hasattr(config, "__dict__"):
            config = dict(vars(config))
        if not isinstance(config, dict):
            raise ExportError(f"{path}: checkpoint 'config' is a {type(config).__name__}, not a dict")
        random_seed = random_marker(path, ckpt.get(RANDOM_MARKER))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{path}: the weights are not a flat name -> tensor state dict")
    return Checkpoint(path, fmt, config, state, random_seed)


# ---------------------------------------------------------------------------------------------
# Telling the generation
# ---------------------------------------------------------------------------------------------

def structural_candidates(state: dict) -> tuple[list[str], str]:
    """Generations whose architecture fits the tensors (the heads each generation has: docs/pyfeat-conventions.md,
    'Which release ships which generation'), and a one-line description of the evidence."""
    keys = set(state)
    has_bs = any(k.startswith("blendshape.") for k in keys)
    legacy_gaze = "gaze.left_yaw.weight" in keys
    v26 = v26_gaze_inputs(state)
    emo = state.get("emotion.cls_head.weight")
    emo_in = tuple(emo.shape)[1] if emo is not None else None
    gaze = (f"v2.6+ ({', '.join(v26)})" if v26 else "four scalar FCs (v2.3-v2.5)" if legacy_gaze else "unknown")
    ev = f"blendshape head: {'yes' if has_bs else 'no'}; gaze head: {gaze}; emotion input width: {emo_in}"
    if not any(k.startswith("backbone.") for k in keys) or emo is None:
        return [], ev
    if legacy_gaze and not v26:
        return (["v2.5"] if has_bs else ["v2.4"]), ev
    if has_bs and v26:
        return ["v2.7", "v2.8"], ev
    return [], ev


def v26_gaze_inputs(state: dict) -> list[str]:
    """The v2.6 gaze features the tensors show, each a config switch of py-feat 2.1.x (2.0.3's config has
    no gaze_* field, so any of them means v2.7+): the eye-window encoder (gaze_eye_roi), GazeHeadV26's
    per-eye layers (gaze_bins, gaze_head_frame, gaze_hidden), or scalar FCs that read more than the
    unified features (the 6D pose, gaze_pose_6d)."""
    found = []
    if "gaze_eye_enc.enc.0.weight" in state:
        found.append("eye windows")
    if "gaze.left.weight" in state or "gaze.left.0.weight" in state:
        found.append("per-eye layers")
    fc, bb, lmk = (state.get(k) for k in ("gaze.left_yaw.weight", "unified.norm_bb.weight", "unified.norm_lmk.weight"))
    if not found and fc is not None and bb is not None and lmk is not None and fc.shape[1] != bb.shape[0] + lmk.shape[0]:
        found.append("extra inputs")
    return found


def generation_from_name(path: Path) -> str | None:
    return NAME_TO_GENERATION.get(path.name)


def generation_from_config(config: dict) -> str | None:
    """A generation named in the config itself, if the file's config carries one (py-feat's loader
    ignores such keys; whether the published configs have one is not known)."""
    for key in ("generation", "model_version", "version"):
        v = config.get(key)
        if isinstance(v, str):
            m = re.fullmatch(r"v?(2\.[4578])[a-z]?", v.strip())
            if m:
                return "v" + m.group(1)
    return None


def tell_generation(ckpt: Checkpoint, forced: str | None) -> str:
    cands, evidence = structural_candidates(ckpt.state_dict)
    note(f"tensors: {len(ckpt.state_dict)}; {evidence}")
    if not cands:
        raise ExportError(f"{ckpt.path}: the tensors fit no known face_multitask_v2 generation ({evidence}); "
                          f"is this py-feat's multitask checkpoint?")
    by_name = generation_from_name(ckpt.path)
    by_config = generation_from_config(ckpt.config)
    note(f"fits: {', '.join(cands)}; file name says: {by_name or '-'}; config says: {by_config or '-'}")
    if forced:
        if forced not in cands:
            raise ExportError(f"{ckpt.path}: --generation {forced}, but the tensors are a {'/'.join(cands)} "
                              f"architecture ({evidence})")
        for what, g in (("file name", by_name), ("config", by_config)):
            if g and g != forced:
                note(f"warning: the {what} says {g}; --generation {forced} wins")
        return forced
    for what, g in (("file name", by_name), ("config", by_config)):
        if g and g not in cands:
            raise ExportError(f"{ckpt.path}: the {what} says {g}, but the tensors are a {'/'.join(cands)} "
                              f"architecture ({evidence}); pass --generation to pick one of {cands} if the "
                              f"{what} is wrong")
    if by_name and by_config and by_name != by_config:
        raise ExportError(f"{ckpt.path}: the file name says {by_name} but the config says {by_config}; "
                          f"pass --generation")
    if by_name or by_config:
        return by_name or by_config
    if len(cands) == 1:
        return cands[0]
    raise ExportError(f"{ckpt.path}: the tensors fit {' and '.join(cands)} (the same architecture) and neither the "
                      f"file name nor the config tells them apart; pass --generation {'|'.join(cands)}")


# ---------------------------------------------------------------------------------------------
# Building the network
# ---------------------------------------------------------------------------------------------

def release_config(mv2, saved_cfg: dict) -> tuple[object, list[str]]:
    """py-feat 2.x inference.py (2.0.3 and 2.1.5: lines 105-110): keep the ModelV2Config fields
    except pretrained (forced False) and use_head_v2 (taken from the saved config)."""
    valid = {f.name for f in dataclasses.fields(mv2.ModelV2Config)}
    filtered = {k: v for k, v in saved_cfg.items() if k in valid and k not in ("pretrained", "use_head_v2")}
    dropped = sorted(k for k in saved_cfg if k not in valid)
    cfg = mv2.ModelV2Config(**filtered, pretrained=False, use_head_v2=saved_cfg.get("use_head_v2", False))
    return cfg, dropped


def build_network(gen: str, mv2, saved_cfg: dict):
    """The generation's network from its release's classes. Returns (model, cfg, dropped keys)."""
    try:
        if gen == "v2.4":
            sys.path.insert(0, str(SCRIPTS))
            import pyfeat_v24
            return pyfeat_v24.build_model(mv2, saved_cfg)
        cfg, dropped = release_config(mv2, saved_cfg)
        return mv2.MEGraphAUv2(cfg), cfg, dropped
    except ExportError:
        raise
    except Exception as e:
        if out_of_memory(e):
            raise  # not the config's fault: said as such by main()
        raise ExportError(f"the checkpoint's config does not fit py-feat {GENERATIONS[gen].code_release}'s "
                          f"MEGraphAUv2 ({e.__class__.__name__}: {e}); config: {json.dumps(saved_cfg, sort_keys=True)}") from e


def check_config_against_tensors(gen: str, cfg, state: dict, model=None) -> None:
    """Clear messages for the usual ways a config and its tensors disagree (the strict load below
    would catch them too, as a list of keys)."""
    problems = []
    emo = state.get("emotion.cls_head.weight")
    if emo is not None and getattr(cfg, "use_head_v3", False):
        # UnifiedFeatures.out_dim: the backbone's channels (768 for ConvNeXt V2-Tiny, the published
        # one; a fine-tuned checkpoint may have another backbone) + the landmark projection.
        unified = getattr(getattr(model, "unified", None), "out_dim", None)
        if not isinstance(unified, int):
            unified = 768 + int(getattr(cfg, "unified_lmk_dim", 256))
        want = unified + (cfg.n_au if getattr(cfg, "emotion_use_au_prob", False) else 0)
        if emo.shape[1] != want:
            problems.append(f"emotion_use_au_prob={getattr(cfg, 'emotion_use_au_prob', None)} means an emotion "
                            f"input of {want}, but emotion.cls_head.weight is {list(emo.shape)}")
    # The v2.6+ gaze head's last layer per eye (an MLP's with gaze_hidden > 0): 2 x gaze_bins logits,
    # or a 3-vector with gaze_head_frame (heads_v26.GazeHeadV26.out_dim).
    name = "gaze.left.2.weight" if "gaze.left.2.weight" in state else "gaze.left.weight"
    left = state.get(name)
    if left is not None:
        bins = int(getattr(cfg, "gaze_bins", 0) or 0)
        head_frame = bool(getattr(cfg, "gaze_head_frame", False))
        want = 3 if head_frame else 2 * bins if bins else 2
        if left.shape[0] != want:
            problems.append(f"gaze_bins={bins} and gaze_head_frame={head_frame} mean {want} gaze outputs per eye, "
                            f"but {name} is {list(left.shape)}")
    au = state.get("log_var_au")
    if au is not None and au.shape[0] != cfg.n_au:
        problems.append(f"n_au={cfg.n_au}, but log_var_au has {au.shape[0]}")
    bs = state.get("blendshape.mlp.2.weight")
    if bs is not None and bs.shape[0] != getattr(cfg, "n_blendshape", 0):
        problems.append(f"n_blendshape={getattr(cfg, 'n_blendshape', 0)}, but blendshape.mlp.2.weight is {list(bs.shape)}")
    if gen != "v2.4" and not getattr(cfg, "mesh_normalized", True):
        # Not refused: the export copies what the shipping release does with this config.
        note(f"warning: mesh_normalized is false (or absent: py-feat {GENERATIONS[gen].code_release}'s default), "
             f"but py-feat decodes {gen}'s mesh as [0,1]; the network divides it by {cfg.image_size} again "
             f"inside, exactly as py-feat {GENERATIONS[gen].code_release} would")
    if problems:
        raise ExportError(f"the checkpoint's config does not fit its tensors under py-feat "
                          f"{GENERATIONS[gen].code_release}'s class: " + "; ".join(problems))


def load_strict(model, state: dict, source: str) -> None:
    """Every tensor of the model from the file and nothing else; names the offending keys.
    log_var_* (training-only loss weights) are model parameters, so they must be there too."""
    import torch
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    # BatchNorm's step counter, never read in eval: torch fills it in when a plain dict (what
    # safetensors gives, as py-feat loads it) lacks it, and py-feat accepts such a file.
    counters = [k for k in missing if k.endswith(".num_batches_tracked")]
    if counters:
        note(f"{source}: no num_batches_tracked for {len(counters)} BatchNorm layer(s) (a training counter, "
             f"unused in inference): torch sets it, as py-feat's load does")
        missing = [k for k in missing if k not in counters]
    unexpected = sorted(set(state) - set(own))
    shape = sorted(f"{k}: file {list(state[k].shape)} vs model {list(own[k].shape)}"
                   for k in set(own) & set(state) if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shape:
        def show(xs):
            return ", ".join(xs[:12]) + (f", ... ({len(xs)} in all)" if len(xs) > 12 else "")
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {show(unexpected)}")
        if shape:
            parts.append(f"shape mismatch {len(shape)}: {show(shape)}")
        raise ExportError(f"{source}: the weights do not fit the model; " + "; ".join(parts))
    # Integers only where the model keeps counters (BatchNorm's num_batches_tracked, any int width,
    # as load_state_dict copies it); a weight stored as an integer would lose its values.
    wrong = sorted(f"{k} ({str(v.dtype).replace('torch.', '')})" for k, v in state.items()
                   if not v.is_floating_point() and k in own and own[k].is_floating_point())
    if wrong:
        raise ExportError(f"{source}: weights stored as integers, not floating point: {', '.join(wrong[:12])}"
                          + (f", ... ({len(wrong)} in all)" if len(wrong) > 12 else ""))
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in state.items()}, strict=True)


def count_params(model) -> tuple[int, int, int]:
    trainable = sum(p.numel() for p in model.parameters())
    sd = model.state_dict()
    return trainable, sum(v.numel() for v in sd.values()), len(sd)


# ---------------------------------------------------------------------------------------------
# Random weights
# ---------------------------------------------------------------------------------------------

def randomise(model, seed: int, mesh_normalized: bool, image_size: int) -> None:
    """Seeded random values for everything the default init leaves constant, so that every
    tensor influences the outputs: BatchNorm running mean/var and affine, LayerNorm / GroupNorm
    affine, ConvNeXt V2 GRN gamma/beta (zero at init, which makes GRN an identity), log_var_*.
    The mesh head's output bias is placed inside the chip (x, y uniform in its middle half), so
    that the v2.6+ eye boxes, which the model places with its own mesh, land on the feature map."""
    import torch
    import torch.nn as nn
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.num_batches_tracked.fill_(1000)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        for name, p in model.named_parameters():
            if name.endswith(("grn.weight", "grn.bias")):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.startswith("log_var_"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        last = model.lmk.mlp[-1]
        scale = 1.0 if mesh_normalized else float(image_size)
        b = last.bias.view(-1, 3)
        b[:, :2] = (0.25 + 0.5 * torch.rand(b[:, :2].shape, generator=g)) * scale
        b[:, 2] = 0.05 * torch.randn(b[:, 2].shape, generator=g) * scale


def make_random_checkpoint(gen: str, seed: int, out_dir: Path, overrides: dict | None = None,
                           zero_au_node: int | None = None) -> Path:
    import torch
    G = GENERATIONS[gen]
    mv2 = import_release(G.code_release)
    if gen == "v2.4":
        sys.path.insert(0, str(SCRIPTS))
        import pyfeat_v24
        saved_cfg = pyfeat_v24.random_config()             # 3128756c's field set
    else:
        saved_cfg = dataclasses.asdict(mv2.ModelV2Config(**RANDOM_CONFIG[gen]))
    if overrides:
        unknown = sorted(set(overrides) - set(saved_cfg))
        if unknown:
            raise BadArgument(f"--random-config: {', '.join(unknown)}: not a setting of {gen}'s config "
                              f"(py-feat {G.code_release}); its settings: {', '.join(sorted(saved_cfg))}")
        saved_cfg.update(overrides)
    step(f"random weights: {gen} architecture, seed {seed}, py-feat {G.code_release} classes"
         + (f", config changed: {json.dumps(overrides, sort_keys=True)}" if overrides else ""))
    torch.manual_seed(seed)
    try:
        model, cfg, _ = build_network(gen, mv2, saved_cfg)
    except ExportError as e:
        if not overrides:
            raise
        # The release's own config builds (tested): what the network refuses is the change.
        raise BadArgument(f"--random-config {json.dumps(overrides, sort_keys=True)}: py-feat "
                          f"{G.code_release}'s network cannot be built with it ({e.__cause__.__class__.__name__}: "
                          f"{e.__cause__})" if e.__cause__ else f"--random-config: {e}") from e
    randomise(model, seed, bool(getattr(cfg, "mesh_normalized", False)) and gen != "v2.4", cfg.image_size)
    if zero_au_node is not None:
        # Its branch (1x1 conv, BatchNorm, ReLU) gives 0 everywhere: a BatchNorm bias far below what
        # the conv can reach. Real weights make such all-zero nodes on some faces.
        with torch.no_grad():
            model.afg.heads[zero_au_node][1].bias.fill_(-1e4)
        note(f"AU node {zero_au_node}: all zero for every input (its branch's BatchNorm bias -1e4)")
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    ckpt_dir = out_dir / f"random-seed{seed}"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / G.file_name
    # Written aside and renamed when whole: an interrupted save leaves no cut-off checkpoint under
    # the real name (which a rerun would then read).
    partial = path.with_name(path.name + ".partial")
    try:
        if G.file_format == "pt":
            torch.save({"model": state, "config": saved_cfg, RANDOM_MARKER: seed}, str(partial))
        else:
            from safetensors.torch import save_file
            save_file(state, str(partial), metadata={"config": json.dumps(saved_cfg), RANDOM_MARKER: str(seed)})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)  # as torch.save's and the ONNX files (safetensors writes 0600)
        os.replace(partial, path)
    except BaseException as e:
        partial.unlink(missing_ok=True)
        if not any(ckpt_dir.iterdir()):
            ckpt_dir.rmdir()  # made for it: nothing left behind
        if isinstance(e, Exception):
            # A full disk, a file size limit: safetensors' own error is no OSError, and would be a traceback.
            raise ExportError(f"cannot write {path}: {e.__class__.__name__}: {e}") from e
        raise
    note(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {len(state)} tensors)")
    return path


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------

def make_wrapper(model, output_names: list[str]):
    import torch

    class ContractOutputs(torch.nn.Module):
        """forward() -> the contract's tensors only, in CONTRACT_OUTPUTS order (py-feat's dict also
        holds None entries, the AU node features `h`, `e`, `cooccur` and, v2.6+, `gaze_logits`)."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input):  # noqa: A002 - the ONNX input name
            out = self.net(input)
            return tuple(out[name] for name in output_names)

    return ContractOutputs(model).eval()


def contract_metadata(gen: str, extra: dict[str, str], metadata_json: Path | None) -> dict[str, str]:
    """The face_multitask.* entries, from the project's TypeScript (lib/contract-metadata.ts ->
    dist/lib/contract-metadata.js), or from a JSON file the Node side wrote (--contract-metadata)."""
    if metadata_json is not None:
        try:
            meta = json.loads(metadata_json.read_text())
        except json.JSONDecodeError as e:
            raise ExportError(f"--contract-metadata {metadata_json}: not JSON ({e})") from None
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ExportError(f"--contract-metadata {metadata_json}: must be a JSON object of strings "
                              "(the face_multitask.* metadata entries)")
        for k, v in extra.items():
            key = k if k.startswith("face_multitask.") else "face_multitask." + k
            if key in meta and meta[key] != v:
                raise ExportError(f"{metadata_json}: {key} is {meta[key]!r}, the export sets {v!r}")
            meta[key] = v
    else:
        js = ROOT / "dist" / "lib" / "contract-metadata.js"
        node = shutil.which("node")
        if node is None:
            raise ExportError("node is not on PATH: the contract metadata comes from dist/lib/contract-metadata.js "
                              "(or pass --contract-metadata FILE)")
        if not js.is_file():
            raise ExportError(f"{js} is missing: build the TypeScript first (npx tsc -p tsconfig.json)")
        # In a checkout, the sources may be newer than their build; an installed package has no lib/.
        sources = [ROOT / "lib" / n for n in ("contract-metadata.ts", "generations.ts", "labels.ts", "contract.ts")]
        newest = max((f.stat().st_mtime for f in sources if f.exists()), default=0)
        if newest > js.stat().st_mtime:
            note("warning: lib/*.ts is newer than dist/lib/contract-metadata.js; run npx tsc -p tsconfig.json")
        code = ("const m = require(process.argv[1]);"
                "process.stdout.write(JSON.stringify(m.contractMetadata(process.argv[2], JSON.parse(process.argv[3]))))")
        r = subprocess.run([node, "-e", code, str(js), gen, json.dumps(extra)], capture_output=True, text=True)
        if r.returncode != 0:
            raise ExportError(f"contractMetadata({gen}) in {js} failed: {r.stderr.strip()}")
        meta = json.loads(r.stdout)
    if meta.get("face_multitask.generation") != gen:
        raise ExportError(f"contract metadata is for {meta.get('face_multitask.generation')}, not {gen}")
    return meta


def export_onnx_fp32(wrapper, output_names: list[str], path: Path, opset: int) -> None:
    """Writes the FP32 ONNX file with the TorchScript exporter (dynamo=False). Not the dynamo
    exporter: torch 2.14's writes opset 18 only (its down-conversion to 17 fails on this model),
    and its node names are not the ones the tie fix and the FP16 islands find the AU graph by."""
    import warnings
    import torch
    # py-feat calls roi_align with its default sampling_ratio=-1 (adaptive); the exporter maps it
    # to ONNX's sampling_ratio=0, which is the same adaptive rule, and warns that it did.
    warnings.filterwarnings("ignore", message="ONNX export for RoIAlign with a non-zero sampling_ratio")
    x = torch.randn(EXPORT_BATCH, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    step(f"ONNX export: torch.onnx.export(dynamo=False) (TorchScript exporter), opset {opset}")
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript-based ONNX export")
    # torch._assert(boxes.size(1) == 5) in torchvision's roi_align input check: a constant shape test.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch$")
    try:
        torch.onnx.export(
            wrapper, (x,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=output_names,
            dynamic_axes={n: {0: BATCH_AXIS} for n in [INPUT_NAME, *output_names]},
            do_constant_folding=True)
    except Exception as e:
        raise ExportError(f"ONNX export failed: {e.__class__.__name__}: {e}") from e


def finish_onnx(path: Path, output_names: list[str], metadata: dict[str, str], opset: int) -> None:
    """Names the batch axis N everywhere, states the other axes' sizes (the TorchScript exporter
    leaves some symbolic; verify() checks them against ONNX Runtime), writes metadata_props,
    checks the graph, saves."""
    import onnx
    m = onnx.load(str(path))
    ins = [i.name for i in m.graph.input]
    outs = [o.name for o in m.graph.output]
    if ins != [INPUT_NAME] or outs != output_names:
        raise ExportError(f"exported graph has inputs {ins} and outputs {outs}; expected [{INPUT_NAME}] and {output_names}")
    dims = {INPUT_NAME: (3, 224, 224), **{n: d for n, d, _ in CONTRACT_OUTPUTS}}
    for vi in [*m.graph.input, *m.graph.output]:
        shape = vi.type.tensor_type.shape
        if len(shape.dim) != 1 + len(dims[vi.name]):
            raise ExportError(f"{vi.name}: exported with rank {len(shape.dim)}, expected {1 + len(dims[vi.name])}")
        d0 = shape.dim[0]
        if d0.HasField("dim_value"):
            raise ExportError(f"{vi.name}: the batch axis was exported as the fixed size {d0.dim_value}")
        d0.dim_param = BATCH_AXIS
        for d, size in zip(list(shape.dim)[1:], dims[vi.name]):
            if d.HasField("dim_value") and d.dim_value != size:
                raise ExportError(f"{vi.name}: exported with an axis of {d.dim_value}, expected {size}")
            d.dim_value = size
    opsets = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    if opsets.get("ai.onnx") != opset:
        raise ExportError(f"default-domain opset is {opsets.get('ai.onnx')}, asked for {opset}")
    ties = match_torch_topk_ties(m, dims["p_au"][0], opset)
    note(f"AU graph: {ties} top-k made to choose among equal similarities as torch does on the CPU")
    rules = tensorrt_rules()
    folded = rules.constant_eyelike(m)
    if folded:
        note(f"TensorRT: {folded} EyeLike of a static size replaced by its constant (scripts/tensorrt_onnx_rules.py)")
    del m.metadata_props[:]
    for k, v in metadata.items():
        m.metadata_props.add(key=k, value=v)
    m.producer_name = "face-multitask export (scripts/export_onnx.py)"
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def match_torch_topk_ties(m, n_au: int, opset: int) -> int:
    """Makes the AU graph's TopK choose among equal similarities as py-feat's torch does on the CPU.

    FGG picks each AU node's nearest neighbours with sim.topk(k + 1). An AU node whose branch is
    all zero after its ReLU (real weights give such nodes on some faces) has a row of equal
    similarities (all 0), and which of them a top-k takes is the implementation's: torch on the CPU
    a fixed set (its selection algorithm's: {11, ..., 15} of 20 for the top 5), ONNX's TopK the
    lowest indices. That node's neighbours, and so its AU value (and for v2.4-v2.7 the emotions,
    which read the AU values), then differed from py-feat's by up to a few hundredths. Before each
    TopK of the AU graph, a row whose values are all equal gets 1 added at the indices torch takes
    for it (asked of this torch); every other row is unchanged (x + 0). Returns how many TopK."""
    import numpy as np
    import torch
    from onnx import TensorProto, helper, numpy_helper
    consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    done = 0
    for topk in [n for n in m.graph.node if n.op_type == "TopK" and n.name.startswith("/net/fgg/")]:
        attrs = {a.name: helper.get_attribute_value(a) for a in topk.attribute}
        if attrs.get("axis", -1) not in (-1, 2) or attrs.get("largest", 1) != 1 or topk.input[1] not in consts:
            raise ExportError(f"{topk.name}: not the AU graph's top-k over the last axis with a constant k ({attrs})")
        k = int(consts[topk.input[1]].reshape(-1)[0])
        pick = torch.zeros(n_au).topk(k).indices.tolist()
        mask = np.zeros((1, 1, n_au), np.float32)
        mask[..., pick] = 1.0
        p = f"{topk.name}_ties/"
        x = topk.input[0]
        m.graph.initializer.append(numpy_helper.from_array(mask, p + "torch_pick"))
        if opset >= 18:
            m.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), p + "axes"))
            reduce = lambda op, out: helper.make_node(op, [x, p + "axes"], [p + out], name=p + op, keepdims=1)  # noqa: E731
        else:
            reduce = lambda op, out: helper.make_node(op, [x], [p + out], name=p + op, axes=[-1], keepdims=1)  # noqa: E731
        new = [
            reduce("ReduceMax", "max"),
            reduce("ReduceMin", "min"),
            helper.make_node("Equal", [p + "max", p + "min"], [p + "tied"], name=p + "Equal"),
            helper.make_node("Cast", [p + "tied"], [p + "tied_f"], name=p + "Cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "tied_f", p + "torch_pick"], [p + "bias"], name=p + "Mul"),
            helper.make_node("Add", [x, p + "bias"], [p + "sim"], name=p + "Add"),
        ]
        at = list(m.graph.node).index(topk)
        for i, n in enumerate(new):
            m.graph.node.insert(at + i, n)
        topk.input[0] = p + "sim"
        done += 1
    if done == 0:
        raise ExportError("the exported graph has no AU graph top-k (/net/fgg/TopK): not py-feat's FGG")
    return done


def tensorrt_rules():
    """scripts/tensorrt_onnx_rules.py: what TensorRT's ONNX parser refuses, checked without it."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    import tensorrt_onnx_rules
    return tensorrt_onnx_rules


def tensorrt_check(path: Path) -> None:
    """Warns of what TensorRT's ONNX parser would refuse in the file (the CPU path is unaffected)."""
    import onnx
    found = tensorrt_rules().problems(onnx.load(str(path), load_external_data=False))
    for line in found:
        what = "may not be imported by TensorRT" if "its import is unchecked" in line else "TensorRT's ONNX parser would refuse this"
        note(f"warning: {what}: {line}")
    note(f"TensorRT's ONNX parser rules (scripts/tensorrt_onnx_rules.py): {f'{len(found)} problem(s)' if found else 'no problem'}")


def verify(wrapper, path: Path, output_names: list[str], expected_shapes: dict[str, tuple]) -> dict[str, float]:
    import numpy as np
    import onnxruntime as ort
    import torch
    x = torch.randn(VERIFY_BATCH, 3, 224, 224, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        ref = [t.float().numpy() for t in wrapper(x)]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = sess.run(output_names, {INPUT_NAME: x.numpy()})
    diffs, bad = {}, []
    for name, r, o in zip(output_names, ref, got):
        want = (VERIFY_BATCH, *expected_shapes[name])
        if o.shape != want or o.dtype != np.float32:
            bad.append(f"{name}: ONNX Runtime gave {o.dtype}{list(o.shape)}, expected float32{list(want)}")
            continue
        if not np.isfinite(r).all():
            # PyTorch itself: the weights are at fault, not the export.
            bad.append(f"{name}: PyTorch itself gives {int((~np.isfinite(r)).sum())} non-finite values "
                       "(NaN or Inf in the checkpoint's weights?)")
            continue
        if not np.isfinite(o).all():
            bad.append(f"{name}: non-finite values from ONNX Runtime ({int((~np.isfinite(o)).sum())}) where PyTorch has none")
            continue
        d = float(np.abs(o - r).max())
        diffs[name] = d
        flag = "" if d <= VERIFY_TOLERANCE else "   <-- over the tolerance"
        note(f"{name:15s} {str(list(o.shape)):14s} max |onnx - torch| = {d:.3e}   (torch range {r.min():+.3g}..{r.max():+.3g}){flag}")
        if d > VERIFY_TOLERANCE:
            bad.append(f"{name}: max abs diff {d:.3e} > {VERIFY_TOLERANCE}")
    if bad:
        raise ExportError("the ONNX file does not match PyTorch on a random batch, so none was written: " + "; ".join(bad))
    return diffs


def node_check(path: Path) -> None:
    node = shutil.which("node")
    lib = ROOT / "dist" / "lib"
    if node is None or not (lib / "contract.js").is_file():
        note("skipped (node or dist/lib/contract.js missing; build with npx tsc -p tsconfig.json)")
        return
    code = ("const fs = require('fs');"
            "const { parseOnnxModel } = require(process.argv[1] + '/onnx-model.js');"
            "const { readModelSpec } = require(process.argv[1] + '/contract.js');"
            "const spec = readModelSpec(process.argv[2], parseOnnxModel(fs.readFileSync(process.argv[2])));"
            "const { metadata, ...rest } = spec; console.log(JSON.stringify(rest));")
    r = subprocess.run([node, "-e", code, str(lib), str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise ExportError(f"{path}: the Node contract reader refused the file: {r.stderr.strip()[:2000]}")
    note(f"readModelSpec: {r.stdout.strip()[:400]}")


def lock_outputs(out_dir: Path, stem: str) -> None:
    """One export at a time writes a stem's files: a second one into the same folder would remove
    the first's .partial and rename its own weights over the file the first verified. The lock
    (flock on a hidden file beside them) lasts until this process ends, crash included."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    lock = out_dir / f".{stem}.lock"
    if str(lock.resolve()) in _HELD_LOCKS:
        return  # taken already by this process (before writing a --random-weights checkpoint)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ExportError(f"--out: cannot write in {out_dir} ({e.strerror or e})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ExportError(f"another export is writing {stem}.fp32.onnx and .fp16.onnx in {out_dir} now: "
                          "wait for it to end, or give another --out") from None
    _HELD_LOCKS[str(lock.resolve())] = fd  # kept open (and so held) until the process ends


_HELD_LOCKS: dict[str, int] = {}


def export_fp16(fp32_path: Path, fp16_path: Path, args) -> Path:
    """The FP16 file for TensorRT's strongly typed builds, made from the verified FP32 file by
    scripts/onnx_fp16.py (FP32 islands with explicit Casts: GRN, LayerNorm, F.normalize, the AU top-k
    and the rest listed there; shared/model-facts.md), compared with the FP32 file in ONNX Runtime.
    On any failure no FP16 file is left behind (an older one is removed too: it would not match)."""
    import onnx
    sys.path.insert(0, str(SCRIPTS))
    import onnx_fp16
    t0 = time.monotonic()
    partial = fp16_path.with_name(fp16_path.name + ".partial")
    for stale in (partial, fp16_path):
        stale.unlink(missing_ok=True)
    try:
        step(f"FP16: converting {fp32_path.name}: FP16 everywhere, FP32 islands with explicit Casts, float32 input/outputs")
        m32 = onnx.load(str(fp32_path))
        try:
            m16, report = onnx_fp16.convert(m32, log=note)
        except onnx_fp16.Fp16Error as e:
            raise ExportError(f"FP16 conversion of {fp32_path.name} failed: {e}") from e
        for line in onnx_fp16.describe(report):
            note(line)
        note("graph checked: onnx.checker, strict type inference, island nodes all FP32, every other float op FP16, "
             "input and outputs float32")
        meta = {e.key: e.value for e in m32.metadata_props}
        if meta.get("face_multitask.precision") != "fp32":
            raise ExportError(f"{fp32_path}: face_multitask.precision is {meta.get('face_multitask.precision')!r}, not fp32")
        del m16.metadata_props[:]
        for k, v in meta.items():
            m16.metadata_props.add(key=k, value="fp16" if k == "face_multitask.precision" else v)
        m16.producer_name = m32.producer_name
        onnx.save(m16, str(partial))
        del m32
        note(f"wrote {partial.name} ({partial.stat().st_size / 2**20:.1f} MiB; the FP32 file is "
             f"{fp32_path.stat().st_size / 2**20:.1f} MiB) with {len(meta)} metadata entries, precision=fp16")

        x, labels, is_face = onnx_fp16.comparison_inputs(meta, log=note)
        n_face = int(is_face.sum())
        step(f"FP16: comparing with the FP32 file: {n_face} face crops of py-feat's test photos "
             f"(scripts/face-boxes.json, {meta.get('face_multitask.crop')} crop, {meta.get('face_multitask.resize')}) "
             f"and {len(x) - n_face} noise inputs in ONNX Runtime (CPU), and the first again in FP16 arithmetic "
             f"(about half a minute); max |fp16 - fp32| per output")
        try:
            res = onnx_fp16.compare(fp32_path, partial, meta, x, labels, is_face, log=note)
        except onnx_fp16.Fp16Error as e:
            raise ExportError(f"FP16 comparison failed: {e}") from e
        note(f"FP16 file run with {res.engine}; {res.seconds:.1f}s")
        for line in onnx_fp16.format_table(res):
            note(line)
        if not res.ok:
            raise ExportError("the FP16 file differs from the FP32 file beyond the tolerances or is not finite: "
                              + "; ".join(res.failures) + f". No FP16 file was written ({fp16_path.name}); the FP32 "
                              f"file {fp32_path.name} is written and verified, and TensorRT builds it with precision "
                              "'fp32' (--no-fp16 exports it alone, exit 0).")
        if not args.no_node_check:
            step("FP16: checking the file with the Node contract reader")
            node_check(partial)
        tensorrt_check(partial)
        os.replace(partial, fp16_path)
        note(f"wrote {fp16_path} ({fp16_path.stat().st_size / 2**20:.1f} MiB) in {time.monotonic() - t0:.1f}s")
        return fp16_path
    except OSError as e:
        partial.unlink(missing_ok=True)
        fp16_path.unlink(missing_ok=True)
        raise ExportError(f"FP16: {e.strerror or e}{f' ({e.filename})' if e.filename else ''}. No FP16 file was written; "
                          f"the FP32 file {fp32_path.name} is written and verified (--no-fp16 exports it alone)") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        fp16_path.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def export_checkpoint(path: Path, out_dir: Path, forced_gen: str | None, args) -> Path:
    import torch
    step(f"reading {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    ckpt = read_checkpoint(path, args.trust_pickle)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in ckpt.state_dict.values()})
    note(f"format: {ckpt.file_format}; tensor dtypes: {', '.join(dtypes)}; config keys: {len(ckpt.config)}"
         + (f"; made by --random-weights (seed {ckpt.random_seed})" if ckpt.random_seed is not None else ""))

    step("telling the generation from the file")
    gen = tell_generation(ckpt, forced_gen)
    G = GENERATIONS[gen]
    note(f"generation {gen}; network code: {G.code_note}")
    problem = opset_problem(args.opset, gen, args.no_fp16)
    if problem:
        raise ExportError(f"{path}: {problem}")
    if ckpt.file_format != G.file_format:
        note(f"note: {gen} is published as {G.file_format}; this file is {ckpt.file_format} (py-feat 2.x reads both)")

    step(f"building the network with py-feat {G.code_release}'s MEGraphAUv2 (FP32, eval)")
    mv2 = import_release(G.code_release)
    note(f"code: {Path(mv2.__file__).parent}")
    try:
        model, cfg, dropped = build_network(gen, mv2, ckpt.config)
        if dropped:
            note(f"config keys the class does not know (py-feat's loader drops them too): {', '.join(dropped)}")
        check_config_against_tensors(gen, cfg, ckpt.state_dict, model)
    except ExportError as e:
        raise ExportError(f"{path}: {e}") from None  # as every other error about the file, it is named
    trainable, numel, ntensors = count_params(model)
    pub = ""
    if G.published_trainable is not None:
        pub = f"; published {G.published_trainable:,} trainable: {'match' if trainable == G.published_trainable else 'DIFFERENT'}"
    if G.published_state_tensors is not None:
        pn, pt = G.published_state_tensors
        pub = f"; published {pn:,} in {pt} tensors: {'match' if (numel, ntensors) == (pn, pt) else 'DIFFERENT'}"
    note(f"parameters: {trainable:,} trainable; state dict {numel:,} values in {ntensors} tensors{pub}")

    step("loading the weights strictly")
    load_strict(model, ckpt.state_dict, str(path))
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    note(f"{len(ckpt.state_dict)} tensors loaded (including log_var_* and BatchNorm buffers)")

    with torch.no_grad():
        probe = model(torch.zeros(1, 3, 224, 224))
    output_names = []
    for name, dims, required in CONTRACT_OUTPUTS:
        t = probe.get(name)
        if t is None:
            if required:
                raise ExportError(f"the model's forward() gives no '{name}'")
            continue
        if tuple(t.shape[1:]) != dims:
            raise ExportError(f"the model's '{name}' is {list(t.shape)}, the contract wants [N,{','.join(map(str, dims))}]")
        output_names.append(name)
    dropped_out = [k for k, v in probe.items() if k not in output_names]
    note(f"outputs: {', '.join(output_names)} (left out of the ONNX: {', '.join(dropped_out)})")
    wrapper = make_wrapper(model, output_names)

    is_random = ckpt.random_seed is not None
    extra = {
        "source_file": path.name,
        "checkpoint_sha256": sha256_file(path),
        "checkpoint_format": ckpt.file_format,
        "model_code": G.code_note,
        "precision": "fp32",
        "exporter": f"scripts/export_onnx.py, torch {torch.__version__}",
    }
    if is_random:
        # Random weights: the runtime marks every result of this model as meaningless.
        extra["synthetic"] = "true"
        extra["random_weights"] = "true"
        extra["random_seed"] = str(ckpt.random_seed)
    metadata_probe = contract_metadata(gen, extra, args.contract_metadata)
    heads = metadata_probe.get("face_multitask.heads", "").split(",")
    if ("blendshapes" in heads) != ("blendshapes" in output_names):
        raise ExportError(f"contract heads for {gen} are {heads}, but the model's outputs are {output_names}")

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"--out: cannot make {out_dir} ({e.strerror or e})") from None
    stem = f"face_multitask_{gen}" + (f".random-seed{ckpt.random_seed}" if is_random else "")
    lock_outputs(out_dir, stem)
    onnx_path = out_dir / f"{stem}.fp32.onnx"
    # Written as .partial and renamed once verified: a failed or interrupted export leaves no file
    # the runtime would load (an earlier export's files stay as they were).
    partial = onnx_path.with_name(onnx_path.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        t_export = time.monotonic()
        with torch.no_grad():
            export_onnx_fp32(wrapper, output_names, partial, args.opset)
        extra["onnx_exporter"] = f"torchscript (dynamo=False), opset {args.opset}"
        metadata = contract_metadata(gen, extra, args.contract_metadata)
        finish_onnx(partial, output_names, metadata, args.opset)
        note(f"wrote {partial.name} ({partial.stat().st_size / 2**20:.1f} MiB) with the {extra['onnx_exporter']} exporter "
             f"in {time.monotonic() - t_export:.1f}s; {len(metadata)} metadata entries")

        step(f"verifying: ONNX Runtime CPU vs PyTorch FP32 on a random batch of {VERIFY_BATCH} (tolerance {VERIFY_TOLERANCE:g})")
        try:
            verify(wrapper, partial, output_names, {n: d for n, d, _ in CONTRACT_OUTPUTS})
        except ExportError as e:
            raise ExportError(f"{path}: {e}") from None

        if not args.no_node_check:
            step("checking the file with the Node contract reader (dist/lib: parseOnnxModel + readModelSpec)")
            node_check(partial)
        tensorrt_check(partial)
        os.replace(partial, onnx_path)
        note(f"verified: {onnx_path}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise

    fp16_path = out_dir / f"{stem}.fp16.onnx"
    if args.no_fp16:
        step("FP16: skipped (--no-fp16)")
        if fp16_path.exists():
            note(f"warning: {fp16_path} is from an earlier export and was not remade with this FP32 file; "
                 "TensorRT builds from it only while it comes from the same checkpoint")
    else:
        export_fp16(onnx_path, fp16_path, args)
    step(f"done: {onnx_path}" + ("" if args.no_fp16 else f" and {fp16_path.name}"))
    return onnx_path


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e})") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object of config settings, got {text}")
    return value


def opset_problem(opset: int, gen, no_fp16: bool):
    """Why --opset is too old for this export (gen None: not known yet), or None."""
    if gen in ("v2.7", "v2.8") and opset < 16:
        return (f"--opset {opset} is too old for {gen}: its gaze head's RoiAlign needs opset 16 or "
                f"later for the aligned (half_pixel) mode (the default is {OPSET})")
    if opset < 17 and not no_fp16:
        # Below 17 torch spells LayerNorm out in primitive ops, where the FP16 conversion cannot
        # find it to keep it in FP32 (it would fail after the FP32 export, naming its rule only).
        return (f"--opset {opset} is too old for the FP16 file: its FP32 islands keep "
                f"LayerNormalization, an op of opset 17 and later; give --opset 17 or later (the "
                f"default is {OPSET}), or --no-fp16 for the FP32 file alone")
    return None


def refuse_repeated_flags(p, argv) -> None:
    """A flag with a value given twice is refused, as the CLI's other commands do: argparse would
    keep the last one, and `--generation v2.5 ... --generation v2.8` export v2.8 without a word."""
    takes_value = {s for a in p._actions if a.nargs != 0 for s in a.option_strings}
    seen = {}
    for i, a in enumerate(argv):
        if a == "--":
            break
        name, eq, value = a.partition("=")
        if name not in takes_value:
            continue
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        if name in seen:
            p.error(f'{name} given more than once ("{seen[name]}", then "{value}"): give it once')
        seen[name] = value


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="export_onnx.py",
        # As the CLI's other commands (Node's parseArgs): a flag is named in full.
        allow_abbrev=False,
        description="Export py-feat's face_multitask_v2 checkpoint to ONNX under face-multitask's contract.")
    p.add_argument("checkpoint", nargs="?", type=Path,
                   help="face_multitask_v2.pt (v2.4), face_multitask_v2.safetensors (v2.5), "
                        "face_multitask_v27.safetensors (v2.7) or face_multitask_v28.safetensors (v2.8)")
    p.add_argument("--out", default=None,
                   help="output folder (default: the checkpoint's folder; with --random-weights: .)")
    p.add_argument("--generation", choices=list(GENERATIONS),
                   help="the checkpoint's generation, when the file name and config do not tell it or are wrong "
                        "(v2.7 and v2.8 share one architecture): it wins over them, with a warning, but never "
                        "over the tensors; required with --random-weights")
    p.add_argument("--no-fp16", action="store_true",
                   help="do not make the FP16 file (FP16 with FP32 islands, for TensorRT strongly typed builds)")
    p.add_argument("--random-weights", action="store_true",
                   help="make a checkpoint of --generation's architecture with seeded random weights, then export it")
    p.add_argument("--seed", type=int, default=None, help="seed for --random-weights (default 0)")
    p.add_argument("--random-config", type=_json_object, default=None, metavar="JSON",
                   help="with --random-weights: settings laid over the generation's known config, as a JSON "
                        "object of py-feat ModelV2Config fields, e.g. '{\"gaze_head_frame\": true, \"gaze_bins\": 0}'")
    p.add_argument("--zero-au-node", type=int, default=None, metavar="I",
                   help="with --random-weights: make AU node I (0-19, py-feat's AU order) all zero for every "
                        "input, as real weights do on some faces (the AU graph then chooses among equal similarities)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET}; 17 or later for the FP16 file, 16 or later for v2.7+)")
    p.add_argument("--contract-metadata", type=Path, default=None, metavar="FILE",
                   help="JSON of the face_multitask.* metadata (default: from dist/lib/contract-metadata.js via node)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a .pt checkpoint holding arbitrary pickled objects (torch.load weights_only=False)")
    p.add_argument("--no-node-check", action="store_true", help="skip the check with the Node contract reader")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--check-env", action="store_true", help="check the Python environment and exit")
    p.add_argument("--import-release", help=argparse.SUPPRESS)
    # Only the checks below and main's path checks, then exit 0: they need nothing but the standard
    # library, so the CLI runs them with any python3 when the project's environment is missing.
    p.add_argument("--check-args", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    refuse_repeated_flags(p, argv)
    if not (args.check_env or args.import_release):
        if args.random_weights:
            if args.checkpoint is not None:
                p.error("--random-weights makes its own checkpoint: give no checkpoint path")
            if args.generation is None:
                p.error("--random-weights needs --generation v2.4|v2.5|v2.7|v2.8")
        elif args.checkpoint is None:
            p.error("give a checkpoint path, or --random-weights --generation G")
        elif args.random_config is not None:
            p.error("--random-config goes with --random-weights only (a checkpoint's config is its own)")
        elif args.zero_au_node is not None:
            p.error("--zero-au-node goes with --random-weights only (a checkpoint's weights are its own)")
        elif args.seed is not None:
            p.error("--seed goes with --random-weights only (a checkpoint's weights are its own)")
    if args.seed is None:
        args.seed = 0
    # torch.manual_seed(seed) and torch.Generator().manual_seed(seed + 1) take -2**63 .. 2**64 - 1.
    if not -2**63 <= args.seed <= 2**64 - 2:
        p.error(f"--seed must be an integer from {-2**63} to {2**64 - 2}, got {args.seed}")
    if args.zero_au_node is not None and not 0 <= args.zero_au_node < 20:
        p.error(f"--zero-au-node must be an AU node from 0 to 19, got {args.zero_au_node}")
    if args.threads < 0:
        p.error(f"--threads must be 0 (torch's choice) or a positive number of threads, got {args.threads}")
    # Said now, not after a random checkpoint is made; a checkpoint's generation is known once read.
    problem = opset_problem(args.opset, args.generation if args.random_weights else None, args.no_fp16)
    if problem:
        p.error(problem)
    if args.out is not None:
        if args.out.strip() == "":
            p.error("--out: empty path (give the folder to write to)")
        args.out = Path(args.out)
    if args.contract_metadata is not None and not args.contract_metadata.is_file():
        # Said now, not after minutes of building the network.
        p.error(f"--contract-metadata {args.contract_metadata}: no such file")
    return args


def check_checkpoint_path(path: Path) -> None:
    """The checkpoint argument names a readable file (checked before torch is imported)."""
    if path.is_dir():
        raise ExportError(f"{path}: is a directory, not a checkpoint file (give the .pt or .safetensors file in it)")
    if not path.exists():
        raise ExportError(f"{path}: no such file")
    if not path.is_file():
        raise ExportError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise ExportError(f"{path}: permission denied")


def check_out_dir(out_dir: Path, given: bool) -> None:
    """That the output folder exists and can be written to, or can be made (checked before the
    minutes of work that end in writing there): a file in the way or a folder that cannot be
    written is an ExportError naming it."""
    what = f"--out {out_dir}" if given else f"the output folder {out_dir} (the checkpoint's; choose another with --out DIR)"
    at = out_dir
    while not at.exists():
        if at.is_symlink():
            raise ExportError(f"{what}: {at} is a broken symbolic link")
        if at.parent == at:
            break
        at = at.parent
    if not at.is_dir():
        raise ExportError(f"{what}: {at} is a file, not a folder" if at == out_dir else
                          f"{what}: cannot be made, {at} is a file, not a folder")
    if not os.access(at, os.W_OK | os.X_OK):
        raise ExportError(f"{what}: {at} is not writable" if at == out_dir else
                          f"{what}: cannot be made, {at} is not writable")


def out_of_memory(e: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, or torch's or numpy's in their own words."""
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and bool(
        re.search(r"can't allocate memory|not enough memory|out of memory|Cannot allocate memory", str(e))))


def _stop_on_sigterm(signum, frame):
    # As Ctrl-C: the .partial files are removed on the way out (a process manager's or the CLI's kill).
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _stop_on_sigterm)  # a closed terminal: its .partial files go too
    try:
        if not (args.import_release or args.check_env or args.random_weights):
            check_checkpoint_path(args.checkpoint)
        if not (args.import_release or args.check_env):
            check_out_dir(args.out or (Path(".") if args.random_weights else args.checkpoint.parent), args.out is not None)
        if args.check_args:
            return 0
        if args.import_release:
            require_packages()
            return import_release_main(args.import_release)
        if args.check_env:
            return check_env()
        require_packages()
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        step(f"python {sys.version.split()[0]}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
        if args.random_weights:
            out_dir = args.out or Path(".")
            # Locked before its checkpoint is written: a second export of the same seed waits for
            # none of it, and cannot replace the checkpoint the first one is reading.
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ExportError(f"--out: cannot make {out_dir} ({e.strerror or e})") from None
            lock_outputs(out_dir, f"face_multitask_{args.generation}.random-seed{args.seed}")
            ckpt_path = make_random_checkpoint(args.generation, args.seed, out_dir, args.random_config, args.zero_au_node)
            export_checkpoint(ckpt_path, out_dir, args.generation, args)
        else:
            path = args.checkpoint
            export_checkpoint(path, args.out or path.parent, args.generation, args)
        return 0
    except ExportError as e:
        # 1: the export failed; 2: a bad argument (parse_args exits with 2 for those it can judge).
        print(f"[export] error: {e}", file=sys.stderr, flush=True)
        return 2 if isinstance(e, BadArgument) else 1
    except OSError as e:
        # Writing the files (a full disk, a folder removed meanwhile): the error, not a traceback.
        print(f"[export] error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("[export] interrupted (Ctrl-C, SIGTERM or SIGHUP)", file=sys.stderr, flush=True)
        return 130
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        print(f"[export] error: out of memory ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else 'no details'}); "
              "the export needs a few GB: close other programs, or use a machine with more", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
