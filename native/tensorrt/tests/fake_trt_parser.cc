// A stand-in libnvonnxparser.so.<major> for scripts/check-tensorrt.sh: fills the network of the
// stand-in libnvinfer (fake_trt_builder.cc) through INetworkDefinition, as the real parser does,
// from a text "model" instead of ONNX:
//   FAKE-ONNX
//   input <name> <dims, -1 where dynamic>
//   error <node index> <node name> <operator> <description...>   (parse then fails with it)
// Anything else fails to parse, with one error. Its errors are read through IParserError.
#include <NvInfer.h>
#include <NvOnnxParser.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "fake_trt.h"
#include "fake_trt_parser_stubs.h"

extern "C" void fake_trt_network_parsed(void* network, int parser_alive);  // fake_trt_builder.cc

namespace {

class ParserError final : public nvonnxparser::StubIParserError {
 public:
  ParserError(int node, std::string name, std::string op, std::string desc)
      : node_(node), name_(std::move(name)), op_(std::move(op)), desc_(std::move(desc)) {}
  nvonnxparser::ErrorCode code() const override { return nvonnxparser::ErrorCode::kUNSUPPORTED_NODE; }
  char const* desc() const override { return desc_.c_str(); }
  int node() const override { return node_; }
  char const* nodeName() const override { return name_.c_str(); }
  char const* nodeOperator() const override { return op_.c_str(); }

 private:
  int node_;
  std::string name_, op_, desc_;
};

class Parser final : public nvonnxparser::StubIParser {
 public:
  Parser(nvinfer1::INetworkDefinition* network, nvinfer1::ILogger* logger) : network_(network), logger_(logger) {}
  ~Parser() override { fake_trt_network_parsed(network_, 0); }
  bool parse(void const* data, size_t size, const char*) noexcept override {
    errors_.clear();
    std::istringstream in(std::string(static_cast<const char*>(data), size));
    std::string line, word;
    if (!std::getline(in, line) || line != "FAKE-ONNX") return fail(-1, "", "", "not a model this stand-in parses");
    while (std::getline(in, line)) {
      std::istringstream l(line);
      if (!(l >> word)) continue;
      if (word == "input") {
        std::string name;
        nvinfer1::Dims d{};
        l >> name;
        for (int64_t v; l >> v;) d.d[d.nbDims++] = v;
        network_->addInput(name.c_str(), nvinfer1::DataType::kFLOAT, d);
      } else if (word == "error") {
        int node = -1;
        std::string name, op, desc;
        l >> node >> name >> op;
        std::getline(l >> std::ws, desc);
        errors_.push_back(std::make_unique<ParserError>(node, name, op, desc));
      } else {
        return fail(-1, "", "", "unknown line: " + line);
      }
    }
    fake_trt_network_parsed(network_, 1);
    if (!errors_.empty()) logger_->log(nvinfer1::ILogger::Severity::kERROR, errors_.front()->desc());
    return errors_.empty();
  }
  int getNbErrors() const noexcept override { return static_cast<int>(errors_.size()); }
  nvonnxparser::IParserError const* getError(int i) const noexcept override {
    return i >= 0 && i < getNbErrors() ? errors_[static_cast<size_t>(i)].get() : nullptr;
  }

 private:
  bool fail(int node, std::string name, std::string op, std::string desc) {
    errors_.push_back(std::make_unique<ParserError>(node, std::move(name), std::move(op), std::move(desc)));
    return false;
  }
  nvinfer1::INetworkDefinition* network_;
  nvinfer1::ILogger* logger_;
  std::vector<std::unique_ptr<ParserError>> errors_;
};

}  // namespace

extern "C" {
void* createNvOnnxParser_INTERNAL(void* network, void* logger, int) noexcept {
  return static_cast<nvonnxparser::IParser*>(new Parser(static_cast<nvinfer1::INetworkDefinition*>(network), static_cast<nvinfer1::ILogger*>(logger)));
}
int getNvOnnxParserVersion() noexcept { return NV_TENSORRT_VERSION; }
}
