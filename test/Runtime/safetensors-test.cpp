//===- safetensors-test.cpp - Unit tests of JSON and safetensors ----------===//
//
// moe-safetensors-unittests SCRATCH_DIR
//     Runs every check (the JSON parser, safetensors files written here,
//     sharded checkpoints), printing one line per check; exits 1 if any
//     failed.
// moe-safetensors-unittests --dump PATH
//     Opens PATH with openSafeTensorsCheckpoint() (a safetensors file, an
//     index, or a directory) and prints one line per shard, per metadata
//     entry and per tensor (see dump()); on failure prints the error to
//     stderr and exits 1.
//
// Plain C++17, no exceptions, no MLIR/LLVM, like the runtime itself.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Json.h"
#include "moe-mlir/Runtime/Npy.h"
#include "moe-mlir/Runtime/SafeTensors.h"

#include <cctype>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

using namespace moe_rt;
namespace fs = std::filesystem;

namespace {

//===----------------------------------------------------------------------===//
// Reporting
//===----------------------------------------------------------------------===//

int numChecks = 0;
int numFailed = 0;

void check(bool ok, const std::string &name, const std::string &detail = "") {
  ++numChecks;
  if (ok) {
    std::printf("PASS: %s\n", name.c_str());
  } else {
    ++numFailed;
    std::printf("FAIL: %s%s%s\n", name.c_str(), detail.empty() ? "" : ": ",
                detail.c_str());
  }
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

/// The message is one line, starts with `prefix` and holds every part.
bool messageMatches(const Status &st, const std::string &prefix,
                    std::initializer_list<std::string> parts) {
  if (st.ok || contains(st.message, "\n") ||
      st.message.compare(0, prefix.size(), prefix) != 0)
    return false;
  for (const std::string &p : parts)
    if (!contains(st.message, p))
      return false;
  return true;
}

std::string statusText(const Status &st) {
  return st.ok ? std::string("ok") : "error: " + st.message;
}

//===----------------------------------------------------------------------===//
// Shared helpers
//===----------------------------------------------------------------------===//

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i)
    s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

/// A file image: length, header text, data.
std::string rawFile(const std::string &header, const std::string &data = "") {
  return le64(header.size()) + header + data;
}

bool writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

/// Deterministic bytes.
std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((i * 31 + seed * 17 + (i >> 8)) & 0xff);
  return s;
}

struct Spec {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

/// A safetensors image of `specs`, data in the given order, the header
/// padded with spaces to a multiple of 8 bytes unless `pad` is false.
std::string
buildFile(const std::vector<Spec> &specs,
          const std::vector<std::pair<std::string, std::string>> &meta = {},
          bool pad = true) {
  JsonValue header = JsonValue::object();
  if (!meta.empty()) {
    JsonValue m = JsonValue::object();
    for (const auto &kv : meta)
      m.set(kv.first, JsonValue::string(kv.second));
    header.set("__metadata__", std::move(m));
  }
  std::string data;
  for (const Spec &s : specs) {
    JsonValue e = JsonValue::object();
    e.set("dtype", JsonValue::string(s.dtype));
    JsonValue shape = JsonValue::array();
    for (int64_t d : s.shape)
      shape.push(JsonValue::integer(d));
    e.set("shape", std::move(shape));
    JsonValue offsets = JsonValue::array();
    offsets.push(JsonValue::integer(static_cast<int64_t>(data.size())));
    offsets.push(
        JsonValue::integer(static_cast<int64_t>(data.size() + s.bytes.size())));
    e.set("data_offsets", std::move(offsets));
    header.set(s.name, std::move(e));
    data += s.bytes;
  }
  std::string text = serializeJson(header);
  while (pad && text.size() % 8)
    text += ' ';
  return rawFile(text, data);
}

std::string shapeTuple(const std::vector<int64_t> &shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1)
    s += ",";
  return s + ")";
}

/// Order-sensitive checksum of raw bytes (as in npy-test.cpp):
/// sum over i of (i + 1) * (byte[i] + 1), modulo 2^64.
uint64_t checksum(const void *data, uint64_t size) {
  const auto *p = static_cast<const unsigned char *>(data);
  uint64_t sum = 0;
  for (uint64_t i = 0; i < size; ++i)
    sum += (i + 1) * (static_cast<uint64_t>(p[i]) + 1);
  return sum;
}

template <typename T> T loadAt(const void *data, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const unsigned char *>(data) + i * sizeof(T),
              sizeof(T));
  return v;
}

/// Element i as text: floats "%.9g" (Python's '%.9g' % float(x)), 8-bit
/// floats as their raw byte, integers and bools as integers.
std::string formatElement(const TensorInfo &t, int64_t i) {
  char buf[64];
  switch (t.dtype) {
  case SafeTensorsDType::F64:
    std::snprintf(buf, sizeof(buf), "%.9g", loadAt<double>(t.data, i));
    break;
  case SafeTensorsDType::F32:
    std::snprintf(buf, sizeof(buf), "%.9g",
                  static_cast<double>(loadAt<float>(t.data, i)));
    break;
  case SafeTensorsDType::F16:
    std::snprintf(buf, sizeof(buf), "%.9g",
                  static_cast<double>(f16ToFloat(loadAt<uint16_t>(t.data, i))));
    break;
  case SafeTensorsDType::BF16:
    std::snprintf(
        buf, sizeof(buf), "%.9g",
        static_cast<double>(bf16ToFloat(loadAt<uint16_t>(t.data, i))));
    break;
  case SafeTensorsDType::I64:
    std::snprintf(buf, sizeof(buf), "%" PRId64, loadAt<int64_t>(t.data, i));
    break;
  case SafeTensorsDType::U64:
    std::snprintf(buf, sizeof(buf), "%" PRIu64, loadAt<uint64_t>(t.data, i));
    break;
  case SafeTensorsDType::I32:
    std::snprintf(buf, sizeof(buf), "%" PRId32, loadAt<int32_t>(t.data, i));
    break;
  case SafeTensorsDType::U32:
    std::snprintf(buf, sizeof(buf), "%" PRIu32, loadAt<uint32_t>(t.data, i));
    break;
  case SafeTensorsDType::I16:
    std::snprintf(buf, sizeof(buf), "%d",
                  static_cast<int>(loadAt<int16_t>(t.data, i)));
    break;
  case SafeTensorsDType::U16:
    std::snprintf(buf, sizeof(buf), "%u",
                  static_cast<unsigned>(loadAt<uint16_t>(t.data, i)));
    break;
  case SafeTensorsDType::I8:
    std::snprintf(buf, sizeof(buf), "%d",
                  static_cast<int>(loadAt<int8_t>(t.data, i)));
    break;
  case SafeTensorsDType::U8:
  case SafeTensorsDType::Bool:
  case SafeTensorsDType::F8_E4M3:
  case SafeTensorsDType::F8_E5M2:
    std::snprintf(buf, sizeof(buf), "%u",
                  static_cast<unsigned>(loadAt<uint8_t>(t.data, i)));
    break;
  }
  return buf;
}

//===----------------------------------------------------------------------===//
// --dump
//===----------------------------------------------------------------------===//

int dump(const std::string &path) {
  std::unique_ptr<SafeTensorsIndex> index;
  Status st = openSafeTensorsCheckpoint(path, index);
  if (!st) {
    std::fprintf(stderr, "%s\n", st.message.c_str());
    return 1;
  }
  std::printf("checkpoint %s shards=%zu tensors=%zu\n",
              index->isSharded() ? "sharded" : "single", index->shards().size(),
              index->size());
  for (const auto &shard : index->shards()) {
    std::string base = fs::path(shard->path()).filename().string();
    std::printf("shard %s tensors=%zu header=%" PRIu64 "\n", base.c_str(),
                shard->size(), shard->headerSize());
    for (const auto &kv : shard->metadata())
      std::printf("metadata %s %s=%s\n", base.c_str(), kv.first.c_str(),
                  kv.second.c_str());
  }
  for (const std::string &name : index->names()) {
    const SafeTensorsFile *file = nullptr;
    const TensorInfo *t = nullptr;
    st = index->lookup(name, t, &file);
    if (!st) {
      std::fprintf(stderr, "%s\n", st.message.c_str());
      return 1;
    }
    std::string first = "none", last = "none";
    if (t->numElements > 0) {
      first = formatElement(*t, 0);
      last = formatElement(*t, t->numElements - 1);
    }
    std::printf("tensor %s file=%s dtype=%s shape=%s elements=%" PRId64
                " bytes=%" PRIu64 " checksum=%" PRIu64 " first=%s last=%s\n",
                name.c_str(),
                fs::path(file->path()).filename().string().c_str(),
                safeTensorsDTypeName(t->dtype), shapeTuple(t->shape).c_str(),
                t->numElements, t->byteSize(), checksum(t->data, t->byteSize()),
                first.c_str(), last.c_str());
  }
  return 0;
}

//===----------------------------------------------------------------------===//
// JSON
//===----------------------------------------------------------------------===//

void expectJson(const std::string &name, const std::string &input,
                const std::string &canonical) {
  JsonValue v;
  Status st = parseJson(input, v);
  std::string got = st ? serializeJson(v) : statusText(st);
  check(st.ok && got == canonical, "json parses " + name,
        "got " + got + ", expected " + canonical);
}

void expectJsonError(const std::string &name, const std::string &input,
                     const std::string &problem, size_t offset,
                     const JsonParseOptions &options = JsonParseOptions()) {
  JsonValue v = JsonValue::string("unchanged");
  size_t at = 12345;
  Status st = parseJson(input, v, options, &at);
  std::string prefix = "at byte " + std::to_string(offset) + ": ";
  check(!st.ok && at == offset && messageMatches(st, prefix, {problem}) &&
            v.asString() == "unchanged",
        "json rejects " + name,
        statusText(st) + " (wanted '" + prefix + "..." + problem + "')");
}

void testJson(const fs::path &dir) {
  // --- Scalars and numbers.
  expectJson("null", "null", "null");
  expectJson("true", "true", "true");
  expectJson("false", " \t\r\nfalse\n ", "false");
  expectJson("zero", "0", "0");
  expectJson("minus zero as an integer", "-0", "0");
  expectJson("int", "12345", "12345");
  expectJson("negative int", "-42", "-42");
  expectJson("int64 max", "9223372036854775807", "9223372036854775807");
  expectJson("int64 min", "-9223372036854775808", "-9223372036854775808");
  expectJson("fraction", "1.5", "1.5");
  expectJson("exponent", "1e3", "1000.0");
  expectJson("negative exponent", "-2.5E-3", "-0.0025");
  expectJson("exponent with plus", "25e+1", "250.0");
  expectJson("zero fraction", "0.0", "0.0");
  expectJson("large double", "1.7976931348623157e308",
             "1.7976931348623157e+308");
  expectJson("smallest subnormal", "5e-324", "5e-324");
  expectJson("underflow to zero", "1e-400", "0.0");
  expectJson("many digits", "3.14159265358979323846264338327950288",
             "3.141592653589793");
  {
    JsonValue v;
    check(parseJson("9223372036854775808", v).ok && v.isDouble() &&
              v.asDouble() == 9223372036854775808.0,
          "json: integer beyond int64 is a double");
    check(parseJson("-1e-400", v).ok && v.isDouble() && v.asDouble() == 0 &&
              std::signbit(v.asDouble()),
          "json: negative underflow is -0.0");
    check(parseJson("7", v).ok && v.isInt() && v.isNumber() && v.asInt() == 7 &&
              v.asDouble() == 7.0 && !v.isDouble(),
          "json: integral number is an Int");
    check(parseJson("7.0", v).ok && v.isDouble() && v.asInt() == 0,
          "json: 7.0 is a Double");
  }

  // --- Strings.
  expectJson("empty string", "\"\"", "\"\"");
  expectJson("simple escapes", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
             "\"a\\\"b\\\\c/d\\b\\f\\n\\r\\t\"");
  {
    JsonValue v;
    check(parseJson("\"\\u00e9\\u00E9\"", v).ok &&
              v.asString() == "\xc3\xa9\xc3\xa9",
          "json: \\u00e9 decodes to UTF-8");
    check(parseJson("\"\\u20ac\"", v).ok && v.asString() == "\xe2\x82\xac",
          "json: \\u20ac (3-byte UTF-8)");
    check(parseJson("\"\\ud83d\\ude00\"", v).ok &&
              v.asString() == "\xf0\x9f\x98\x80",
          "json: surrogate pair decodes to one code point");
    check(parseJson("\"\\udbff\\udfff\"", v).ok &&
              v.asString() == "\xf4\x8f\xbf\xbf",
          "json: U+10FFFF as a surrogate pair");
    check(parseJson("\"\\u0000x\"", v).ok &&
              v.asString() == std::string("\0x", 2),
          "json: \\u0000 keeps an embedded NUL");
    check(parseJson("\"caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac\"", v).ok &&
              v.asString() == "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac",
          "json: raw UTF-8 accepted");
    check(parseJson("\"\x7f\"", v).ok && v.asString() == "\x7f",
          "json: DEL needs no escape");
  }

  // --- Containers.
  expectJson("empty array", "[ ]", "[]");
  expectJson("empty object", "{ }", "{}");
  expectJson("nested",
             " { \"a\" : [ 1 , 2.5 , { \"b\" : null } ] , \"c\" : {} } ",
             "{\"a\":[1,2.5,{\"b\":null}],\"c\":{}}");
  expectJson("member order kept", "{\"z\":1,\"a\":2,\"m\":3}",
             "{\"z\":1,\"a\":2,\"m\":3}");
  {
    JsonValue v;
    Status st = parseJson("{\"a\": [true, \"x\"], \"n\": -3}", v);
    const JsonValue *a = v.get("a");
    check(st.ok && v.isObject() && v.size() == 2 && a && a->isArray() &&
              a->size() == 2 && a->at(0)->asBool() &&
              a->at(1)->asString() == "x" && !a->at(2) &&
              v.get("n")->asInt() == -3 && !v.get("missing") &&
              v.members()[1].key == "n" && v.get("a")->offset() == 6 &&
              v.members()[1].keyOffset == 19,
          "json: accessors and offsets", statusText(st));
    check(v.items().empty() && a->members().empty() &&
              v.get("n")->asString().empty() && !a->get("a"),
          "json: wrong-kind accessors return empty");
  }
  {
    // Depth: 128 nested arrays parse, 129 do not.
    std::string ok = std::string(128, '[') + std::string(128, ']');
    std::string deep = std::string(129, '[') + std::string(129, ']');
    JsonValue v;
    check(parseJson(ok, v).ok, "json: 128 nested arrays parse");
    expectJsonError("129 nested arrays", deep, "nesting deeper than 128", 128);
    JsonParseOptions o;
    o.maxDepth = 2;
    expectJsonError("depth limit option", "{\"a\":{\"b\":[]}}",
                    "nesting deeper than 2 levels", 10, o);
    check(parseJson("{\"a\":{\"b\":1}}", v, o).ok,
          "json: depth limit option allows depth 2");
  }
  {
    JsonParseOptions o;
    o.maxSize = 10;
    JsonValue v;
    check(parseJson("[1,2,3,4]", v, o).ok, "json: input under the size limit");
    expectJsonError("input over the size limit", "[1,2,3,4,5]",
                    "input of 11 bytes exceeds the limit of 10 bytes", 10, o);
  }
  {
    JsonParseOptions o;
    o.allowDuplicateKeys = true;
    JsonValue v;
    check(parseJson("{\"a\":1,\"a\":2}", v, o).ok && v.size() == 2 &&
              v.get("a")->asInt() == 2,
          "json: allowDuplicateKeys keeps both, get() returns the last");
  }

  // --- Malformed input, one class each.
  expectJsonError("empty input", "", "unexpected end of input", 0);
  expectJsonError("only whitespace", "  \n", "unexpected end of input", 3);
  expectJsonError("trailing text", "{} x", "unexpected 'x' after the value", 3);
  expectJsonError("two values", "1 2", "unexpected '2' after the value", 2);
  expectJsonError("leading zero", "01", "leading zero", 0);
  expectJsonError("negative leading zero", "-012", "leading zero", 1);
  expectJsonError("lone minus", "-", "expected a digit in a number", 1);
  expectJsonError("minus letter", "-a", "expected a digit in a number", 1);
  expectJsonError("leading plus", "+1", "unexpected '+', expected a value", 0);
  expectJsonError("leading dot", ".5", "unexpected '.', expected a value", 0);
  expectJsonError("trailing dot", "1.", "expected a digit after '.'", 2);
  expectJsonError("dot then exponent", "1.e5", "expected a digit after '.'", 2);
  expectJsonError("empty exponent", "1e", "expected a digit in an exponent", 2);
  expectJsonError("exponent sign only", "1e+",
                  "expected a digit in an exponent", 3);
  expectJsonError("hex number", "0x10", "unexpected 'x' after the value", 1);
  expectJsonError("number overflow", "[1e400]", "number out of range", 1);
  expectJsonError("number overflow by digits", "-" + std::string(400, '9'),
                  "number out of range", 0);
  expectJsonError("NaN", "NaN", "unexpected 'N', expected a value", 0);
  expectJsonError("Infinity", "-Infinity", "expected a digit in a number", 1);
  expectJsonError("bad literal tru", "tru", "invalid literal (expected 'true')",
                  0);
  expectJsonError("bad literal nul", "[nul]",
                  "invalid literal (expected 'null')", 1);
  expectJsonError("capitalized True", "True", "unexpected 'T'", 0);
  expectJsonError("literal with suffix", "[truex]",
                  "unexpected 'x', expected ',' or ']'", 5);
  expectJsonError("unterminated string", "\"abc", "unterminated string", 0);
  expectJsonError("unterminated after escape", "\"abc\\", "unterminated string",
                  0);
  expectJsonError("raw newline in string", "\"a\nb\"",
                  "unescaped control character byte 0x0a", 2);
  expectJsonError("raw tab in string", "\"a\tb\"",
                  "unescaped control character byte 0x09", 2);
  expectJsonError("raw NUL in string", std::string("\"a\0b\"", 5),
                  "unescaped control character byte 0x00", 2);
  expectJsonError("invalid escape", "\"a\\x41\"", "invalid escape '\\x'", 2);
  expectJsonError("escaped quote char", "\"\\'\"", "invalid escape '\\''", 1);
  expectJsonError("short \\u escape", "[\"\\u12\"]", "invalid hex digit '\"'",
                  6);
  expectJsonError("truncated \\u escape", "\"\\u1", "truncated \\u escape", 3);
  expectJsonError("bad hex in \\u", "\"\\u12g4\"", "invalid hex digit 'g'", 5);
  expectJsonError("lone high surrogate", "\"\\ud83d\"",
                  "high surrogate in a \\u escape not followed by a low", 1);
  expectJsonError("high surrogate then text", "\"\\ud83dx\"",
                  "not followed by a low surrogate", 1);
  expectJsonError("two high surrogates", "\"\\ud83d\\ud83d\"",
                  "not followed by a low surrogate", 1);
  expectJsonError("lone low surrogate", "\"a\\ude00\"", "lone low surrogate",
                  2);
  expectJsonError("invalid UTF-8 byte", "\"\xff\"", "invalid UTF-8 byte 0xff",
                  1);
  expectJsonError("UTF-8 continuation byte alone", "\"\x80\"",
                  "invalid UTF-8 byte 0x80", 1);
  expectJsonError("overlong UTF-8 (C0 80)", "\"\xc0\x80\"",
                  "invalid UTF-8 byte 0xc0", 1);
  expectJsonError("overlong UTF-8 (E0 80 80)", "\"\xe0\x80\x80\"",
                  "invalid UTF-8 sequence", 1);
  expectJsonError("UTF-8 encoded surrogate", "\"\xed\xa0\x80\"",
                  "invalid UTF-8 sequence", 1);
  expectJsonError("UTF-8 above U+10FFFF", "\"\xf4\x90\x80\x80\"",
                  "invalid UTF-8 sequence", 1);
  expectJsonError("truncated UTF-8", "\"\xe2\x82", "truncated UTF-8 sequence",
                  1);
  expectJsonError("bad UTF-8 continuation", "\"\xe2\x28\xa1\"",
                  "invalid UTF-8 sequence", 1);
  expectJsonError("non-ASCII outside strings", "\xc3\xa9",
                  "unexpected byte 0xc3, expected a value", 0);
  expectJsonError("byte order mark", "\xef\xbb\xbf{}",
                  "unexpected byte 0xef, expected a value", 0);
  expectJsonError("missing colon", "{\"a\" 1}",
                  "expected ':' after an object key", 5);
  expectJsonError("missing comma in object", "{\"a\":1 \"b\":2}",
                  "expected ',' or '}' in an object", 7);
  expectJsonError("missing comma in array", "[1 2]",
                  "expected ',' or ']' in an array", 3);
  expectJsonError("trailing comma in array", "[1,2,]",
                  "trailing comma before ']'", 5);
  expectJsonError("trailing comma in object", "{\"a\":1,}",
                  "trailing comma before '}'", 7);
  expectJsonError("leading comma in array", "[,1]",
                  "unexpected ',', expected a value", 1);
  expectJsonError("non-string key", "{1:2}", "expected a string key", 1);
  expectJsonError("single-quoted string", "['a']",
                  "unexpected ''', expected a value", 1);
  expectJsonError("bare word key", "{a:1}", "expected a string key", 1);
  expectJsonError("unclosed array", "[1,2", "expected ',' or ']'", 4);
  expectJsonError("unclosed object", "{\"a\":1", "expected ',' or '}'", 6);
  expectJsonError("missing value", "{\"a\":}",
                  "unexpected '}', expected a value", 5);
  expectJsonError("mismatched brackets", "[1}", "expected ',' or ']'", 2);
  expectJsonError("line comment", "// c\n1", "unexpected '/'", 0);
  expectJsonError("block comment", "[1 /* c */]", "expected ',' or ']'", 3);
  expectJsonError("vertical tab whitespace", "\v1", "unexpected byte 0x0b", 0);
  expectJsonError("NUL after the value", std::string("1\0", 2),
                  "unexpected byte 0x00 after the value", 1);
  expectJsonError("duplicate key", "{\"a\":1,\"b\":2,\"a\":3}",
                  "duplicate key \"a\" (first at byte 1)", 13);
  {
    // Duplicate detection in a large object (the sorting path).
    std::string big = "{";
    for (int i = 0; i < 40; ++i)
      big += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
    size_t dupAt = big.size();
    big += "\"k7\":0,\"k3\":0}";
    expectJsonError("duplicate key in a large object", big,
                    "duplicate key \"k7\"", dupAt);
  }
  expectJsonError("duplicate key in a nested object", "[{\"x\":1,\"x\":1}]",
                  "duplicate key \"x\"", 8);

  // --- Serialization round trips.
  {
    JsonValue v = JsonValue::object();
    v.set("s", JsonValue::string(std::string("q\"\\\n\x01\xc3\xa9", 7)));
    v.set("d", JsonValue::number(0.1));
    v.set("big", JsonValue::number(1e300));
    v.set("neg0", JsonValue::number(-0.0));
    v.set("int", JsonValue::integer(-9223372036854775807LL - 1));
    JsonValue arr = JsonValue::array();
    arr.push(JsonValue::null());
    arr.push(JsonValue::boolean(false));
    arr.push(JsonValue::number(2.0));
    v.set("a", std::move(arr));
    std::string text = serializeJson(v);
    JsonValue back;
    Status st = parseJson(text, back);
    check(st.ok && back == v && back.get("a")->at(2)->isDouble() &&
              std::signbit(back.get("neg0")->asDouble()),
          "json: serialize/parse round trip", text);
    check(serializeJson(JsonValue::number(std::nan(""))) == "null",
          "json: NaN serializes as null");
    check(jsonQuote(std::string("a\x1f", 2)) == "\"a\\u001f\"",
          "json: jsonQuote escapes control characters");
  }

  // --- Files.
  {
    std::string good = (dir / "good.json").string();
    std::string bad = (dir / "bad.json").string();
    writeFile(good, "{\"hidden_size\": 7168, \"rope_theta\": 10000.0}\n");
    writeFile(bad, "{\"a\": [1, 2,]}");
    JsonValue v;
    Status st = readJsonFile(good, v);
    check(st.ok && v.get("hidden_size")->asInt() == 7168 &&
              v.get("rope_theta")->isDouble(),
          "json: readJsonFile", statusText(st));
    st = readJsonFile(bad, v);
    check(messageMatches(st, bad + ": invalid JSON at byte 12: ",
                         {"trailing comma before ']'"}),
          "json: readJsonFile names the file and the byte", statusText(st));
    std::string missing = (dir / "missing.json").string();
    st = readJsonFile(missing, v);
    check(messageMatches(st, missing + ": cannot open", {}),
          "json: readJsonFile of a missing file", statusText(st));
    st = readJsonFile(dir.string(), v);
    check(messageMatches(st, dir.string() + ": not a regular file", {}),
          "json: readJsonFile of a directory", statusText(st));
    JsonParseOptions o;
    o.maxSize = 8;
    st = readJsonFile(good, v, o);
    check(messageMatches(st, good + ": file of ", {"exceeds the JSON limit"}),
          "json: readJsonFile size limit", statusText(st));
  }
}

//===----------------------------------------------------------------------===//
// safetensors files
//===----------------------------------------------------------------------===//

struct Scratch {
  fs::path dir;
  std::string path(const std::string &name) const {
    return (dir / name).string();
  }
};

/// Writes `bytes` to NAME.safetensors, opens it and expects failure with a
/// one-line message starting with the path and holding every part.
void expectOpenError(const Scratch &s, const std::string &name,
                     const std::string &bytes,
                     std::initializer_list<std::string> parts) {
  std::string file;
  for (char c : name)
    file += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  std::string path = s.path("err_" + file + ".safetensors");
  writeFile(path, bytes);
  std::unique_ptr<SafeTensorsFile> f;
  Status st = SafeTensorsFile::open(path, f);
  std::string wanted;
  for (const std::string &p : parts)
    wanted += " '" + p + "'";
  check(!f && messageMatches(st, path + ": ", parts), "rejects " + name,
        statusText(st) + " (wanted" + wanted + ")");
  // The in-memory parser gives the same verdict and message.
  std::unique_ptr<SafeTensorsFile> g;
  Status st2 = SafeTensorsFile::parse(bytes.data(), bytes.size(), path, g);
  check(!g && st2.message == st.message,
        "parse() rejects " + name + " like open()", statusText(st2));
}

bool bytesEqual(const TensorInfo *t, const std::string &bytes) {
  return t && t->byteSize() == bytes.size() &&
         (bytes.empty() ||
          std::memcmp(t->data, bytes.data(), bytes.size()) == 0);
}

void testRoundTrips(const Scratch &s) {
  // Every dtype, the data in header order.
  struct D {
    const char *name;
    SafeTensorsDType dtype;
    size_t size;
    bool runtime;
    DType rt;
  };
  const D dtypes[] = {
      {"F64", SafeTensorsDType::F64, 8, false, DType::F32},
      {"I64", SafeTensorsDType::I64, 8, true, DType::I64},
      {"U64", SafeTensorsDType::U64, 8, false, DType::F32},
      {"F32", SafeTensorsDType::F32, 4, true, DType::F32},
      {"I32", SafeTensorsDType::I32, 4, true, DType::I32},
      {"U32", SafeTensorsDType::U32, 4, false, DType::F32},
      {"F16", SafeTensorsDType::F16, 2, true, DType::F16},
      {"BF16", SafeTensorsDType::BF16, 2, true, DType::BF16},
      {"I16", SafeTensorsDType::I16, 2, false, DType::F32},
      {"U16", SafeTensorsDType::U16, 2, false, DType::F32},
      {"I8", SafeTensorsDType::I8, 1, false, DType::F32},
      {"U8", SafeTensorsDType::U8, 1, true, DType::U8},
      {"BOOL", SafeTensorsDType::Bool, 1, true, DType::Bool},
      {"F8_E4M3", SafeTensorsDType::F8_E4M3, 1, false, DType::F32},
      {"F8_E5M2", SafeTensorsDType::F8_E5M2, 1, false, DType::F32},
  };
  std::vector<Spec> specs;
  unsigned seed = 1;
  for (const D &d : dtypes) {
    std::vector<int64_t> shape = {2, 3, static_cast<int64_t>(seed)};
    size_t n = 6 * seed * d.size;
    std::string bytes = pattern(n, seed);
    if (d.dtype == SafeTensorsDType::Bool)
      for (char &c : bytes)
        c = static_cast<char>(c & 1);
    specs.push_back(
        {std::string("layer.") + d.name + ".weight", d.name, shape, bytes});
    ++seed;
  }
  std::string path = s.path("all_dtypes.safetensors");
  writeFile(path,
            buildFile(specs, {{"format", "pt"}, {"note", "caf\xc3\xa9"}}));
  std::unique_ptr<SafeTensorsFile> f;
  Status st = SafeTensorsFile::open(path, f);
  check(st.ok && f && f->size() == specs.size(), "open every dtype",
        statusText(st));
  if (!f)
    return;
  const auto *base = static_cast<const unsigned char *>(f->fileData());
  for (size_t i = 0; i < specs.size(); ++i) {
    const D &d = dtypes[i];
    const TensorInfo *t = f->find(specs[i].name);
    bool ok = t && t->name == specs[i].name && t->dtype == d.dtype &&
              t->shape == specs[i].shape &&
              t->numElements == static_cast<int64_t>(6 * (i + 1)) &&
              bytesEqual(t, specs[i].bytes) &&
              safeTensorsDTypeSize(t->dtype) == d.size &&
              std::string(safeTensorsDTypeName(t->dtype)) == d.name;
    // Zero copy: the data pointer is inside the mapping, where the header
    // says.
    ok = ok && static_cast<const unsigned char *>(t->data) ==
                   base + f->dataOffset() + t->begin;
    ok = ok && t->isAligned() && &f->tensors()[i] == t;
    DType rt = DType::F32;
    bool has = t && t->runtimeDType(rt);
    ok = ok && has == d.runtime && (!has || rt == d.rt);
    SafeTensorsDType parsed;
    ok = ok && parseSafeTensorsDType(d.name, parsed) && parsed == d.dtype;
    check(ok, std::string("round trip ") + d.name + " " +
                  shapeTuple(specs[i].shape));
  }
  check(f->metadata().size() == 2 && f->metadata().at("format") == "pt" &&
            f->metadata().at("note") == "caf\xc3\xa9",
        "metadata read");
  check(f->find("missing") == nullptr && f->find("") == nullptr,
        "find of an absent name is null");
  check(f->headerSize() % 8 == 0 &&
            f->fileSize() == f->dataOffset() + f->tensors().back().end,
        "layout accessors");
  check(f->path() == path, "path()");

  // Header order differs from data order: tensors() is sorted by offset.
  {
    std::string a = pattern(8, 1), b = pattern(4, 2), c = pattern(12, 3);
    std::string header =
        "{\"c\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"shape\":[1],\"data_offsets\":[8,12],\"dtype\":\"F32\"}}";
    while (header.size() % 4 != 1)
      header += ' ';
    std::string p = s.path("order.safetensors");
    writeFile(p, rawFile(header, a + b + c));
    std::unique_ptr<SafeTensorsFile> g;
    st = SafeTensorsFile::open(p, g);
    check(st.ok && g->names() == std::vector<std::string>{"a", "b", "c"} &&
              bytesEqual(g->find("a"), a) && bytesEqual(g->find("b"), b) &&
              bytesEqual(g->find("c"), c) && g->metadata().empty(),
          "tensors sorted by offset, not header order", statusText(st));
    // An unpadded header: the data may be misaligned, which is allowed.
    check(st.ok && g->headerSize() % 4 != 0 && !g->find("a")->isAligned(),
          "unpadded header: isAligned() reports misalignment");
  }

  // Scalars, empty tensors (sharing offsets), unknown extra fields.
  {
    std::string x = pattern(4, 9);
    std::string header =
        "{\"__metadata__\":{},"
        "\"empty0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
        "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
        "\"empty1\":{\"dtype\":\"BF16\",\"shape\":[3,0,5],"
        "\"data_offsets\":[4,4],\"extra\":{\"ignored\":[1,2]}},"
        "\"empty2\":{\"dtype\":\"I64\",\"shape\":[0,9223372036854775807],"
        "\"data_offsets\":[4,4]}}   \n\t";
    std::string p = s.path("scalar_empty.safetensors");
    writeFile(p, rawFile(header, x));
    std::unique_ptr<SafeTensorsFile> g;
    st = SafeTensorsFile::open(p, g);
    bool ok = st.ok && g->size() == 4;
    if (ok) {
      const TensorInfo *sc = g->find("scalar");
      const TensorInfo *e1 = g->find("empty1");
      ok = sc && sc->shape.empty() && sc->numElements == 1 &&
           bytesEqual(sc, x) && e1 && e1->numElements == 0 &&
           e1->byteSize() == 0 && g->find("empty2")->numElements == 0 &&
           g->names() ==
               std::vector<std::string>{"empty0", "scalar", "empty1", "empty2"};
    }
    check(ok, "scalar, empty tensors, trailing whitespace, extra fields",
          statusText(st));
  }

  // No tensors at all.
  {
    std::string p = s.path("no_tensors.safetensors");
    writeFile(p, rawFile("{}      "));
    std::unique_ptr<SafeTensorsFile> g;
    st = SafeTensorsFile::open(p, g);
    check(st.ok && g->size() == 0 && g->names().empty(), "file without tensors",
          statusText(st));
    writeFile(p, rawFile("{\"__metadata__\":{\"a\":\"b\"}}"));
    st = SafeTensorsFile::open(p, g);
    check(st.ok && g->size() == 0 && g->metadata().at("a") == "b",
          "file with only metadata", statusText(st));
    writeFile(p, rawFile("{\"__metadata__\":null}"));
    st = SafeTensorsFile::open(p, g);
    check(st.ok && g->size() == 0 && g->metadata().empty(),
          "null __metadata__ reads as absent", statusText(st));
  }

  // Names needing escapes, the in-memory parser.
  {
    std::string name = std::string("w\xc3\xa9ird \"name\"\\\x01", 14);
    std::string image = buildFile({{name, "U8", {3}, "abc"}});
    std::unique_ptr<SafeTensorsFile> g;
    st = SafeTensorsFile::parse(image.data(), image.size(), "memory", g);
    check(st.ok && g->path() == "memory" && bytesEqual(g->find(name), "abc") &&
              g->find(name)->data ==
                  static_cast<const void *>(image.data() + image.size() - 3),
          "parse() in memory, zero copy, escaped name", statusText(st));
  }

  // A larger file: 4 MiB of f32, contents intact.
  {
    std::string big = pattern(4 << 20, 5);
    std::string small = pattern(6, 6);
    std::string p = s.path("big.safetensors");
    writeFile(p, buildFile({{"big", "F32", {1024, 1024}, big},
                            {"small", "F16", {3}, small}}));
    std::unique_ptr<SafeTensorsFile> g;
    st = SafeTensorsFile::open(p, g);
    check(st.ok && bytesEqual(g->find("big"), big) &&
              bytesEqual(g->find("small"), small),
          "4 MiB tensor", statusText(st));
  }
}

void testErrors(const Scratch &s) {
  const std::string f32x2 =
      "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]";
  std::string eight(8, '\0');

  // Sizes and the header length.
  expectOpenError(s, "empty file", "",
                  {"file of 0 bytes is shorter than the 8-byte header length"});
  expectOpenError(s, "7-byte file", std::string(7, '\0'),
                  {"file of 7 bytes is shorter than the 8-byte header length"});
  expectOpenError(s, "header length past the end", le64(100) + "{}",
                  {"header length 100 runs past the end of the file (2 bytes "
                   "follow the 8-byte length)"});
  expectOpenError(
      s, "header length over the limit", le64(100000001) + "{}",
      {"header length 100000001 exceeds the limit of 100000000 bytes"});
  expectOpenError(s, "absurd header length", le64(~0ull) + "{}",
                  {"header length 18446744073709551615 exceeds the limit"});

  // The header's JSON.
  expectOpenError(s, "empty header", rawFile(""),
                  {"header is not valid JSON: at byte 0 of the header (file "
                   "offset 8): unexpected end of input"});
  expectOpenError(s, "header not JSON", rawFile("{\"a\":}"),
                  {"header is not valid JSON: at byte 5 of the header (file "
                   "offset 13): unexpected '}', expected a value"});
  expectOpenError(
      s, "header padded with NULs", rawFile(std::string("{}\0\0", 4)),
      {"header is not valid JSON", "unexpected byte 0x00 after the value"});
  expectOpenError(s, "header with invalid UTF-8", rawFile("{\"\xff\":{}}"),
                  {"header is not valid JSON", "invalid UTF-8 byte 0xff"});
  expectOpenError(s, "header an array", rawFile("[]"),
                  {"header is an array, expected a JSON object"});
  expectOpenError(s, "header a string", rawFile("\"x\""),
                  {"header is a string, expected a JSON object"});

  // Tensor entries.
  expectOpenError(s, "entry not an object", rawFile("{\"w\":[1]}"),
                  {"tensor 'w': entry is an array, expected an object"});
  expectOpenError(
      s, "missing dtype",
      rawFile("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", eight),
      {"tensor 'w': missing \"dtype\""});
  expectOpenError(
      s, "missing shape",
      rawFile("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", eight),
      {"tensor 'w': missing \"shape\""});
  expectOpenError(s, "missing data_offsets",
                  rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", eight),
                  {"tensor 'w': missing \"data_offsets\""});
  expectOpenError(
      s, "dtype not a string",
      rawFile("{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}",
              eight),
      {"tensor 'w': \"dtype\" is an integer, expected a string"});
  expectOpenError(
      s, "unknown dtype",
      rawFile("{\"w\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,8]}}",
              eight),
      {"tensor 'w': unknown dtype 'F4'"});
  expectOpenError(
      s, "lowercase dtype",
      rawFile(
          "{\"w\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
          eight),
      {"tensor 'w': unknown dtype 'f32'"});
  expectOpenError(
      s, "shape not an array",
      rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}",
              eight),
      {"tensor 'w': \"shape\" is an integer, expected an array"});
  expectOpenError(s, "shape element a string",
                  rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],"
                          "\"data_offsets\":[0,8]}}",
                          eight),
                  {"tensor 'w': \"shape\"[1] is a string, expected a "
                   "non-negative integer"});
  expectOpenError(
      s, "shape element a double",
      rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],"
              "\"data_offsets\":[0,8]}}",
              eight),
      {"tensor 'w': \"shape\"[0] is a number (not integral, or beyond int64)"});
  expectOpenError(
      s, "shape element beyond int64",
      rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],"
              "\"data_offsets\":[0,8]}}",
              eight),
      {"\"shape\"[0] is a number (not integral, or beyond int64)"});
  expectOpenError(s, "negative dimension",
                  rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],"
                          "\"data_offsets\":[0,8]}}",
                          eight),
                  {"tensor 'w': negative dimension -2 in \"shape\""});
  expectOpenError(
      s, "data_offsets not an array",
      rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":{}}}",
              eight),
      {"tensor 'w': \"data_offsets\" is an object, expected an array"});
  expectOpenError(s, "data_offsets with 3 elements",
                  rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[0,4,8]}}",
                          eight),
                  {"tensor 'w': \"data_offsets\" has 3 elements, expected 2"});
  expectOpenError(s, "negative offset",
                  rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[-8,0]}}",
                          eight),
                  {"tensor 'w': \"data_offsets\"[0] is negative"});
  expectOpenError(s, "offset not an integer",
                  rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[0,null]}}",
                          eight),
                  {"tensor 'w': \"data_offsets\"[1] is a null, expected a "
                   "non-negative integer"});
  expectOpenError(s, "begin after end",
                  rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[8,0]}}",
                          eight),
                  {"tensor 'w': \"data_offsets\" [8, 0]: begin is past end"});
  expectOpenError(s, "end past the data section",
                  rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],"
                          "\"data_offsets\":[0,16]}}",
                          eight),
                  {"tensor 'w': \"data_offsets\" [0, 16] run past the end of "
                   "the data section (8 bytes)"});
  expectOpenError(s, "byte size mismatch",
                  rawFile("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                          "\"data_offsets\":[0,20]}}",
                          std::string(20, '\0')),
                  {"tensor 'w': byte size mismatch: F32 shape [2, 3] needs 24 "
                   "bytes (expected) but \"data_offsets\" [0, 20] span 20 "
                   "bytes (actual)"});
  expectOpenError(s, "element count overflow",
                  rawFile("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,"
                          "4294967296],\"data_offsets\":[0,8]}}",
                          eight),
                  {"tensor 'w': element count of shape [4294967296, "
                   "4294967296] overflows int64"});
  expectOpenError(s, "byte size overflow",
                  rawFile("{\"w\":{\"dtype\":\"F64\",\"shape\":["
                          "4611686018427387904],\"data_offsets\":[0,8]}}",
                          eight),
                  {"tensor 'w': byte size of F64 shape [4611686018427387904] "
                   "overflows"});
  expectOpenError(s, "byte size wraps to the actual size",
                  // 2^61 F64 elements: 2^64 bytes, which wraps to 0.
                  rawFile("{\"w\":{\"dtype\":\"F64\",\"shape\":["
                          "2305843009213693952],\"data_offsets\":[0,0]}}"),
                  {"tensor 'w': byte size of F64 shape [2305843009213693952] "
                   "overflows"});
  expectOpenError(
      s, "duplicate tensor name",
      rawFile("{\"w\":{" + f32x2 + "},\"w\":{" + f32x2 + "}}", eight),
      {"duplicate tensor name 'w'"});
  expectOpenError(s, "duplicate field",
                  rawFile("{\"w\":{" + f32x2 + ",\"dtype\":\"I32\"}}", eight),
                  {"tensor 'w': entry has the field \"dtype\" twice"});

  // Layout of the data section.
  expectOpenError(s, "overlapping tensors",
                  rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[4,12]}}",
                          std::string(12, '\0')),
                  {"tensors 'a' [0, 8] and 'b' [4, 12] overlap"});
  expectOpenError(s, "identical ranges",
                  rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"I32\",\"shape\":[2],"
                          "\"data_offsets\":[0,8]}}",
                          eight),
                  {"tensors 'a' [0, 8] and 'b' [0, 8] overlap"});
  expectOpenError(s, "empty tensor inside another",
                  rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[0,8]},"
                          "\"e\":{\"dtype\":\"F32\",\"shape\":[0],"
                          "\"data_offsets\":[4,4]}}",
                          eight),
                  {"tensors 'a' [0, 8] and 'e' [4, 4] overlap"});
  expectOpenError(s, "hole between tensors",
                  rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                          "\"data_offsets\":[0,4]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
                          "\"data_offsets\":[8,12]}}",
                          std::string(12, '\0')),
                  {"hole of 4 bytes between tensors 'a' [0, 4] and 'b' [8, 12] "
                   "(the data must be contiguous)"});
  expectOpenError(s, "unused bytes before the first tensor",
                  rawFile("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
                          "\"data_offsets\":[4,8]}}",
                          eight),
                  {"4 unused bytes before the first tensor 'b' [4, 8]"});
  expectOpenError(s, "trailing bytes after the last tensor",
                  rawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                          "\"data_offsets\":[0,4]}}",
                          eight),
                  {"4 unused bytes after the last tensor 'a' [0, 4] (the data "
                   "section is 8 bytes)"});
  expectOpenError(s, "data but no tensors", rawFile("{}", eight),
                  {"data section of 8 bytes but no tensors"});

  // __metadata__.
  expectOpenError(s, "metadata not an object", rawFile("{\"__metadata__\":[]}"),
                  {"\"__metadata__\" is an array, expected an object"});
  expectOpenError(s, "metadata value not a string",
                  rawFile("{\"__metadata__\":{\"step\":5}}"),
                  {"\"__metadata__\" value of 'step' is an integer, expected a "
                   "string"});
  expectOpenError(s, "two metadata entries",
                  rawFile("{\"__metadata__\":{},\"__metadata__\":{}}"),
                  {"header has two \"__metadata__\" entries"});
  expectOpenError(s, "metadata duplicate key",
                  rawFile("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}"),
                  {"\"__metadata__\" has the key 'a' twice"});

  // Names are printed safely, on one line.
  expectOpenError(s, "name with control characters",
                  rawFile("{\"a\\nb'\\u00e9\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[0,4]}}",
                          eight),
                  {"tensor 'a\\x0ab\\'\\xc3\\xa9': byte size mismatch"});

  // Not a file.
  {
    std::unique_ptr<SafeTensorsFile> f;
    std::string missing = s.path("does_not_exist.safetensors");
    Status st = SafeTensorsFile::open(missing, f);
    check(messageMatches(st, missing + ": cannot open: ", {"No such file"}),
          "rejects a missing file", statusText(st));
    st = SafeTensorsFile::open(s.dir.string(), f);
    check(messageMatches(st, s.dir.string() + ": is a directory", {}),
          "rejects a directory", statusText(st));
    std::string fifo = s.path("fifo.safetensors");
    ::unlink(fifo.c_str());
    if (::mkfifo(fifo.c_str(), 0600) == 0) {
      st = SafeTensorsFile::open(fifo, f);
      check(messageMatches(st, fifo + ": not a regular file", {}),
            "rejects a FIFO without blocking", statusText(st));
    }
    st = SafeTensorsFile::parse(nullptr, 0, "nothing", f);
    check(messageMatches(st, "nothing: file of 0 bytes", {}),
          "parse() of no bytes", statusText(st));
  }
}

//===----------------------------------------------------------------------===//
// Sharded checkpoints
//===----------------------------------------------------------------------===//

/// A fresh directory under the scratch directory.
fs::path freshDir(const Scratch &s, const std::string &name) {
  fs::path d = s.dir / name;
  std::error_code ec;
  fs::remove_all(d, ec);
  fs::create_directories(d, ec);
  return d;
}

std::string
weightMap(const std::vector<std::pair<std::string, std::string>> &entries,
          const std::string &extra = "") {
  std::string j =
      "{\"metadata\":{\"total_size\":64}" + extra + ",\"weight_map\":{";
  for (size_t i = 0; i < entries.size(); ++i)
    j += (i ? "," : "") + jsonQuote(entries[i].first) + ":" +
         jsonQuote(entries[i].second);
  return j + "}}";
}

/// Writes the two shards used by the index tests into `d`.
void writeShards(const fs::path &d, const std::string &extraTensorInA = "") {
  std::vector<Spec> a = {{"embed", "F32", {2, 2}, pattern(16, 1)},
                         {"layer0.w", "BF16", {4}, pattern(8, 2)}};
  if (!extraTensorInA.empty())
    a.push_back({extraTensorInA, "U8", {8}, pattern(8, 4)});
  writeFile((d / "model-00001-of-00002.safetensors").string(), buildFile(a));
  writeFile((d / "model-00002-of-00002.safetensors").string(),
            buildFile({{"layer1.w", "F16", {4}, pattern(8, 3)},
                       {"lm_head", "F32", {2}, pattern(8, 5)}}));
  writeFile((d / "bad.safetensors").string(), "bad");
}

const char *kShardA = "model-00001-of-00002.safetensors";
const char *kShardB = "model-00002-of-00002.safetensors";

void expectIndexError(const Scratch &s, const std::string &name,
                      const std::string &indexJson,
                      std::initializer_list<std::string> parts,
                      const std::string &extraTensorInA = "") {
  fs::path d = freshDir(s, "index_err_" + std::to_string(numChecks));
  writeShards(d, extraTensorInA);
  std::string path = (d / "model.safetensors.index.json").string();
  writeFile(path, indexJson);
  std::unique_ptr<SafeTensorsIndex> index;
  Status st = SafeTensorsIndex::open(path, index);
  std::string wanted;
  for (const std::string &p : parts)
    wanted += " '" + p + "'";
  check(!index && messageMatches(st, path + ": ", parts),
        "index rejects " + name, statusText(st) + " (wanted" + wanted + ")");
}

void testIndex(const Scratch &s) {
  const std::vector<std::pair<std::string, std::string>> good = {
      {"embed", kShardA},
      {"layer0.w", kShardA},
      {"layer1.w", kShardB},
      {"lm_head", kShardB}};
  {
    fs::path d = freshDir(s, "sharded");
    writeShards(d);
    std::string path = (d / "model.safetensors.index.json").string();
    writeFile(path, weightMap(good));
    std::unique_ptr<SafeTensorsIndex> index;
    Status st = SafeTensorsIndex::open(path, index);
    bool ok = st.ok && index->isSharded() && index->shards().size() == 2 &&
              index->size() == 4 && index->path() == path &&
              index->names() == std::vector<std::string>{"embed", "layer0.w",
                                                         "layer1.w", "lm_head"};
    if (ok) {
      const SafeTensorsFile *file = nullptr;
      const TensorInfo *t = index->find("layer1.w", &file);
      ok = t && file == index->shards()[1].get() &&
           t->dtype == SafeTensorsDType::F16 && bytesEqual(t, pattern(8, 3)) &&
           fs::path(file->path()).filename() == kShardB &&
           index->find("embed", &file) && file == index->shards()[0].get() &&
           bytesEqual(index->find("embed"), pattern(16, 1)) &&
           !index->find("nope") &&
           index->metadata().get("total_size")->asInt() == 64;
    }
    check(ok, "sharded index: open and resolve across shards", statusText(st));
    if (index) {
      const TensorInfo *t = nullptr;
      st = index->lookup("nope", t);
      check(messageMatches(st, path + ": no tensor named 'nope'", {}) && !t,
            "lookup of an absent tensor names the index and the tensor",
            statusText(st));
      st = index->lookup("lm_head", t);
      check(st.ok && t && bytesEqual(t, pattern(8, 5)), "lookup()");
    }
    // The directory helper finds the index.
    std::unique_ptr<SafeTensorsIndex> viaDir;
    st = openSafeTensorsCheckpoint(d.string(), viaDir);
    check(st.ok && viaDir->isSharded() && viaDir->size() == 4,
          "openSafeTensorsCheckpoint(directory with an index)", statusText(st));
    std::unique_ptr<SafeTensorsIndex> viaJson;
    st = openSafeTensorsCheckpoint(path, viaJson);
    check(st.ok && viaJson->isSharded(),
          "openSafeTensorsCheckpoint(index file)", statusText(st));
    std::unique_ptr<SafeTensorsIndex> viaShard;
    st = openSafeTensorsCheckpoint((d / kShardB).string(), viaShard);
    check(st.ok && !viaShard->isSharded() && viaShard->size() == 2 &&
              viaShard->names() ==
                  std::vector<std::string>{"layer1.w", "lm_head"} &&
              viaShard->metadata().isNull(),
          "openSafeTensorsCheckpoint(safetensors file)", statusText(st));
    // Both model.safetensors and an index: the single file wins.
    writeFile((d / "model.safetensors").string(),
              buildFile({{"only", "I32", {1}, pattern(4, 7)}}));
    st = openSafeTensorsCheckpoint(d.string(), viaDir);
    check(st.ok && !viaDir->isSharded() && viaDir->find("only"),
          "openSafeTensorsCheckpoint prefers model.safetensors",
          statusText(st));
  }
  {
    // Shards in a subdirectory, and "./" spellings of the same shard.
    fs::path d = freshDir(s, "subdir");
    fs::create_directories(d / "shards");
    writeShards(d / "shards");
    std::string path = (d / "index.json").string();
    writeFile(path,
              weightMap({{"embed", std::string("shards/") + kShardA},
                         {"layer0.w", std::string("./shards/") + kShardA},
                         {"layer1.w", std::string("shards/") + kShardB},
                         {"lm_head", std::string("shards//") + kShardB}}));
    std::unique_ptr<SafeTensorsIndex> index;
    Status st = SafeTensorsIndex::open(path, index);
    check(st.ok && index->shards().size() == 2,
          "index with shards in a subdirectory, spellings normalized",
          statusText(st));
  }
  {
    fs::path d = freshDir(s, "empty_dir");
    std::unique_ptr<SafeTensorsIndex> index;
    Status st = openSafeTensorsCheckpoint(d.string(), index);
    check(messageMatches(st, d.string() + ": directory holds neither", {}),
          "openSafeTensorsCheckpoint(empty directory)", statusText(st));
    st = openSafeTensorsCheckpoint((d / "nothing").string(), index);
    check(messageMatches(st, (d / "nothing").string() + ": cannot open", {}),
          "openSafeTensorsCheckpoint(missing path)", statusText(st));
  }

  // Errors.
  expectIndexError(
      s, "a tensor mapped to a missing shard",
      weightMap({{"embed", kShardA},
                 {"layer0.w", kShardA},
                 {"layer1.w", "model-00003-of-00002.safetensors"}}),
      {"tensor 'layer1.w' is mapped to the shard "
       "'model-00003-of-00002.safetensors', which does not exist"});
  expectIndexError(
      s, "a name absent from its shard",
      weightMap(
          {{"embed", kShardA}, {"layer0.w", kShardA}, {"layer1.w", kShardA}}),
      {"tensor 'layer1.w' is not in its shard "
       "'model-00001-of-00002.safetensors'"});
  expectIndexError(s, "the same tensor in two shards",
                   weightMap({{"embed", kShardA},
                              {"layer0.w", kShardA},
                              {"layer1.w", kShardB},
                              {"lm_head", kShardB}}),
                   {"tensor 'lm_head' is in two shards, "
                    "'model-00002-of-00002.safetensors' (per the "
                    "\"weight_map\") and 'model-00001-of-00002.safetensors'"},
                   "lm_head");
  expectIndexError(
      s, "a tensor mapped to two shards",
      weightMap(
          {{"embed", kShardA}, {"layer0.w", kShardA}, {"embed", kShardB}}),
      {"tensor 'embed' is mapped to two shards, "
       "'model-00001-of-00002.safetensors' and "
       "'model-00002-of-00002.safetensors'"});
  expectIndexError(
      s, "a tensor listed twice",
      weightMap(
          {{"embed", kShardA}, {"layer0.w", kShardA}, {"embed", kShardA}}),
      {"tensor 'embed' appears twice in the \"weight_map\""});
  expectIndexError(
      s, "a shard tensor missing from the weight_map",
      weightMap(
          {{"embed", kShardA}, {"layer1.w", kShardB}, {"lm_head", kShardB}}),
      {"tensor 'layer0.w' of shard "
       "'model-00001-of-00002.safetensors' is not in the "
       "\"weight_map\""});
  expectIndexError(s, "an invalid shard",
                   weightMap({{"embed", kShardA}, {"x", "bad.safetensors"}}),
                   {"shard 'bad.safetensors' of tensor 'x' is invalid: ",
                    "bad.safetensors: file of 3 bytes is shorter"});
  expectIndexError(s, "an absolute shard path",
                   weightMap({{"embed", "/etc/passwd"}}),
                   {"tensor 'embed' is mapped to '/etc/passwd', not a relative "
                    "path inside the index's directory"});
  expectIndexError(s, "a shard path with ..",
                   weightMap({{"embed", std::string("../") + kShardA}}),
                   {"not a relative path"});
  expectIndexError(s, "an empty shard name", weightMap({{"embed", ""}}),
                   {"tensor 'embed' is mapped to '', not a relative path"});
  expectIndexError(s, "a non-string weight_map value",
                   "{\"weight_map\":{\"embed\":1}}",
                   {"\"weight_map\" value of tensor 'embed' is an integer, "
                    "expected a shard file name"});
  expectIndexError(s, "a missing weight_map", "{\"metadata\":{}}",
                   {"missing \"weight_map\""});
  expectIndexError(s, "a weight_map that is not an object",
                   "{\"weight_map\":[]}",
                   {"\"weight_map\" is an array, expected an object"});
  expectIndexError(s, "metadata that is not an object",
                   "{\"metadata\":3,\"weight_map\":{}}",
                   {"\"metadata\" is an integer, expected an object"});
  expectIndexError(s, "an index that is not an object", "[]",
                   {"index is an array, expected a JSON object"});
  expectIndexError(s, "an index that is not JSON", "{\"weight_map\":{,}}",
                   {"invalid JSON at byte 15: "});
  expectIndexError(s, "an index with two weight_maps",
                   "{\"weight_map\":{},\"weight_map\":{}}",
                   {"index has the member \"weight_map\" twice"});
}

int runAll(const std::string &scratch) {
  std::error_code ec;
  fs::create_directories(scratch, ec);
  Scratch s{fs::path(scratch)};
  testJson(s.dir);
  testRoundTrips(s);
  testErrors(s);
  testIndex(s);
  if (numFailed == 0)
    std::printf("moe-safetensors-unittests: all %d checks passed\n", numChecks);
  else
    std::printf("moe-safetensors-unittests: %d of %d checks FAILED\n",
                numFailed, numChecks);
  return numFailed ? 1 : 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc == 3 && std::strcmp(argv[1], "--dump") == 0)
    return dump(argv[2]);
  if (argc == 2 && argv[1][0] != '-')
    return runAll(argv[1]);
  std::fprintf(stderr, "usage: %s SCRATCH_DIR | --dump PATH\n", argv[0]);
  return 2;
}
