// TensorRT library loading and the availability status (see loader.h).
#include "tensorrt/loader.h"

#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>
#include <type_traits>

#include "tensorrt/cuda_driver.h"

#if defined(FM_HAVE_TENSORRT)
#include <NvInfer.h>
#include <NvInferPlugin.h>
#include <NvOnnxParser.h>

// The hand-written entry point types must be the headers' declarations (noexcept aside: the
// parser's entry points gained it in 10.x, which changes no ABI).
namespace {
template <class F> struct Plain { using type = F; };
template <class R, class... A> struct Plain<R (*)(A...) noexcept> { using type = R (*)(A...); };
template <class A, class B> constexpr bool kSameAbi = std::is_same_v<typename Plain<A>::type, typename Plain<B>::type>;
}  // namespace
static_assert(kSameAbi<decltype(&::createInferBuilder_INTERNAL), decltype(fm::trt::Library::createInferBuilder)>);
static_assert(kSameAbi<decltype(&::createInferRuntime_INTERNAL), decltype(fm::trt::Library::createInferRuntime)>);
static_assert(kSameAbi<decltype(&::getInferLibVersion), decltype(fm::trt::Library::getInferLibVersion)>);
static_assert(kSameAbi<decltype(&::getInferLibBuildVersion), decltype(fm::trt::Library::getInferLibBuildVersion)>);
static_assert(kSameAbi<decltype(&::createNvOnnxParser_INTERNAL), decltype(fm::trt::Library::createNvOnnxParser)>);
static_assert(kSameAbi<decltype(&::getNvOnnxParserVersion), decltype(fm::trt::Library::getNvOnnxParserVersion)>);
static_assert(kSameAbi<decltype(&::initLibNvInferPlugins), decltype(fm::trt::Library::initLibNvInferPlugins)>);
#endif

namespace fm::trt {
namespace {

#if defined(FM_HAVE_TENSORRT)
std::string version_text(long v) {
  // TensorRT >= 10: (MAJOR * 100 + MINOR) * 100 + PATCH; up to 9: MAJOR * 1000 + MINOR * 100 + PATCH.
  if (v <= 0) return "";
  long major, minor, patch = v % 100;
  if (v >= 100000) {
    major = v / 10000;
    minor = (v / 100) % 100;
  } else {
    major = v / 1000;
    minor = (v / 100) % 10;
  }
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

int major_of(long v) { return v >= 100000 ? static_cast<int>(v / 10000) : static_cast<int>(v / 1000); }

std::string major_minor(const std::string& v) {
  const size_t second = v.find('.', v.find('.') + 1);
  return second == std::string::npos ? v : v.substr(0, second);
}

bool is_dir(const std::string& p) {
  struct stat st;
  return !p.empty() && stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
}

std::string real(const std::string& p) {
  char buf[PATH_MAX];
  return realpath(p.c_str(), buf) ? std::string(buf) : p;
}

std::string dirname_of(const std::string& p) {
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? std::string(".") : p.substr(0, slash);
}

std::string env(const char* name) {
  const char* v = getenv(name);
  return v ? std::string(v) : std::string();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<std::string> glob_dirs(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g;
  if (glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i)
      if (is_dir(g.gl_pathv[i])) out.push_back(g.gl_pathv[i]);
  }
  globfree(&g);
  return out;
}

// The folder this addon was loaded from (build/Release, prebuilds/<platform>-<arch>, ...).
std::string addon_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&addon_dir), &info) != 0 && info.dli_fname != nullptr)
    return dirname_of(real(info.dli_fname));
  return "";
}

// Where the libraries are looked for (loader.h). `dirs` are tried with the full path; the
// default library path (dlopen of the bare soname) sits between the explicit folders and pip's.
struct SearchPlan {
  std::vector<std::string> explicit_dirs;  // $TENSORRT_LIB_DIR, $TENSORRT_ROOT/lib, /usr/local/tensorrt/lib
  std::vector<std::string> pip_dirs;       // .../site-packages/tensorrt_libs
  std::vector<std::string> described;      // for the status: every place, in order
};

SearchPlan make_plan() {
  SearchPlan plan;
  std::set<std::string> seen;
  auto add = [&](std::vector<std::string>* into, const std::string& d) {
    if (!is_dir(d)) return false;
    const std::string r = real(d);
    if (!seen.insert(r).second) return false;
    into->push_back(r);
    plan.described.push_back(r);
    return true;
  };

  const std::string lib_dir = env("TENSORRT_LIB_DIR");
  if (lib_dir.empty()) plan.described.push_back("$TENSORRT_LIB_DIR (unset)");
  for (const auto& d : split(lib_dir, ':'))
    if (!add(&plan.explicit_dirs, d) && !is_dir(d)) plan.described.push_back(d + " (no such folder)");
  const std::string root = env("TENSORRT_ROOT");
  if (!root.empty()) add(&plan.explicit_dirs, root + "/lib");
  add(&plan.explicit_dirs, "/usr/local/tensorrt/lib");

  plan.described.push_back("the default library path (LD_LIBRARY_PATH, ldconfig cache)");

  // pip: site-packages/tensorrt_libs (the tensorrt-cu12 / tensorrt-cu13 wheels).
  std::vector<std::string> sites;
  for (const auto& d : split(env("TENSORRT_PYTHON_SITE"), ':')) sites.push_back(d);
  std::vector<std::string> prefixes;
  for (const char* var : {"VIRTUAL_ENV", "CONDA_PREFIX", "FACE_MULTITASK_VENV"})
    if (!env(var).empty()) prefixes.push_back(env(var));
  prefixes.push_back(".venv");
  const std::string here = addon_dir();
  if (!here.empty()) prefixes.push_back(here + "/../../.venv");  // <root>/build/Release or <root>/prebuilds/<platform>
  if (!env("HOME").empty()) prefixes.push_back(env("HOME") + "/.local");
  prefixes.push_back("/usr/local");
  prefixes.push_back("/usr");
  for (const auto& p : prefixes)
    for (const char* sub : {"/lib/python3*/site-packages", "/lib/python3*/dist-packages", "/lib/python3/dist-packages"})
      for (const auto& d : glob_dirs(p + sub)) sites.push_back(d);
  const size_t before = plan.pip_dirs.size();
  for (const auto& s : sites) {
    const bool is_libs = s.size() >= 13 && s.compare(s.size() - 13, 13, "tensorrt_libs") == 0;
    add(&plan.pip_dirs, is_libs ? s : s + "/tensorrt_libs");
  }
  if (plan.pip_dirs.size() == before)
    plan.described.push_back("pip tensorrt_libs (none found: $TENSORRT_PYTHON_SITE, $VIRTUAL_ENV, $CONDA_PREFIX, $FACE_MULTITASK_VENV, .venv, ~/.local, /usr/local, /usr)");
  return plan;
}

// dlopen with the dlerror text kept. RTLD_LOCAL: TensorRT's symbols stay out of the global
// namespace; the parser and plugin libraries still find libnvinfer by its soname.
void* open_lib(const std::string& what, std::string* error) {
  dlerror();
  void* h = dlopen(what.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (h == nullptr) {
    const char* e = dlerror();
    *error = e ? e : "dlopen failed";
  }
  return h;
}

struct Opened {
  void* handle = nullptr;
  std::string path;     // the file actually loaded
  std::string problem;  // a candidate that exists but failed to load (missing dependency, ...)
};

// TensorRT 10's pip package (tensorrt_libs/__init__.py) loads the CUDA runtime and NVRTC of the
// nvidia-* wheels beside it before its own libraries: they are not on the library path, and the
// plugin library and kernels compiled at run time need them. Kept loaded; once per folder.
void preload_pip_cuda(const std::string& libs_dir) {
  static std::mutex mutex;
  static std::set<std::string> done;
  std::lock_guard<std::mutex> lock(mutex);
  if (!done.insert(libs_dir).second) return;
  for (const char* dep : {"/../nvidia/cuda_runtime/lib/*.so*", "/../nvidia/cuda_nvrtc/lib/*.so*"}) {
    glob_t g;
    if (glob((libs_dir + dep).c_str(), 0, nullptr, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) {
        std::string error;
        open_lib(g.gl_pathv[i], &error);  // a library that does not load is left to its users' errors
      }
    }
    globfree(&g);
  }
}

// Tries `soname` in `first` (if any), the explicit folders, the default path, then pip's.
Opened open_first(const SearchPlan& plan, const std::string& soname, const std::string& first = "") {
  Opened o;
  auto try_path = [&](const std::string& path, bool must_exist) {
    if (o.handle != nullptr) return;
    if (must_exist && !is_file(path)) return;
    std::string error;
    void* h = open_lib(path, &error);
    if (h != nullptr) {
      o.handle = h;
      Dl_info info;
      // The real file, also when found through the default library path.
      void* any = dlsym(h, "getInferLibVersion");
      if (any == nullptr) any = dlsym(h, "getNvOnnxParserVersion");
      if (any == nullptr) any = dlsym(h, "initLibNvInferPlugins");
      o.path = (any != nullptr && dladdr(any, &info) != 0 && info.dli_fname) ? real(info.dli_fname) : path;
    } else if (must_exist || error.find("No such file") == std::string::npos) {
      if (o.problem.empty()) o.problem = error;
    }
  };
  const auto pip = [&](const std::string& d) { return std::find(plan.pip_dirs.begin(), plan.pip_dirs.end(), d) != plan.pip_dirs.end(); };
  if (!first.empty()) {
    if (o.handle == nullptr && pip(first) && is_file(first + "/" + soname)) preload_pip_cuda(first);
    try_path(first + "/" + soname, true);
  }
  for (const auto& d : plan.explicit_dirs) try_path(d + "/" + soname, true);
  try_path(soname, false);
  for (const auto& d : plan.pip_dirs) {
    if (o.handle == nullptr && is_file(d + "/" + soname)) preload_pip_cuda(d);
    try_path(d + "/" + soname, true);
  }
  return o;
}

template <class F>
bool sym(void* h, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  return *out != nullptr;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}
#endif  // FM_HAVE_TENSORRT

void append_detail(Status* s, const std::string& text) {
  if (text.empty()) return;
  if (!s->detail.empty()) s->detail += "; ";
  s->detail += text;
}

struct Probe {
  Status status;
  Library lib;
  bool lib_ok = false;
  std::string lib_dir;         // folder of libnvinfer
  bool lib_via_default = true;  // found through the default library path
};

// "GPU too old (sm_XY; TensorRT Z needs ≥ sm_75)", or "" for a compute capability TensorRT runs on.
std::string too_old(int cc_major, int cc_minor, int trt_major) {
  if (cc_major * 10 + cc_minor >= kMinComputeCapability) return "";
  return "GPU too old (sm_" + std::to_string(cc_major) + std::to_string(cc_minor) + "; TensorRT " + std::to_string(trt_major) +
         " needs \u2265 sm_" + std::to_string(kMinComputeCapability) + ")";
}

// The GPU half of the status: filled whenever the driver answers; sets the reason only if none
// is set yet (the library reasons come first).
void probe_gpu(Status* s, int trt_major) {
  const cu::GpuInfo& g = cu::gpu_info();
  if (g.driver_loaded && g.driver_version > 0)
    s->cuda_driver_version = std::to_string(g.driver_version / 1000) + "." + std::to_string((g.driver_version % 1000) / 10);
  s->gpu_count = g.device_count;
  s->gpu_name = g.name;
  if (g.cc_major > 0) s->compute_capability = std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor);
  s->sm_count = g.sm_count;
  s->gpu_memory = g.total_memory;
  if (!s->reason.empty()) return;
  if (!g.driver_loaded || (!g.initialized && g.init_result != cu::kErrorNoDevice)) {
    s->reason = "no CUDA driver";
    append_detail(s, g.driver_error);
  } else if (g.device_count == 0) {
    s->reason = "no GPU";
    append_detail(s, g.driver_error.empty() ? "cuDeviceGetCount: 0 devices" : g.driver_error);
  } else {
    s->reason = too_old(g.cc_major, g.cc_minor, trt_major);
  }
}

Probe probe() {
  Probe p;
  Status& s = p.status;
#if !defined(FM_HAVE_TENSORRT)
  s.reason = "headers absent at build time";
  s.detail =
      "this build of the addon has no TensorRT backend: with the TensorRT headers (TENSORRT_INCLUDE_DIR or "
      "TENSORRT_ROOT) and the CUDA headers (/usr/local/cuda/include) present, `npm rebuild face-multitask` "
      "builds it with one";
  probe_gpu(&s, 10);
#else
  constexpr int kMajor = NV_TENSORRT_MAJOR;
  s.built_for = std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
                std::to_string(NV_TENSORRT_PATCH);
  const std::string suffix = ".so." + std::to_string(kMajor);
  const SearchPlan plan = make_plan();
  s.searched = plan.described;

  // libnvinfer
  const std::string nvinfer = "libnvinfer" + suffix;
  Opened o = open_first(plan, nvinfer);
  if (o.handle == nullptr) {
    // Another major present? Say so rather than "no library" (its layout is not ours: unused).
    for (int other : {8, 9, 10, 11, 12, 13}) {
      if (other == kMajor) continue;
      Opened w = open_first(plan, "libnvinfer.so." + std::to_string(other));
      int32_t (*ver)() noexcept = nullptr;
      if (w.handle != nullptr && sym(w.handle, "getInferLibVersion", &ver)) {
        const long v = ver();
        s.reason = "wrong TensorRT major (library " + major_minor(version_text(v)) + ", built for " +
                   std::to_string(kMajor) + ")";
        s.tensorrt_version = version_text(v);
        s.library_path = w.path;
        append_detail(&s, "found " + w.path + "; this addon was compiled against the TensorRT " + s.built_for +
                              " headers and needs " + nvinfer);
        break;
      }
    }
    if (s.reason.empty()) {
      s.reason = "no TensorRT library (searched: " + nvinfer + " in " + join(plan.described, ", ") + ")";
      if (!o.problem.empty()) append_detail(&s, "a candidate failed to load: " + o.problem);
    }
    probe_gpu(&s, kMajor);
    return p;
  }
  s.library_path = o.path;
  p.lib_dir = dirname_of(o.path);
  p.lib_via_default = true;
  for (const auto& d : plan.explicit_dirs) if (d == p.lib_dir) p.lib_via_default = false;
  for (const auto& d : plan.pip_dirs) if (d == p.lib_dir) p.lib_via_default = false;

  Library& L = p.lib;
  if (!sym(o.handle, "getInferLibVersion", &L.getInferLibVersion) ||
      !sym(o.handle, "createInferBuilder_INTERNAL", &L.createInferBuilder) ||
      !sym(o.handle, "createInferRuntime_INTERNAL", &L.createInferRuntime)) {
    s.reason = "no TensorRT library (searched: " + nvinfer + " in " + join(plan.described, ", ") + ")";
    append_detail(&s, o.path + " lacks getInferLibVersion, createInferBuilder_INTERNAL or createInferRuntime_INTERNAL");
    probe_gpu(&s, kMajor);
    return p;
  }
  const long v = L.getInferLibVersion();
  s.tensorrt_version = version_text(v);
  if (sym(o.handle, "getInferLibBuildVersion", &L.getInferLibBuildVersion)) s.tensorrt_build = std::to_string(L.getInferLibBuildVersion());
  if (major_of(v) != kMajor) {
    s.reason = "wrong TensorRT major (library " + major_minor(s.tensorrt_version) + ", built for " +
               std::to_string(kMajor) + ")";
    probe_gpu(&s, kMajor);
    return p;
  }
  // Within a major, newer libraries keep the older interfaces, not the reverse: methods the
  // headers of a later minor declare (getDeviceMemorySizeV2 came in 10.1) are missing from an
  // older minor's tables, and calling one is undefined behaviour. Refused, not warned about.
  // (Versions are (major * 100 + minor) * 100 + patch; a patch release adds no methods.)
  if (v / 100 < static_cast<long>(NV_TENSORRT_VERSION) / 100) {
    s.reason = "TensorRT library older than the headers (library " + s.tensorrt_version + ", built for " +
               s.built_for + ")";
    append_detail(&s, "rebuild the addon against this TensorRT's own headers (TENSORRT_INCLUDE_DIR=<its include folder> npm rebuild face-multitask), or install TensorRT " +
                          s.built_for + " or newer " + std::to_string(kMajor) + ".x");
    probe_gpu(&s, kMajor);
    return p;
  }

  // libnvonnxparser: needed to build engines (always, on the first run).
  const std::string parser = "libnvonnxparser" + suffix;
  Opened op = open_first(plan, parser, p.lib_dir);
  if (op.handle != nullptr && sym(op.handle, "createNvOnnxParser_INTERNAL", &L.createNvOnnxParser)) {
    s.parser = true;
    if (sym(op.handle, "getNvOnnxParserVersion", &L.getNvOnnxParserVersion))
      s.parser_version = version_text(L.getNvOnnxParserVersion());
  } else {
    L.createNvOnnxParser = nullptr;
    std::vector<std::string> where = plan.described;
    if (std::find(where.begin(), where.end(), p.lib_dir) == where.end())
      where.insert(where.begin(), p.lib_dir);
    s.reason = "no TensorRT library (searched: " + parser + " in " + join(where, ", ") + ")";
    append_detail(&s, "libnvinfer was found (" + o.path + ") but not the ONNX parser" +
                          (op.problem.empty() ? std::string() : ": " + op.problem));
  }

  // libnvinfer_plugin: optional (RoiAlign models need it).
  Opened pl = open_first(plan, "libnvinfer_plugin" + suffix, p.lib_dir);
  if (pl.handle != nullptr && sym(pl.handle, "initLibNvInferPlugins", &L.initLibNvInferPlugins)) {
    s.plugins = true;
  } else {
    L.initLibNvInferPlugins = nullptr;
    append_detail(&s, "libnvinfer_plugin" + suffix + " not loaded (models with RoiAlign, v2.6+, cannot be built or run)" +
                          (pl.problem.empty() ? std::string() : ": " + pl.problem));
  }
  p.lib_ok = true;
  probe_gpu(&s, kMajor);
#endif
  s.available = s.reason.empty();
  return p;
}

const Probe& probed() {
  static const Probe p = probe();  // thread-safe initialisation
  return p;
}

}  // namespace

const Status& status() { return probed().status; }

std::string unavailable_on(int device) {
  const Status& s = status();
#if defined(FM_HAVE_TENSORRT)
  // Every reason but device 0's compute capability holds for any device (the libraries, the
  // driver, no GPU at all). The capability is the selected device's, as trtexec reads the
  // properties of the device it selects.
  const cu::GpuInfo& g = cu::gpu_info();
  if (device == 0 || s.reason != too_old(g.cc_major, g.cc_minor, NV_TENSORRT_MAJOR)) return s.reason;
  int major = 0, minor = 0;
  if (!cu::compute_capability(device, &major, &minor)) return "";
  const std::string why = too_old(major, minor, NV_TENSORRT_MAJOR);
  return why.empty() ? why : "CUDA device " + std::to_string(device) + ": " + why;
#else
  (void)device;
  return s.reason;
#endif
}

const Library* library(std::string* why) {
  const Probe& p = probed();
  if (!p.lib_ok && why != nullptr) *why = p.status.reason;
  return p.lib_ok ? &p.lib : nullptr;
}

bool init_plugins(void* logger) {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [&] {
    const Library* L = library();
    if (L != nullptr && L->initLibNvInferPlugins != nullptr) ok = L->initLibNvInferPlugins(logger, "");
  });
  return ok;
}

void preload_builder_resources() {
#if defined(FM_HAVE_TENSORRT)
  static std::once_flag once;
  std::call_once(once, [] {
    const Probe& p = probed();
    if (!p.lib_ok || p.lib_via_default) return;
    glob_t g;
    const std::string pattern = p.lib_dir + "/libnvinfer_builder_resource*.so*";
    if (glob(pattern.c_str(), 0, nullptr, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) {
        std::string error;
        open_lib(g.gl_pathv[i], &error);  // kept loaded for the life of the process
      }
    }
    globfree(&g);
  });
#endif
}

}  // namespace fm::trt
