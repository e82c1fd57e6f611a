// config.pbtxt through libprotobuf's own TextFormat parser (the one Triton
// uses), so that gpuslice reads exactly the files Triton reads: syntax
// errors and unknown fields come back with line and column, and every set
// field outside the caller's supported list is refused by name.
#include "worker/pbtxt.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "model_config.pb.h"

namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::TextFormat;

// Keeps the parser's first error, where it is (0-based line and column).
class FirstError : public google::protobuf::io::ErrorCollector {
public:
  void AddError(int at_line, google::protobuf::io::ColumnNumber at_column,
                const std::string &text) override {
    if (!seen) {
      seen = true;
      line = at_line;
      column = at_column;
      message = text;
    }
  }
  bool seen = false;
  int line = 0, column = 0;
  std::string message;
};

struct Walk {
  const char *const *supported;
  std::string bad_path;
  TextFormat::ParseLocation where;
};

bool listed(const char *const *supported, const std::string &path) {
  for (; *supported; supported++)
    if (path == *supported)
      return true;
  return false;
}

bool has_listed_children(const char *const *supported,
                         const std::string &path) {
  std::string prefix = path + ".";
  for (; *supported; supported++)
    if (std::strncmp(*supported, prefix.c_str(), prefix.size()) == 0)
      return true;
  return false;
}

// False at the first set field (depth first, in field order) that is not
// supported; walk records its path and where the text set it.
bool check_fields(const Message &msg, const std::string &prefix,
                  const TextFormat::ParseInfoTree *tree, Walk *walk) {
  std::vector<const FieldDescriptor *> fields;
  msg.GetReflection()->ListFields(msg, &fields);
  for (const FieldDescriptor *f : fields) {
    std::string path = prefix.empty() ? f->name() : prefix + "." + f->name();
    int n = f->is_repeated() ? msg.GetReflection()->FieldSize(msg, f) : 1;
    if (!listed(walk->supported, path)) {
      walk->bad_path = path;
      if (tree)
        walk->where = tree->GetLocation(f, f->is_repeated() ? 0 : -1);
      return false;
    }
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE ||
        !has_listed_children(walk->supported, path))
      continue;
    for (int i = 0; i < n; i++) {
      const Message &sub =
          f->is_repeated() ? msg.GetReflection()->GetRepeatedMessage(msg, f, i)
                           : msg.GetReflection()->GetMessage(msg, f);
      const TextFormat::ParseInfoTree *subtree =
          tree ? tree->GetTreeForNested(f, f->is_repeated() ? i : -1) : nullptr;
      if (!check_fields(sub, path, subtree, walk))
        return false;
    }
  }
  return true;
}

gs__pbtxt_status_t serialize(const Message &config, uint8_t **out,
                             size_t *out_len);

gs__pbtxt_status_t parse(const char *text, size_t len, const char *file,
                         const char *const *supported, uint8_t **out,
                         size_t *out_len, char *msg, size_t msg_size) {
  inference::config::ModelConfig config;
  TextFormat::Parser parser;
  TextFormat::ParseInfoTree tree;
  FirstError errors;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(std::string(text, len), &config)) {
    std::snprintf(msg, msg_size, "%s:%d:%d: %s", file, errors.line + 1,
                  errors.column + 1,
                  errors.seen ? errors.message.c_str() : "cannot parse");
    return GS__PBTXT_SYNTAX;
  }
  Walk walk{supported, std::string(), TextFormat::ParseLocation()};
  if (!check_fields(config, std::string(), &tree, &walk)) {
    std::snprintf(msg, msg_size,
                  "%s:%d:%d: field '%s' is not supported by gpuslice", file,
                  walk.where.line + 1, walk.where.column + 1,
                  walk.bad_path.c_str());
    return GS__PBTXT_UNSUPPORTED;
  }
  return serialize(config, out, out_len);
}

// A load request's "config": Triton's ModelConfig as JSON (protobuf's JSON
// mapping, as Triton reads it), refused by field name as the text is.
gs__pbtxt_status_t parse_json(const char *text, size_t len, const char *file,
                              const char *const *supported, uint8_t **out,
                              size_t *out_len, char *msg, size_t msg_size) {
  inference::config::ModelConfig config;
  google::protobuf::util::JsonParseOptions options;
  auto status = google::protobuf::util::JsonStringToMessage(
      std::string(text, len), &config, options);
  if (!status.ok()) {
    std::snprintf(msg, msg_size, "%s: not a model configuration in JSON: %s",
                  file, std::string(status.message()).c_str());
    return GS__PBTXT_SYNTAX;
  }
  Walk walk{supported, std::string(), TextFormat::ParseLocation()};
  if (!check_fields(config, std::string(), nullptr, &walk)) {
    std::snprintf(msg, msg_size, "%s: field '%s' is not supported by gpuslice",
                  file, walk.bad_path.c_str());
    return GS__PBTXT_UNSUPPORTED;
  }
  return serialize(config, out, out_len);
}

gs__pbtxt_status_t serialize(const Message &config, uint8_t **out,
                             size_t *out_len) {
  std::string bin;
  if (!config.SerializeToString(&bin))
    return GS__PBTXT_NOMEM;
  *out = static_cast<uint8_t *>(std::malloc(bin.size() ? bin.size() : 1));
  if (!*out)
    return GS__PBTXT_NOMEM;
  std::memcpy(*out, bin.data(), bin.size());
  *out_len = bin.size();
  return GS__PBTXT_OK;
}

} // namespace

namespace {

gs__pbtxt_status_t guarded(bool json, const char *text, size_t len,
                           const char *file, const char *const *supported,
                           uint8_t **out, size_t *out_len, char *msg,
                           size_t msg_size) {
  *out = nullptr;
  *out_len = 0;
  if (msg_size)
    msg[0] = '\0';
  // The library never prints: libprotobuf would log to stderr (invalid
  // UTF-8 in a string, say); what matters comes back in msg.
  static std::once_flag quiet;
  // No exception crosses into C: libprotobuf throws only bad_alloc.
  try {
    std::call_once(quiet, [] { google::protobuf::SetLogHandler(nullptr); });
    gs__pbtxt_status_t rc =
        json ? parse_json(text, len, file, supported, out, out_len, msg,
                          msg_size)
             : parse(text, len, file, supported, out, out_len, msg, msg_size);
    if (rc == GS__PBTXT_NOMEM)
      std::snprintf(msg, msg_size, "%s: out of memory", file);
    return rc;
  } catch (const std::bad_alloc &) {
    std::snprintf(msg, msg_size, "%s: out of memory", file);
    return GS__PBTXT_NOMEM;
  }
}

} // namespace

extern "C" gs__pbtxt_status_t
gs__pbtxt_model_config(const char *text, size_t len, const char *file,
                       const char *const *supported, uint8_t **out,
                       size_t *out_len, char *msg, size_t msg_size) {
  return guarded(false, text, len, file, supported, out, out_len, msg,
                 msg_size);
}

extern "C" gs__pbtxt_status_t
gs__pbtxt_model_config_json(const char *json, size_t len, const char *file,
                            const char *const *supported, uint8_t **out,
                            size_t *out_len, char *msg, size_t msg_size) {
  return guarded(true, json, len, file, supported, out, out_len, msg, msg_size);
}
