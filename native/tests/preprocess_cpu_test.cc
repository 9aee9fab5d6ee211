// Node-free test of the CPU preprocessing (native/preprocess) against a direct, deliberately
// naive double-precision per-pixel formula (the C++ port of test/reference/preprocess.ts), on
// smooth images where float32 coordinate rounding cannot matter: max abs difference <= 1e-5 in
// [0,1] pixel units. Exact float32 agreement with torch is test/preprocess-torch.test.ts.
// Plain C++; prints each failure and 'N passed, M failed'; exit status 0 only if none failed.
// `--dump FILE` also writes a line per output it computes (the case's name and a hash of the
// output's bits), plus outputs on noise images (where the naive reference cannot be held to 1e-5),
// to FILE: ctest compares the AVX2 build's file with the portable build's (FM_PREPROCESS_PORTABLE_ONLY,
// what ARM64 runs), which must be bit-identical; `diff` of the two files names the cases that differ.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "test_support.h"
#include "preprocess/preprocess.h"

using namespace fm;

namespace {

using fm_test::check;
using fm_test::g_failed;
using fm_test::g_passed;

FILE* g_dump = nullptr;  // --dump FILE
void dump(const std::string& name, const std::vector<float>& v) {
  if (!g_dump) return;
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the floats' bytes
  const auto* b = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ b[i]) * 1099511628211ull;
  if (std::fprintf(g_dump, "%016llx %s\n", static_cast<unsigned long long>(h), name.c_str()) < 0) {
    std::perror("--dump");
    std::exit(2);
  }
}

const double kMeanD[3] = {0.485, 0.456, 0.406};
const double kStdD[3] = {0.229, 0.224, 0.225};
const char* kFormatNames[5] = {"rgb", "rgba", "bgr", "bgra", "gray"};

struct Image {
  std::vector<uint8_t> buf;
  const uint8_t* data;
  int width, height;
  size_t stride;
  PixelFormat format;
  int nc;
  int off[3];
  Frame frame() const { return Frame{data, width, height, stride, format}; }
};

// A smooth test image, `pad` spare bytes per row (filled with junk), the data `offset` bytes in.
Image smooth_image(int width, int height, PixelFormat format, int pad = 0, int offset = 0) {
  Image im;
  im.nc = channels(format);
  const bool bgr = format == PixelFormat::BGR || format == PixelFormat::BGRA;
  const bool gray = format == PixelFormat::GRAY;
  im.off[0] = gray ? 0 : (bgr ? 2 : 0);
  im.off[1] = gray ? 0 : 1;
  im.off[2] = gray ? 0 : (bgr ? 0 : 2);
  im.width = width;
  im.height = height;
  im.format = format;
  im.stride = static_cast<size_t>(width) * im.nc + pad;
  im.buf.assign(offset + im.stride * height, 0xa5);
  uint8_t* d = im.buf.data() + offset;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int k = 0; k < im.nc; ++k)
        d[y * im.stride + x * im.nc + k] = static_cast<uint8_t>(
            std::lround(127.5 + 120 * std::sin(x * 0.031 + k * 1.3) * std::cos(y * 0.027 - k)));
  im.data = d;
  return im;
}

using fm_test::face_crop;

// A copy of `src` whose last row ends exactly at an inaccessible page, with no padding after it
// (the rows before keep their padded stride): a read past the last row's pixels faults.
struct GuardedImage {
  Image im;
  void* map = nullptr;
  size_t map_bytes = 0;
  explicit GuardedImage(const Image& src) : im(src) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t bytes = src.stride * (src.height - 1) + static_cast<size_t>(src.width) * src.nc;
    const size_t pages = (bytes + page - 1) / page;
    map_bytes = (pages + 1) * page;
    map = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t* base = static_cast<uint8_t*>(map);
    mprotect(base + pages * page, page, PROT_NONE);
    uint8_t* d = base + pages * page - bytes;
    std::copy(src.data, src.data + bytes, d);
    im.buf.clear();
    im.data = d;
  }
  ~GuardedImage() { munmap(map, map_bytes); }
};

// ---- the reference, double precision, pixel by pixel ----

double pixel(const Image& im, int x, int y, int c) { return im.data[y * im.stride + x * im.nc + im.off[c]] / 255.0; }

double reflect_ref(double v, int n) {  // mirror about -0.5 and n - 0.5, then clamp to [0, n-1]
  double u = std::fabs(v + 0.5);
  const double flips = std::floor(u / n);
  u = std::fmod(u, n);
  const double r = std::fmod(flips, 2.0) == 0 ? u - 0.5 : n - u - 0.5;
  return std::min(std::max(r, 0.0), n - 1.0);
}

// grid_sample(align_corners=False) at index coordinates (pixel k's centre at k).
double sample(const Image& im, double ix, double iy, int c, bool reflection) {
  if (reflection) {
    ix = reflect_ref(ix, im.width);
    iy = reflect_ref(iy, im.height);
  }
  const double x0 = std::floor(ix), y0 = std::floor(iy);
  const double xs[2][2] = {{x0, 1 - (ix - x0)}, {x0 + 1, ix - x0}};
  const double ys[2][2] = {{y0, 1 - (iy - y0)}, {y0 + 1, iy - y0}};
  double v = 0;
  for (auto& xw : xs)
    for (auto& yw : ys) {
      const double xx = xw[0], yy = yw[0];
      if (xx < 0 || yy < 0 || xx >= im.width || yy >= im.height) continue;
      v += xw[1] * yw[1] * pixel(im, static_cast<int>(xx), static_cast<int>(yy), c);
    }
  return v;
}

// The 256x256 chip, planar, [0,1]; window null: the image is the chip. Square: chip pixel j
// samples index x + (j + 0.5) / 256 * w, reflection. Stretch: the grid is normalised by (W - 1)
// but sampled with align_corners=False: index (x + (j + 0.5) / 256 * w) * W / (W - 1) - 0.5, zeros.
std::vector<double> ref_chip(const Image& im, const CropWindow* win, CropMode crop) {
  const bool square = crop == CropMode::Square;
  auto index = [&](double origin, double extent, int k, int n) {
    const double pos = origin + (k + 0.5) / 256 * extent;
    return square ? pos : pos * n / (n - 1) - 0.5;
  };
  std::vector<double> chip(3 * 256 * 256);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 256; ++i)
      for (int j = 0; j < 256; ++j)
        chip[c * 65536 + i * 256 + j] =
            win ? sample(im, index(win->x, win->width, j, im.width), index(win->y, win->height, i, im.height), c, square)
                : pixel(im, j, i, c);
  return chip;
}

struct AaRef {
  int start;
  std::vector<double> w;
};

// Antialiased (triangle filter widened by the scale) resize weights, PIL/torch style.
std::vector<AaRef> aa_ref(int in, int out) {
  const double scale = static_cast<double>(in) / out, support = scale;
  std::vector<AaRef> r;
  for (int i = 0; i < out; ++i) {
    const double center = scale * (i + 0.5);
    const int lo = std::max(static_cast<int>(std::trunc(center - support + 0.5)), 0);
    const int hi = std::min(static_cast<int>(std::trunc(center + support + 0.5)), in);
    AaRef a{lo, {}};
    double total = 0;
    for (int j = lo; j < hi; ++j) {
      a.w.push_back(std::max(0.0, 1 - std::fabs((j - center + 0.5) / scale)));
      total += a.w.back();
    }
    for (double& v : a.w) v /= total;
    r.push_back(a);
  }
  return r;
}

// 256 -> 224 (centre crop or antialiased bilinear) and ImageNet normalisation, NCHW.
std::vector<double> ref_input(const std::vector<double>& chip, ResizeMode resize) {
  static const std::vector<AaRef> wts = aa_ref(256, 224);
  std::vector<double> out(3 * 224 * 224);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 224; ++y)
      for (int x = 0; x < 224; ++x) {
        double v = 0;
        if (resize == ResizeMode::CenterCrop) {
          v = chip[c * 65536 + (y + 16) * 256 + x + 16];
        } else {
          const AaRef& wy = wts[y];
          const AaRef& wx = wts[x];
          for (size_t a = 0; a < wy.w.size(); ++a)
            for (size_t b = 0; b < wx.w.size(); ++b)
              v += wy.w[a] * wx.w[b] * chip[c * 65536 + (wy.start + a) * 256 + wx.start + b];
        }
        out[c * 50176 + y * 224 + x] = (v - kMeanD[c]) / kStdD[c];
      }
  return out;
}

// ---- checks ----

const double kTol = 1e-5;  // in [0,1] pixel units: |normalised difference| * std[c]

std::string fmt_diff(double d) {
  char s[64];
  std::snprintf(s, sizeof s, "max |diff| = %.3g (tolerance %.0e)", d, kTol);
  return s;
}

// The native model input against the reference, in [0,1] pixel units.
void check_input(const std::string& name, const Image& im, const CropWindow* win, CropMode crop, ResizeMode resize) {
  std::vector<float> got(kInputFloats, NAN);
  preprocess_face(im.frame(), win, crop, resize, got.data());
  dump(name, got);
  const std::vector<double> want = ref_input(ref_chip(im, win, crop), resize);
  double m = 0;
  for (int i = 0; i < kInputFloats; ++i) {
    const double d = std::fabs(got[i] - want[i]) * kStdD[i / kInputPlane];
    m = std::isnan(d) ? INFINITY : std::max(m, d);
  }
  check(m <= kTol, name, fmt_diff(m));
}

// Every byte independent (a xorshift stream): each tap's weight shows in the output's bits.
Image noise_image(int width, int height, PixelFormat format, int pad, uint32_t seed) {
  Image im = smooth_image(width, height, format, pad);
  uint8_t* d = im.buf.data();
  for (uint8_t& b : im.buf) {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    b = static_cast<uint8_t>(seed >> 24);
  }
  im.data = d;
  return im;
}

std::string window_name(const CropWindow& w) {
  char s[128];
  std::snprintf(s, sizeof s, "[%g, %g, %g, %g]", w.x, w.y, w.width, w.height);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--dump") {
    g_dump = std::fopen(argv[2], "w");
    if (!g_dump) {
      std::perror(argv[2]);
      return 2;
    }
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: %s [--dump FILE]\n", argv[0]);
    return 2;
  }
  std::printf("kernels: %s\n", preprocess_kernel_set());
  // The AVX2 build must run its AVX2 kernels where the CPU has them: otherwise the comparison of
  // the two builds' outputs (preprocess_portable_equals_native) compares the portable code with itself.
#if defined(FM_TEST_EXPECT_PORTABLE)
  const std::string want_kernels = "portable";
#elif (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const std::string want_kernels = __builtin_cpu_supports("avx2") ? "avx2" : "portable";
#else
  const std::string want_kernels = preprocess_kernel_set();  // MSVC, ARM: nothing else to expect
#endif
  check(want_kernels == preprocess_kernel_set(), "the kernel set this CPU and build should run", "runs " +
        std::string(preprocess_kernel_set()) + ", expected " + want_kernels);
  const CropMode crops[2] = {CropMode::Square, CropMode::Stretch};
  const ResizeMode resizes[2] = {ResizeMode::AntialiasBilinear, ResizeMode::CenterCrop};
  const char* crop_name[2] = {"stretch", "square"};
  const char* resize_name[2] = {"center_crop", "antialias_bilinear"};

  // Boxes [x1, y1, x2, y2] in frames of w x h: inside, off each edge, tiny, larger than the frame.
  struct Case {
    const char* name;
    int w, h;
    float box[4];
  };
  const Case cases[] = {
      {"face inside a landscape frame", 320, 200, {100, 40, 190, 150}},
      {"off the left/top edge", 320, 200, {-30, -20, 60, 90}},
      {"off the right/bottom edge", 200, 320, {150, 260, 230, 340}},
      {"tiny box (upsampled)", 64, 48, {20.5f, 10.25f, 24, 13}},
      {"sub-pixel box at a corner", 64, 48, {63.2f, 47.1f, 63.6f, 47.5f}},
      {"box larger than the frame", 90, 140, {-50, -40, 150, 200}},
      {"box wholly outside the frame", 120, 90, {200, 150, 260, 230}},
      {"tiny frame", 3, 2, {0, 0, 3, 2}},
  };
  for (const Case& c : cases) {
    const Image im = smooth_image(c.w, c.h, PixelFormat::RGB);
    for (CropMode crop : crops) {
      if (crop == CropMode::Stretch && (c.w < 2 || c.h < 2)) continue;  // the (W - 1) grid needs W >= 2
      const CropWindow win = face_crop(crop, c.box[0], c.box[1], c.box[2], c.box[3], c.w, c.h);
      if (!(win.width > 0 && win.height > 0)) continue;  // a box wholly outside clamps to nothing (stretch)
      for (ResizeMode resize : resizes)
        check_input(std::string(c.name) + ", " + crop_name[static_cast<int>(crop)] + " crop, " +
                        resize_name[static_cast<int>(resize)] + " " + window_name(win),
                    im, &win, crop, resize);
    }
  }

  // Raw windows, not from face boxes: far off-frame, sub-pixel, much larger than the frame.
  const CropWindow raw[] = {{-1000, -1000, 50, 50}, {10.3f, 7.7f, 0.25f, 0.5f}, {-300, -200, 900, 700}, {150, 90, 400, 30}};
  for (const CropWindow& w : raw) {
    const Image im = smooth_image(160, 120, PixelFormat::BGR, 3, 1);
    for (CropMode crop : crops)
      for (ResizeMode resize : resizes)
        check_input(std::string("raw window ") + window_name(w) + ", " + crop_name[static_cast<int>(crop)] + ", " +
                        resize_name[static_cast<int>(resize)],
                    im, &w, crop, resize);
  }

  // Every pixel format, padded stride, data at an odd offset; both crops and resizes.
  for (int f = 0; f < 5; ++f) {
    const Image im = smooth_image(150, 110, static_cast<PixelFormat>(f), 7, 13);
    for (CropMode crop : crops) {
      const CropWindow win = face_crop(crop, 30, 20, 110, 100, 150, 110);
      for (ResizeMode resize : resizes)
        check_input(std::string("pixel format ") + kFormatNames[f] + ", padded stride, odd offset, " +
                        crop_name[static_cast<int>(crop)] + ", " + resize_name[static_cast<int>(resize)],
                    im, &win, crop, resize);
    }
  }

  // The last row without its padding, ending at an inaccessible page: every format, both crops
  // and resizes, boxes over the bottom-right corner and covering the frame, and a chip. A read
  // past the last pixel crashes the test; the values are checked as everywhere else.
  for (int f = 0; f < 5; ++f) {
    const GuardedImage g(smooth_image(150, 110, static_cast<PixelFormat>(f), 7));
    const float boxes[3][4] = {{120, 90, 160, 125}, {141, 101, 148, 108}, {-10, -10, 160, 120}};
    for (const auto& b : boxes)
      for (CropMode crop : crops) {
        const CropWindow win = face_crop(crop, b[0], b[1], b[2], b[3], 150, 110);
        for (ResizeMode resize : resizes)
          check_input(std::string("short last row at a guard page, ") + kFormatNames[f] + ", " + crop_name[static_cast<int>(crop)] +
                          ", " + resize_name[static_cast<int>(resize)] + " " + window_name(win),
                      g.im, &win, crop, resize);
      }
    const GuardedImage chip(smooth_image(256, 256, static_cast<PixelFormat>(f), 5));
    for (ResizeMode resize : resizes)
      check_input(std::string("chip with a short last row at a guard page, ") + kFormatNames[f], chip.im, nullptr,
                  CropMode::Square, resize);
  }

  // A 256x256 chip given directly (and a larger frame read as a chip: its top-left 256x256).
  for (int f = 0; f < 5; ++f) {
    const Image chip = smooth_image(256, 256, static_cast<PixelFormat>(f), f, f);
    for (ResizeMode resize : resizes)
      check_input(std::string("chip given directly, ") + kFormatNames[f] + ", " + resize_name[static_cast<int>(resize)],
                  chip, nullptr, CropMode::Square, resize);
  }
  check_input("larger frame as a chip", smooth_image(300, 280, PixelFormat::RGBA), nullptr, CropMode::Stretch,
              ResizeMode::AntialiasBilinear);

  // make_chip (the 256x256 chip itself) against the reference chip. Square: a box over the
  // edges (reflection keeps the chip smooth); stretch: inside the frame, since its zero padding
  // is a hard edge in the chip itself, where a float32 coordinate (~1e-5 px at x ~ 200) moves
  // values by more than the tolerance (the full-pipeline cases above stay within it).
  {
    const Image im = smooth_image(320, 200, PixelFormat::BGRA, 4, 2);
    for (CropMode crop : crops) {
      const CropWindow win = crop == CropMode::Square ? face_crop(crop, -20, 30, 140, 210, 320, 200)
                                                      : face_crop(crop, 60, 40, 160, 150, 320, 200);
      std::vector<float> got(3 * kChip * kChip);
      make_chip(im.frame(), &win, crop, got.data());
      dump(std::string("make_chip, ") + crop_name[static_cast<int>(crop)], got);
      const std::vector<double> want = ref_chip(im, &win, crop);
      double m = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double d = std::fabs(got[i] - want[i]);
        m = std::isnan(d) ? INFINITY : std::max(m, d);  // std::max(m, NaN) would keep m
      }
      check(m <= kTol, std::string("make_chip, ") + crop_name[static_cast<int>(crop)], fmt_diff(m));
    }
  }

  // The stretch crop pads with zeros outside the frame (normalised: -mean/std).
  {
    const Image im = smooth_image(100, 100, PixelFormat::RGB);
    const CropWindow far{-1000, -1000, 50, 50};
    std::vector<float> got(kInputFloats);
    preprocess_face(im.frame(), &far, CropMode::Stretch, ResizeMode::CenterCrop, got.data());
    bool ok = true;
    for (int i = 0; i < kInputFloats; ++i) {
      const int c = i / kInputPlane;
      ok = ok && std::fabs(got[i] - (-kMeanD[c] / kStdD[c])) <= 1e-6;
    }
    check(ok, "stretch crop off the frame is zero padding (-mean/std)");
  }

  // Noise frames, dumped only: every format; faces from tiny to wider than the fused-path ratio
  // (windows of 40 to 900 px, on and off the edges), both crops and resizes; and chips.
  if (g_dump) {
    const float boxes[][4] = {{300, 200, 340, 250}, {100, 80, 400, 380}, {-90, -60, 500, 450}, {50, 30, 800, 700},
                              {600, 500, 1100, 900}, {12.3f, 7.9f, 14.1f, 9.2f}};
    for (int f = 0; f < 5; ++f) {
      const Image im = noise_image(1000, 800, static_cast<PixelFormat>(f), 3 * f, 0x9e3779b9u + f);
      for (const auto& b : boxes)
        for (CropMode crop : crops) {
          const CropWindow win = face_crop(crop, b[0], b[1], b[2], b[3], im.width, im.height);
          if (!(win.width > 0 && win.height > 0)) continue;
          const std::string name = std::string("noise ") + kFormatNames[f] + ", " + crop_name[static_cast<int>(crop)] + " " + window_name(win);
          for (ResizeMode resize : resizes) {
            std::vector<float> got(kInputFloats);
            preprocess_face(im.frame(), &win, crop, resize, got.data());
            dump(name + ", " + resize_name[static_cast<int>(resize)], got);
          }
          std::vector<float> chip(3 * kChip * kChip);
          make_chip(im.frame(), &win, crop, chip.data());
          dump(name + ", make_chip", chip);
        }
      const Image chip = noise_image(256, 256, static_cast<PixelFormat>(f), f, 77u + f);
      for (ResizeMode resize : resizes) {
        std::vector<float> got(kInputFloats);
        preprocess_face(chip.frame(), nullptr, CropMode::Square, resize, got.data());
        dump(std::string("noise chip, ") + kFormatNames[f] + ", " + resize_name[static_cast<int>(resize)], got);
      }
    }
    if (std::fclose(g_dump) != 0) {
      std::perror("--dump");
      return 2;
    }
  }

  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
