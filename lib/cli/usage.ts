// Help texts. They need nothing loaded (no model, no sharp, no GPU), so `--help` always works.
import { GENERATIONS } from '../contract'
import { REAL_WEIGHTS_HINT } from './notices'

/** The TensorRT engine flags' lines (build, detect, batch: lib/cli/engine-flags.ts). */
export const ENGINE_FLAGS_USAGE = `  --precision <p>      fp16 (default), bf16 (Ampere and newer; needs a BF16 ONNX, which export does
                       not write) or fp32. TensorRT takes the precision from the ONNX: fp16 builds
                       the .fp16.onnx that \`face-multitask export\` writes beside the .fp32.onnx;
                       without --precision an FP32-only model builds in fp32
  --min-batch N        the engine profile's smallest batch (default 1; fewer faces run padded to it)
  --opt-batch N        the batch the kernels are tuned for (default 8, moved into [min, max])
  --max-batch N        the largest batch (default 64; on the CPU, faces per batch, default 8);
                       larger requests are split
  --opt-level N        builder optimization level 0-5 (default 3)
  --workspace-mib N    builder workspace limit (default: TensorRT's)
  --engine-dir DIR     the engine cache folder (default engines/ in the package's folder)`


const ENGINE_SECTION = `TensorRT engine flags, as \`build\` takes them (a plan is made for its flags: the same flags
load the engine \`build\` made, others build another; on the CPU only --max-batch counts, as the
faces per batch):
${ENGINE_FLAGS_USAGE}`

export const MAIN_USAGE = `usage: face-multitask <command> [options]

py-feat's face_multitask_v2 facial-behaviour model: action units, emotions, valence/arousal,
gaze, head pose, a 478-point face mesh and blendshapes for each face box of an image.

commands:
  detect <image> --model <onnx> [--boxes "x1,y1,x2,y2;..."] [--json] [--backend auto|cpu|tensorrt]
             run the model on the faces of an image (JPEG, PNG, WebP, TIFF, ...); it and batch
             take build's engine flags, to load the engine build made
  batch <list.jsonl> --model <onnx> --out <results.jsonl> [--no-mesh] [--concurrency N] [--backend B]
             many images: one JSON line of results per list line; a rerun goes on where it stopped
  demo [--generation ${GENERATIONS.join('|')}] [--json] [--out-dir DIR]
             the whole pipeline on a generated image and a synthetic model: no weights needed
  export <checkpoint> [--out DIR] [--generation G] [--no-fp16]
  export --random-weights --generation G [--seed N] [--out DIR] [--no-fp16]
             py-feat checkpoint -> ONNX (needs \`npm run setup:python\` once)
  inspect <checkpoint.safetensors|model.onnx>
             generation, heads, config and conventions of a checkpoint or an exported model
  doctor [--json] [--engine-dir DIR]
             which backends can run here (or exactly why not), the addon, Node, onnxruntime
  build <onnx> [--precision fp16|bf16|fp32] [--max-batch N] [...]
             make the TensorRT engine for this GPU ahead of time, with a progress bar
  help [command]
             this help, or a command's

options:
  -h, --help     help (also after a command: face-multitask detect --help)
  -v, --version  the package version

exit codes: 0 done, 1 failed (unreadable image or model, inference error), 2 bad arguments,
3 batch ran lines and every one got an "error", 130 interrupted (batch: Ctrl-C)`

export const DETECT_USAGE = `usage: face-multitask detect <image> --model <onnx> [--boxes "x1,y1,x2,y2;..."] [--json] [--backend auto|cpu|tensorrt]
                            [engine flags: --precision P --max-batch N ... --engine-dir DIR]

Runs the model on the faces of one image and prints, per face: the box py-feat reports, the top
emotion, valence/arousal, the top 5 action units, gaze and head pose (degrees and radians).

  <image>            a JPEG, PNG or anything else sharp decodes (of an animated GIF or WebP, the
                     first frame). EXIF orientation is NOT applied (a TIFF's is, as py-feat's
                     Pillow fallback does), nor is an embedded colour profile (py-feat applies
                     neither): boxes are in the stored pixel grid, and the model sees the stored
                     pixel values. - (or /dev/stdin, or a named pipe) reads an image piped in.
  --model <onnx>     the model file (made by \`face-multitask export\`); required, once
  --boxes <list>     face boxes in pixels, "x1,y1,x2,y2" separated by ";", e.g.
                     --boxes "120,80,330,330;400,90,560,300". May be given more than once: the
                     boxes of all of them, in order (--boxes A --boxes B is --boxes "A;B"). Use
                     --boxes=... when the first number is negative. Without --boxes the image
                     must be a 256x256 face chip.
  --json             print a JSON array of faces (every field, mesh and landmarks included;
                     float32 values as their shortest decimals, which read back exactly)
  --backend <name>   auto (default: TensorRT when available, else the CPU), cpu (also named
                     onnxruntime) or tensorrt
  -h, --help         this help

${ENGINE_SECTION}

Face detection is not built in yet: boxes come from your own detector.`

export const BATCH_USAGE = `usage: face-multitask batch <list.jsonl> --model <onnx> --out <results.jsonl> [--no-mesh] [--concurrency N] [--backend auto|cpu|tensorrt]
                           [--workers N] [--threads N] [--no-spin-wait] [engine flags: --precision P --max-batch N ... --engine-dir DIR]

Runs the model on the faces of many images: a batch job over a folder of photos or a dataset.
Images are decoded and run N at a time, so faces of different images share inference batches.

  <list.jsonl>       one image per line, as JSON:
                       {"image": "photos/a.jpg", "boxes": [[120, 80, 330, 330], [400, 90, 560, 300]]}
                       {"image": "chips/b.png", "id": "subject-7"}
                     "image": a path relative to the list file's folder (a list reached
                     through a symlink: the folder of the file it points to) or absolute;
                     "boxes": face boxes [x1, y1, x2, y2] in its pixels (without them the image
                     must be a 256x256 face chip; [] gives no faces); "id": a string or a
                     number (an integer over 9007199254740991 in size: give it as a string),
                     carried into the result.
                     Blank lines are skipped. Images are read as \`detect\` reads them. A run
                     reads the list as it was when it began: lines added meanwhile are left for
                     the next run, and so is a last line without a line ending that is not
                     JSON yet (it may still be being written); a list replaced at its path
                     meanwhile (a new file renamed over it) is never read in its place: the
                     run reads on in the file it began with, or stops before reading any.
  --model <onnx>     the model file (made by \`face-multitask export\`); required
  --out <file>       the results, one JSON line per list line, in list order:
                       {"line": 1, "image": "photos/a.jpg", "faces": [...]}   (faces as detect --json)
                       {"line": 2, "id": "subject-7", "image": "chips/b.png", "error": "..."}
                     after a first line that names the list and model. Each line is written as
                     soon as it and the lines before it are done. If the file exists (a run that
                     stopped: Ctrl-C, a crash, a lost GPU), the lines it holds are kept and only
                     the others run. Refused, and left as it is: a file not written by batch, or
                     with results of another model, another list or a list changed since (lines
                     added at its end are fine), or the other --no-mesh choice, or one another
                     run is writing (the lock of a run that died in another container or on
                     another host is named, to remove). A file of batch's without any result yet is begun again. A
                     list moved or copied with its folder (the same bytes, the results file where
                     it was beside it) is the same list.
  --no-mesh          leave each face's 478-point mesh out of the results (landmarks68 stay): a
                     face's record shrinks from about 19 KB to 4.5 KB. A rerun must keep the choice.
  --concurrency <n>  images decoded or running at once (default 32; raise it for a GPU, so
                     that batches fill up to --max-batch, 64 by default on TensorRT; sharp
                     decodes on libuv's pool: one thread per core, at least 4, unless
                     UV_THREADPOOL_SIZE is set). Each is held decoded meanwhile: 36 MB for a
                     12-megapixel photo, so 32 of them can take over 1 GB
  --workers <n>      CPU: inference threads, each with its own ONNX Runtime session (default 1;
                     1 to 64); each holds the model's memory again
  --threads <n>      CPU: intra-op threads per worker (default the cores / workers; 1 to 256).
                     The cores, here and above: those of the CPU affinity, lowered to a
                     container's CPU limit (its cgroup's quota)
  --no-spin-wait     CPU: ONNX Runtime's threads sleep when out of work instead of spinning:
                     more faces/s when the cores are shared with other work, about the
                     same (at most a few percent fewer) on an otherwise idle machine
  --backend <name>   auto (default), cpu (also named onnxruntime) or tensorrt
  -h, --help         this help

${ENGINE_SECTION}

A line whose JSON, image file or boxes are wrong, or for whose faces the model gives NaN (an FP16
overflow), gets an "error" and the run goes on. An error of the model itself (inference failed,
the GPU was lost), or of the system reading an image (out of file handles or memory, an I/O
error), stops the run with exit code 1; what was done is kept, and the same command goes on
from there; the message names the line that met it. A sharp that cannot load (its binary
missing for this platform) stops it too, before any line.
So does a results file that cannot be written (a full disk: no record is left in part).
Ctrl-C finishes the images in flight, writes them and exits with 130 (when they were the last
lines, the run has finished and exits as below). Progress goes to stderr (every second on a terminal, every 10 s
otherwise). Exit code 0 when every line the run read has a result (lines with an "error" included),
except 3 when every one of them is an "error" (a wrong folder for the image paths, say). A line's
"error" is its result: a rerun does not run it again; to redo such lines once their cause is fixed,
give another --out (or remove the results file). Records removed by hand are redone by a rerun and
added at the end, out of list order: each record names its "line".`

export const DEMO_USAGE = `usage: face-multitask demo [--generation ${GENERATIONS.join('|')}] [--json] [--out-dir <dir>]

Runs the whole pipeline with no downloads: writes a small SYNTHETIC model (random weights with the
real model's ONNX contract) and a generated 640x480 image with three drawn "faces", then detects
them. It shows that everything works; the numbers it prints are meaningless.

  --generation <g>   which generation's conventions the synthetic model follows (default v2.5)
  --json             print the result as JSON (the notice about the synthetic model included)
  --out-dir <dir>    where to write the model (face_multitask_<generation>.synthetic.onnx) and
                     the image (face-multitask-demo.png), replacing files of those names (default
                     engines/demo in the package, or face-multitask-demo in the temp folder where
                     the package is read-only)
  -h, --help         this help

${REAL_WEIGHTS_HINT.join('\n')}`

export const EXPORT_USAGE = `usage: face-multitask export <checkpoint> [--out DIR] [--generation G] [--no-fp16]
       face-multitask export --random-weights --generation ${GENERATIONS.join('|')} [--seed N] [--out DIR] [--no-fp16]

Exports py-feat's face_multitask_v2 checkpoint (face_multitask_v2.pt, face_multitask_v2.safetensors,
face_multitask_v27.safetensors, face_multitask_v28.safetensors) to the ONNX file the runtime loads,
with py-feat's own model code for that generation, and checks it against PyTorch. It runs
scripts/export_onnx.py in the project's Python environment: set that up once with
\`npm run setup:python\` (Python 3.11+; PYTHON=/path/to/python3 picks the interpreter). To keep it
elsewhere, set FACE_MULTITASK_VENV=DIR for both the setup and export; FACE_MULTITASK_PYTHON=FILE
runs export with another Python that has torch and py-feat's code.

  <checkpoint>        the weights file; its generation is read from the file itself
  --out DIR           where to write (default: the checkpoint's own folder; with --random-weights,
                      the current directory, and the checkpoint it makes goes in DIR/random-seed<N>/)
  --generation G      the generation, when the file's name and config do not tell it or are
                      wrong (v2.7 and v2.8 share one architecture); it wins over them, with a
                      warning, but never over the tensors; required with --random-weights
  --random-weights    make a checkpoint of that generation's architecture with seeded random
                      weights and export it (for tests and benchmarks: its numbers mean nothing)
  --seed N            seed for --random-weights (default 0)
  --no-fp16           write only the FP32 file (default: FP32 and the FP16 file for TensorRT; an
                      FP16 file left from another checkpoint is then not used by TensorRT)
  -h, --help          this help

Other options go to scripts/export_onnx.py as they are: --trust-pickle (a .pt checkpoint that holds
more than tensors, from a source you trust), --threads N, --opset N, --check-env,
--contract-metadata FILE, --no-node-check, --random-config JSON (with --random-weights: config settings
laid over the generation's, for an architecture variant), --zero-au-node I (with --random-weights: AU
node I all zero for every input, as real weights make some on some faces);
\`<venv>/bin/python scripts/export_onnx.py --help\` in the package's folder lists them. Each file is
written beside its final name and renamed once verified, so a failed or interrupted export leaves
none half made; a second export of the same files into the same folder is refused while one runs
(a lock file, .<name>.lock, stays beside them). Exit code 0 when the files are written, 1 when the
export fails (or is interrupted), 2 for bad arguments.`

export const INSPECT_USAGE = `usage: face-multitask inspect <checkpoint.safetensors|model.onnx>

Prints what a file holds, read in Node without Python: for a checkpoint its generation, tensors,
heads and config; for an ONNX model its face_multitask metadata (generation, crop, resize, mesh
space, pose and gaze conventions and the py-feat release they follow), its tensors, and whether
the runtime accepts it.

A checkpoint's generation is told as \`face-multitask export\` tells it: from the tensors, and
where they fit both v2.7 and v2.8 (the same architecture), from the file name or the config,
which the output then names. Its heads are those whose tensors the file holds.

Exit code 0 when the file was read (and an ONNX model follows the contract), 1 when not, 2 for
bad arguments.`

export const DOCTOR_USAGE = `usage: face-multitask doctor [--json] [--engine-dir DIR]

Says what can run on this machine: each backend (ONNX Runtime on the CPU, TensorRT on an NVIDIA
GPU) as available or with the exact reason it is not, the native addon's path, the Node.js and
N-API versions, the onnxruntime-node version and the engine cache folder.

  --json             print the report as JSON
  --engine-dir DIR   the engine cache folder to check (default engines/ in the package)
  -h, --help         this help

Exit code 0 when the CPU backend runs (TensorRT's absence is not a failure), 1 when it does not.`

export const BUILD_USAGE = `usage: face-multitask build <onnx> [--precision fp16|bf16|fp32] [--min-batch N] [--opt-batch N]
                            [--max-batch N] [--opt-level 0-5] [--workspace-mib N] [--engine-dir DIR] [--json]

Builds the TensorRT engine for <onnx> on this GPU and stores it in the engine cache, showing
TensorRT's progress (a first build takes minutes; Ctrl-C cancels it). FaceMultitask.load() with
the same options, and detect or batch with the same flags, then load it in seconds. An engine
already in the cache is reused, not rebuilt.

${ENGINE_FLAGS_USAGE}
  --json               print the loaded engine's description as JSON
  -h, --help           this help

Needs an NVIDIA GPU and TensorRT 10 or 11 (\`face-multitask doctor\` says whether they are found).
Exit code 0 when the engine is ready, 1 when it cannot be built here, 2 for bad arguments.`
