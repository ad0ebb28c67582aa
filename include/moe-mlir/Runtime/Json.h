//===- Json.h - A small, strict JSON parser ---------------------*- C++ -*-===//
//
// Part of the moe-mlir runtime: C++17 standard library only (no MLIR, no
// LLVM), no exceptions (fallible operations return a Status).
//
// Parses RFC 8259 JSON into a DOM (JsonValue) and nothing more lenient:
//  - the whole input is one value, with optional surrounding whitespace
//    (space, tab, CR, LF); no comments, no trailing commas, no single quotes,
//    no NaN/Infinity, no leading '+' or zeros, no byte order mark;
//  - strings must be valid UTF-8 (no overlong forms, no encoded surrogates,
//    nothing above U+10FFFF) without raw control characters; escapes are
//    \" \\ \/ \b \f \n \r \t and \uXXXX, where a surrogate pair becomes one
//    code point and a lone surrogate is an error;
//  - a number without fraction or exponent that fits in int64_t is an Int,
//    every other number a Double (integers beyond int64_t included); a
//    number whose magnitude exceeds the double range is an error, one that
//    underflows is a signed zero;
//  - object members keep their document order; duplicate keys are an error
//    unless JsonParseOptions::allowDuplicateKeys is set;
//  - nesting deeper than JsonParseOptions::maxDepth and inputs larger than
//    JsonParseOptions::maxSize are errors.
// Error messages are one line and give the byte offset of the problem.
//
// Used for safetensors headers, model.safetensors.index.json and config.json.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_JSON_H
#define MOE_MLIR_RUNTIME_JSON_H

#include "moe-mlir/Runtime/Npy.h" // Status

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moe_rt {

struct JsonMember;

/// One JSON value. A default-constructed JsonValue is null.
class JsonValue {
public:
  enum class Kind { Null, Bool, Int, Double, String, Array, Object };

  JsonValue() = default;
  static JsonValue null() { return JsonValue(); }
  static JsonValue boolean(bool value);
  static JsonValue integer(int64_t value);
  static JsonValue number(double value);
  static JsonValue string(std::string value);
  static JsonValue array();
  static JsonValue object();

  Kind kind() const { return kind_; }
  bool isNull() const { return kind_ == Kind::Null; }
  bool isBool() const { return kind_ == Kind::Bool; }
  bool isInt() const { return kind_ == Kind::Int; }
  bool isDouble() const { return kind_ == Kind::Double; }
  /// Int or Double.
  bool isNumber() const { return isInt() || isDouble(); }
  bool isString() const { return kind_ == Kind::String; }
  bool isArray() const { return kind_ == Kind::Array; }
  bool isObject() const { return kind_ == Kind::Object; }

  /// The value; false / 0 / "" / empty when the kind differs (asDouble
  /// converts an Int).
  bool asBool() const { return isBool() && bool_; }
  int64_t asInt() const { return isInt() ? int_ : 0; }
  double asDouble() const;
  const std::string &asString() const;

  /// Array elements; empty unless an array.
  const std::vector<JsonValue> &items() const;
  /// Object members in document order; empty unless an object.
  const std::vector<JsonMember> &members() const;
  /// Number of array elements or object members (0 for scalars).
  size_t size() const;

  /// Array element `i`, or nullptr when out of range or not an array.
  const JsonValue *at(size_t i) const;
  /// The object member `key` (the last one when keys repeat), or nullptr when
  /// absent or not an object. Linear in the number of members.
  const JsonValue *get(const std::string &key) const;

  /// Building: append to an array / an object (no duplicate check). No-ops
  /// when the kind differs.
  void push(JsonValue value);
  void set(std::string key, JsonValue value);

  /// Byte offset in the parsed text where this value starts (0 for values
  /// built by hand).
  size_t offset() const { return offset_; }

  /// Structural equality (member order matters; an Int never equals a
  /// Double; offsets are ignored).
  bool operator==(const JsonValue &other) const;
  bool operator!=(const JsonValue &other) const { return !(*this == other); }

private:
  friend class JsonParser;

  Kind kind_ = Kind::Null;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  size_t offset_ = 0;
  std::string string_;
  std::vector<JsonValue> items_;
  std::vector<JsonMember> members_;
};

struct JsonMember {
  std::string key;
  JsonValue value;
  size_t keyOffset = 0; // byte offset of the key's opening quote

  bool operator==(const JsonMember &other) const {
    return key == other.key && value == other.value;
  }
};

/// "null", "bool", "integer", "number", "string", "array", "object".
const char *jsonKindName(JsonValue::Kind kind);

struct JsonParseOptions {
  /// Deepest nesting of arrays and objects (the top-level value is depth 1).
  size_t maxDepth = 128;
  /// Largest accepted input in bytes (the safetensors header limit).
  size_t maxSize = 100000000;
  /// Accept objects with repeated keys (all members are kept).
  bool allowDuplicateKeys = false;
};

/// Parses `size` bytes at `text` into `out`. On failure `out` is left
/// unchanged, the message reads "at byte N: <problem>" and `errorOffset`
/// (when given) receives N.
Status parseJson(const char *text, size_t size, JsonValue &out,
                 const JsonParseOptions &options = JsonParseOptions(),
                 size_t *errorOffset = nullptr);
Status parseJson(const std::string &text, JsonValue &out,
                 const JsonParseOptions &options = JsonParseOptions(),
                 size_t *errorOffset = nullptr);

/// Reads and parses the file at `path`; messages start with the path.
Status readJsonFile(const std::string &path, JsonValue &out,
                    const JsonParseOptions &options = JsonParseOptions());

/// Compact JSON text of `value` (no whitespace; non-ASCII kept as UTF-8;
/// doubles with up to 17 significant digits, so they read back exactly;
/// non-finite doubles, which JSON cannot express, as null).
std::string serializeJson(const JsonValue &value);

/// `text` as a JSON string literal, quotes included.
std::string jsonQuote(const std::string &text);

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_JSON_H
