// build_engine() (builder.cc) end to end over the stand-in TensorRT (fake_trt_builder.cc,
// fake_trt_parser.cc, fake_trt_runtime.cc), for scripts/check-tensorrt.sh, which builds this
// against the headers being checked and runs it with the stand-in libraries and the host
// stand-in libcuda.so.1. A build gives a plan TrtEngine loads with the asked profile; progress
// reaches the callback in order; a cancel (the callback, or the flag) stops it; the timing cache
// file is written, combined by a second build and replaced when TensorRT refuses it; the parser's
// errors and the inputs the profile cannot serve come back as messages.
//   build_over_fake_test <work folder>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../../tests/test_support.h"
#include "tensorrt/builder.h"
#include "tensorrt/runtime.h"

using fm_test::check;
namespace trt = fm::trt;

namespace {

std::string dir;

std::string write(const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::string read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

int lines(const std::string& text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

const char* kModel = "FAKE-ONNX\ninput input -1 3 224 224\n";

trt::BuildOptions options(const std::string& model) {
  trt::BuildOptions o;
  o.onnx_path = write("model.onnx", model);
  o.min_batch = 2;
  o.opt_batch = 8;
  o.max_batch = 32;
  return o;
}

bool mentions(const std::vector<std::string>& messages, const std::string& what) {
  for (const std::string& m : messages)
    if (m.find(what) != std::string::npos) return true;
  return false;
}

void builds_and_loads() {
  trt::BuildOptions o = options(kModel);
  o.timing_cache_path = dir + "/timing.cache";
  std::remove(o.timing_cache_path.c_str());  // from an earlier run
  std::vector<std::string> events;
  o.progress = [&](const trt::BuildProgress& p) {
    using K = trt::BuildProgress::Kind;
    events.push_back(p.kind == K::PhaseStart ? "start " + p.phase + "<" + p.parent + ">/" + std::to_string(p.steps)
                     : p.kind == K::StepComplete ? "step " + p.phase + " " + std::to_string(p.step) : "finish " + p.phase);
    return true;
  };
  trt::BuildResult r = trt::build_engine(o);
  check(r.ok && !r.plan.empty(), "a build gives a plan", r.error);
  check(mentions(r.messages, "a warning from a builder thread"), "a message TensorRT logs from a thread of its own reaches the build's messages");
  check(!mentions(r.messages, "TF32"), "FP32 layers are built in FP32, not TensorRT's default TF32");
  std::string seen;
  for (const std::string& e : events) seen += e + "; ";
  check(seen == "start Building<>/3; step Building 0; start Timing<Building>/2; step Timing 0; step Timing 1; finish Timing; "
                "step Building 1; step Building 2; finish Building; ",
        "progress: phases, nested phases and steps in order", seen);
  check(r.timing_cache_saved && read(o.timing_cache_path).rfind("FAKE-TIMING\n", 0) == 0 && lines(read(o.timing_cache_path)) == 2,
        "the timing cache file is written with the build's entry", read(o.timing_cache_path));
  std::string error;
  auto engine = trt::TrtEngine::load(r.plan.data(), r.plan.size(), 1, 0, &error);
  check(engine != nullptr, "TrtEngine loads the plan it built", error);
  if (engine) {
    const trt::TensorDesc& in = engine->tensors().front();
    check(in.name == "input" && in.min_batch == 2 && in.opt_batch == 8 && in.max_batch == 32, "... with the profile asked for",
          in.name + " " + std::to_string(in.min_batch) + "/" + std::to_string(in.opt_batch) + "/" + std::to_string(in.max_batch));
  }

  // Another build (another optimization level: other tactics) adds its entry to the file's.
  o.progress = nullptr;
  o.optimization_level = 2;
  r = trt::build_engine(o);
  check(r.ok && lines(read(o.timing_cache_path)) == 3, "a second build combines its timings with the file's", read(o.timing_cache_path));

  // A file TensorRT refuses (another build or device): ignored with a warning, then replaced.
  write("timing.cache", "not a timing cache");
  r = trt::build_engine(o);
  check(r.ok && mentions(r.messages, "ignored the timing cache"), "a timing cache TensorRT refuses is ignored, with a warning",
        r.error);
  check(read(o.timing_cache_path).rfind("FAKE-TIMING\n", 0) == 0, "... and replaced by this build's", read(o.timing_cache_path));
}

void cancels() {
  trt::BuildOptions o = options(kModel);
  int steps = 0;
  o.progress = [&](const trt::BuildProgress& p) { return !(p.kind == trt::BuildProgress::Kind::StepComplete && ++steps == 2); };
  trt::BuildResult r = trt::build_engine(o);
  check(!r.ok && r.cancelled && r.error == "the engine build was cancelled" && r.plan.empty(),
        "the progress callback returning false cancels the build", r.error);
  std::atomic<bool> cancel{true};
  o.progress = nullptr;
  o.cancel = &cancel;
  r = trt::build_engine(o);
  check(!r.ok && r.cancelled, "the cancel flag cancels the build", r.error);
  // A build that fails for its own reason while a cancel is pending (no step came to stop it):
  // TensorRT's error, not a cancel.
  setenv("FAKE_TRT_BUILD_FAIL", "out of memory while building", 1);
  r = trt::build_engine(o);
  unsetenv("FAKE_TRT_BUILD_FAIL");
  check(!r.ok && !r.cancelled && r.error.find("out of memory while building") != std::string::npos,
        "a build failing on its own while a cancel is pending reports its error", r.error);
}

void refuses() {
  trt::BuildResult r = trt::build_engine(options("FAKE-ONNX\ninput input -1 3 224 224\nerror 3 /net/roi RoiAlign plugin ROIAlign_TRT not found\n"));
  check(!r.ok && r.error.find("ONNX parser rejected") != std::string::npos &&
            r.error.find("node 3 (/net/roi, RoiAlign): plugin ROIAlign_TRT not found") != std::string::npos &&
            r.parser_errors.size() == 1 && r.parser_errors[0].node_operator == "RoiAlign",
        "the parser's errors, each with its node", r.error);
  r = trt::build_engine(options("FAKE-ONNX\ninput input -1 3 224 224\ninput other -1 4\n"));
  check(!r.ok && r.error.find("second dynamic input, other [-1, 4]") != std::string::npos, "a second dynamic input is refused", r.error);
  r = trt::build_engine(options("FAKE-ONNX\ninput input 4 3 224 224\n"));
  check(!r.ok && r.error.find("fixed batch of 4") != std::string::npos, "a fixed batch the profile cannot serve is refused", r.error);
  r = trt::build_engine(options("FAKE-ONNX\ninput image -1 3 224 224\n"));
  check(!r.ok && r.error.find("no input named 'input' (inputs: image [-1, 3, 224, 224])") != std::string::npos,
        "a model without the input is refused, naming its inputs", r.error);
}

// External weights are read from beside the model's path as given (the files the engine's key
// hashes), not beside a symbolic link's target: a folder of links, as a Hugging Face snapshot.
void reads_weights_beside_the_path_given() {
  namespace fs = std::filesystem;
  fs::create_directories(dir + "/blobs");
  fs::create_directories(dir + "/snapshot");
  write("blobs/0a1b", std::string(kModel) + "weights model.onnx.data\n");
  write("snapshot/model.onnx.data", "weights");
  fs::remove(dir + "/snapshot/model.onnx");
  fs::create_symlink("../blobs/0a1b", dir + "/snapshot/model.onnx");
  trt::BuildOptions o = options(kModel);
  o.onnx_path = dir + "/snapshot/model.onnx";
  trt::BuildResult r = trt::build_engine(o);
  check(r.ok, "a model through a symbolic link finds its external weights beside the link", r.error);
  const fs::path here = fs::current_path();
  fs::current_path(dir);
  o.onnx_path = "snapshot/model.onnx";
  r = trt::build_engine(o);
  fs::current_path(here);
  check(r.ok, "... and so through a relative path (the parser is given an absolute one)", r.error);
}

// An ONNX file larger than the memory left (a limit on this process's address space): the build
// fails saying so. An exception out of build_engine would end the process (it runs on a thread).
void runs_out_of_memory() {
  const std::string path = write("huge.onnx", kModel);
  std::filesystem::resize_file(path, std::uintmax_t{2} << 30);  // sparse: 2 GiB on no disk
  long pages = 0;
  std::ifstream("/proc/self/statm") >> pages;
  rlimit before{};
  getrlimit(RLIMIT_AS, &before);
  rlimit tight = before;
  tight.rlim_cur = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + (rlim_t{1} << 30);
  if (before.rlim_cur != RLIM_INFINITY && before.rlim_cur < tight.rlim_cur) tight.rlim_cur = before.rlim_cur;
  const bool limited = setrlimit(RLIMIT_AS, &tight) == 0;
  trt::BuildOptions o = options(kModel);
  o.onnx_path = path;
  const trt::BuildResult r = trt::build_engine(o);
  setrlimit(RLIMIT_AS, &before);
  std::remove(path.c_str());
  check(limited && !r.ok && r.error == "the engine build ran out of host memory",
        "an ONNX file larger than the memory left fails the build, saying so", r.error);
}

}  // namespace

int main(int argc, char** argv) {
  dir = argc > 1 ? argv[1] : ".";
  builds_and_loads();
  cancels();
  refuses();
  reads_weights_beside_the_path_given();
  runs_out_of_memory();
  std::printf("build: %d passed, %d failed\n", fm_test::g_passed, fm_test::g_failed);
  return fm_test::g_failed == 0 ? 0 : 1;
}
