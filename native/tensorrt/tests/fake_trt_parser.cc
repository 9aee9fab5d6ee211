// A stand-in libnvonnxparser.so.<major> for scripts/check-tensorrt.sh: fills the network of the
// stand-in libnvinfer (fake_trt_builder.cc) through INetworkDefinition, as the real parser does.
// From a real ONNX file it takes only the graph's inputs and outputs (names and shapes: the
// stand-in's "inference" copies input values to the outputs); or from a text "model":
//   FAKE-ONNX
//   input <name> <dims, -1 where dynamic>
//   error <node index> <node name> <operator> <description...>   (parse then fails with it)
//   weights <file>   (external weights: must exist beside model_path, which must be absolute)
// Anything else fails to parse, with one error. Its errors are read through IParserError.
#include <NvInfer.h>
#include <NvOnnxParser.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "fake_trt.h"
#include "fake_trt_parser_stubs.h"

// fake_trt_builder.cc: the network's parser is alive or gone; an output of the network (the stand-in
// network has no layers to make one from).
extern "C" void fake_trt_network_parsed(void* network, int parser_alive);
extern "C" void fake_trt_network_output(void* network, const char* name, const int64_t* dims, int nb_dims);

namespace {

// Protocol-buffer wire format, as much of it as ModelProto's graph inputs and outputs need.
struct Wire {
  const uint8_t* p;
  const uint8_t* end;
  bool varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; p < end && shift < 64; shift += 7) {
      const uint8_t b = *p++;
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  // The next field: its number, and for length-delimited ones (wire type 2) its bytes; others skipped.
  bool field(int* number, Wire* bytes) {
    uint64_t key = 0, n = 0;
    if (!varint(&key)) return false;
    *number = static_cast<int>(key >> 3);
    *bytes = Wire{p, p};
    switch (key & 7) {
      case 0: return varint(&n);
      case 1: p += 8; return p <= end;
      case 5: p += 4; return p <= end;
      case 2:
        if (!varint(&n) || n > static_cast<uint64_t>(end - p)) return false;
        *bytes = Wire{p, p + n};
        p += n;
        return true;
      default: return false;
    }
  }
};

// ValueInfoProto: name (1), type (2) -> TypeProto.tensor_type (1) -> shape (2) -> dim (1) ->
// dim_value (1) or dim_param (2, dynamic: -1).
bool value_info(Wire w, std::string* name, std::vector<int64_t>* dims) {
  int f = 0;
  Wire b{};
  while (w.p < w.end) {
    if (!w.field(&f, &b)) return false;
    if (f == 1) name->assign(reinterpret_cast<const char*>(b.p), static_cast<size_t>(b.end - b.p));
    if (f != 2) continue;
    for (Wire type = b; type.p < type.end;) {
      if (!type.field(&f, &b)) return false;
      if (f != 1) continue;
      for (Wire tensor = b; tensor.p < tensor.end;) {
        if (!tensor.field(&f, &b)) return false;
        if (f != 2) continue;
        for (Wire shape = b; shape.p < shape.end;) {
          if (!shape.field(&f, &b)) return false;
          if (f != 1) continue;
          int64_t v = -1;
          for (Wire dim = b; dim.p < dim.end;) {
            const uint8_t* at = dim.p;
            uint64_t key = 0, value = 0;
            if (!dim.varint(&key)) return false;
            if (key == (1 << 3)) {  // dim_value, a varint
              if (!dim.varint(&value)) return false;
              v = static_cast<int64_t>(value);
            } else {
              dim.p = at;
              if (!dim.field(&f, &b)) return false;
            }
          }
          dims->push_back(v);
        }
      }
    }
  }
  return !name->empty();
}

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
  bool parse(void const* data, size_t size, const char* model_path) noexcept override {
    errors_.clear();
    std::istringstream in(std::string(static_cast<const char*>(data), size));
    std::string line, word;
    if (!std::getline(in, line) || line != "FAKE-ONNX") return parse_onnx(static_cast<const uint8_t*>(data), size);
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
      } else if (word == "weights") {
        const std::string model = model_path != nullptr ? model_path : "";
        if (model.empty() || model[0] != '/') return fail(-1, "", "", "model_path is not an absolute path: " + model);
        std::string file;
        l >> file;
        file = model.substr(0, model.rfind('/') + 1) + file;
        if (!std::ifstream(file)) return fail(-1, "", "", "the external weights " + file + " are missing");
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
  // ModelProto.graph (7): its inputs (11) into the network, its outputs (12) marked.
  bool parse_onnx(const uint8_t* data, size_t size) {
    Wire model{data, data + size};
    int f = 0;
    Wire b{};
    bool graph = false;
    while (model.p < model.end) {
      if (!model.field(&f, &b)) return fail(-1, "", "", "not an ONNX model (its protocol buffer does not parse)");
      if (f != 7) continue;
      graph = true;
      for (Wire g = b; g.p < g.end;) {
        Wire v{};
        if (!g.field(&f, &v)) return fail(-1, "", "", "the ONNX graph does not parse");
        if (f != 11 && f != 12) continue;
        std::string name;
        std::vector<int64_t> dims;
        if (!value_info(v, &name, &dims)) return fail(-1, "", "", "an ONNX graph input or output does not parse");
        if (f == 11) {
          nvinfer1::Dims d{};
          d.nbDims = static_cast<int32_t>(dims.size());
          for (size_t k = 0; k < dims.size(); ++k) d.d[k] = dims[k];
          network_->addInput(name.c_str(), nvinfer1::DataType::kFLOAT, d);
        } else {
          fake_trt_network_output(network_, name.c_str(), dims.data(), static_cast<int>(dims.size()));
        }
      }
    }
    if (!graph) return fail(-1, "", "", "not an ONNX model (no graph)");
    fake_trt_network_parsed(network_, 1);
    return true;
  }
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
