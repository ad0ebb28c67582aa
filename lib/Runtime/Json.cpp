//===- Json.cpp - A small, strict JSON parser -----------------------------===//
//
// Plain C++17, no exceptions, no MLIR/LLVM. See Json.h.
//
// A recursive-descent parser over a byte range. Recursion is bounded by
// JsonParseOptions::maxDepth; nothing is allocated that the input does not
// contain (sizes come from what was actually parsed, never from the input's
// claims).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Json.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sys/stat.h>
#include <system_error>
#include <utility>

namespace moe_rt {

//===----------------------------------------------------------------------===//
// JsonValue
//===----------------------------------------------------------------------===//

JsonValue JsonValue::boolean(bool value) {
  JsonValue v;
  v.kind_ = Kind::Bool;
  v.bool_ = value;
  return v;
}

JsonValue JsonValue::integer(int64_t value) {
  JsonValue v;
  v.kind_ = Kind::Int;
  v.int_ = value;
  return v;
}

JsonValue JsonValue::number(double value) {
  JsonValue v;
  v.kind_ = Kind::Double;
  v.double_ = value;
  return v;
}

JsonValue JsonValue::string(std::string value) {
  JsonValue v;
  v.kind_ = Kind::String;
  v.string_ = std::move(value);
  return v;
}

JsonValue JsonValue::array() {
  JsonValue v;
  v.kind_ = Kind::Array;
  return v;
}

JsonValue JsonValue::object() {
  JsonValue v;
  v.kind_ = Kind::Object;
  return v;
}

double JsonValue::asDouble() const {
  if (isDouble())
    return double_;
  if (isInt())
    return static_cast<double>(int_);
  return 0;
}

const std::string &JsonValue::asString() const {
  static const std::string empty;
  return isString() ? string_ : empty;
}

const std::vector<JsonValue> &JsonValue::items() const {
  static const std::vector<JsonValue> empty;
  return isArray() ? items_ : empty;
}

const std::vector<JsonMember> &JsonValue::members() const {
  static const std::vector<JsonMember> empty;
  return isObject() ? members_ : empty;
}

size_t JsonValue::size() const {
  if (isArray())
    return items_.size();
  if (isObject())
    return members_.size();
  return 0;
}

const JsonValue *JsonValue::at(size_t i) const {
  if (!isArray() || i >= items_.size())
    return nullptr;
  return &items_[i];
}

const JsonValue *JsonValue::get(const std::string &key) const {
  if (!isObject())
    return nullptr;
  for (size_t i = members_.size(); i-- > 0;)
    if (members_[i].key == key)
      return &members_[i].value;
  return nullptr;
}

void JsonValue::push(JsonValue value) {
  if (isArray())
    items_.push_back(std::move(value));
}

void JsonValue::set(std::string key, JsonValue value) {
  if (!isObject())
    return;
  JsonMember m;
  m.key = std::move(key);
  m.value = std::move(value);
  members_.push_back(std::move(m));
}

bool JsonValue::operator==(const JsonValue &other) const {
  if (kind_ != other.kind_)
    return false;
  switch (kind_) {
  case Kind::Null:
    return true;
  case Kind::Bool:
    return bool_ == other.bool_;
  case Kind::Int:
    return int_ == other.int_;
  case Kind::Double:
    return double_ == other.double_ ||
           (std::isnan(double_) && std::isnan(other.double_));
  case Kind::String:
    return string_ == other.string_;
  case Kind::Array:
    return items_ == other.items_;
  case Kind::Object:
    return members_ == other.members_;
  }
  return false;
}

const char *jsonKindName(JsonValue::Kind kind) {
  switch (kind) {
  case JsonValue::Kind::Null:
    return "null";
  case JsonValue::Kind::Bool:
    return "bool";
  case JsonValue::Kind::Int:
    return "integer";
  case JsonValue::Kind::Double:
    return "number";
  case JsonValue::Kind::String:
    return "string";
  case JsonValue::Kind::Array:
    return "array";
  case JsonValue::Kind::Object:
    return "object";
  }
  return "?";
}

//===----------------------------------------------------------------------===//
// Parser
//===----------------------------------------------------------------------===//

class JsonParser {
public:
  JsonParser(const char *text, size_t size, const JsonParseOptions &options)
      : text(reinterpret_cast<const unsigned char *>(text)), size(size),
        options(options) {}

  bool parse(JsonValue &out) {
    if (size > options.maxSize)
      return fail(options.maxSize, "input of " + std::to_string(size) +
                                       " bytes exceeds the limit of " +
                                       std::to_string(options.maxSize) +
                                       " bytes");
    skipSpace();
    if (!parseValue(out, 0))
      return false;
    skipSpace();
    if (pos != size)
      return fail(pos, "unexpected " + describe(pos) + " after the value");
    return true;
  }

  const std::string &problem() const { return error; }
  size_t problemOffset() const { return errorAt; }

private:
  const unsigned char *text;
  size_t size;
  const JsonParseOptions &options;
  size_t pos = 0;
  std::string error;
  size_t errorAt = 0;

  bool fail(size_t at, std::string message) {
    errorAt = at;
    error = std::move(message);
    return false;
  }

  /// "'x'", "byte 0xNN" or "end of input" for the byte at `at`.
  std::string describe(size_t at) const {
    if (at >= size)
      return "end of input";
    unsigned char c = text[at];
    if (c >= 0x20 && c < 0x7f) {
      std::string s = "'";
      s += static_cast<char>(c);
      return s + "'";
    }
    char buf[16];
    std::snprintf(buf, sizeof(buf), "byte 0x%02x", c);
    return buf;
  }

  void skipSpace() {
    while (pos < size && (text[pos] == ' ' || text[pos] == '\t' ||
                          text[pos] == '\n' || text[pos] == '\r'))
      ++pos;
  }

  bool parseValue(JsonValue &out, size_t depth) {
    if (pos >= size)
      return fail(pos, "unexpected end of input, expected a value");
    size_t start = pos;
    bool ok;
    switch (text[pos]) {
    case '{':
      ok = parseObject(out, depth + 1);
      break;
    case '[':
      ok = parseArray(out, depth + 1);
      break;
    case '"':
      out.kind_ = JsonValue::Kind::String;
      ok = parseString(out.string_);
      break;
    case 't':
      ok = parseLiteral("true", out);
      break;
    case 'f':
      ok = parseLiteral("false", out);
      break;
    case 'n':
      ok = parseLiteral("null", out);
      break;
    default:
      if (text[pos] == '-' || (text[pos] >= '0' && text[pos] <= '9')) {
        ok = parseNumber(out);
        break;
      }
      return fail(pos, "unexpected " + describe(pos) + ", expected a value");
    }
    out.offset_ = start;
    return ok;
  }

  bool parseLiteral(const char *word, JsonValue &out) {
    size_t len = std::strlen(word);
    if (size - pos < len || std::memcmp(text + pos, word, len) != 0)
      return fail(pos,
                  "invalid literal (expected '" + std::string(word) + "')");
    pos += len;
    if (word[0] == 'n') {
      out.kind_ = JsonValue::Kind::Null;
    } else {
      out.kind_ = JsonValue::Kind::Bool;
      out.bool_ = word[0] == 't';
    }
    return true;
  }

  bool enterContainer(size_t depth) {
    if (depth > options.maxDepth)
      return fail(pos, "nesting deeper than " +
                           std::to_string(options.maxDepth) + " levels");
    return true;
  }

  bool parseArray(JsonValue &out, size_t depth) {
    if (!enterContainer(depth))
      return false;
    out.kind_ = JsonValue::Kind::Array;
    ++pos; // '['
    skipSpace();
    if (pos < size && text[pos] == ']') {
      ++pos;
      return true;
    }
    while (true) {
      skipSpace();
      if (pos < size && text[pos] == ']')
        return fail(pos, "trailing comma before ']'");
      out.items_.emplace_back();
      if (!parseValue(out.items_.back(), depth))
        return false;
      skipSpace();
      if (pos < size && text[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < size && text[pos] == ']') {
        ++pos;
        return true;
      }
      return fail(pos, "unexpected " + describe(pos) +
                           ", expected ',' or ']' in an array");
    }
  }

  bool parseObject(JsonValue &out, size_t depth) {
    if (!enterContainer(depth))
      return false;
    out.kind_ = JsonValue::Kind::Object;
    ++pos; // '{'
    skipSpace();
    if (pos < size && text[pos] == '}') {
      ++pos;
      return true;
    }
    while (true) {
      skipSpace();
      if (pos < size && text[pos] == '}')
        return fail(pos, "trailing comma before '}'");
      if (pos >= size || text[pos] != '"')
        return fail(pos, "unexpected " + describe(pos) +
                             ", expected a string key in an object");
      out.members_.emplace_back();
      JsonMember &m = out.members_.back();
      m.keyOffset = pos;
      if (!parseString(m.key))
        return false;
      skipSpace();
      if (pos >= size || text[pos] != ':')
        return fail(pos, "unexpected " + describe(pos) +
                             ", expected ':' after an object key");
      ++pos;
      skipSpace();
      if (!parseValue(m.value, depth))
        return false;
      skipSpace();
      if (pos < size && text[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < size && text[pos] == '}') {
        ++pos;
        break;
      }
      return fail(pos, "unexpected " + describe(pos) +
                           ", expected ',' or '}' in an object");
    }
    return options.allowDuplicateKeys || checkDuplicateKeys(out.members_);
  }

  /// Fails on the first (in document order) key that repeats an earlier one.
  bool checkDuplicateKeys(const std::vector<JsonMember> &members) {
    size_t n = members.size();
    if (n < 2)
      return true;
    size_t first = 0, dup = n; // indices of the earliest repeat found
    if (n <= 16) {
      for (size_t j = 1; j < n && dup == n; ++j)
        for (size_t i = 0; i < j; ++i)
          if (members[i].key == members[j].key) {
            first = i;
            dup = j;
            break;
          }
    } else {
      std::vector<size_t> order(n);
      for (size_t i = 0; i < n; ++i)
        order[i] = i;
      // By key, then by position (std::stable_sort would do, but its
      // libstdc++ implementation trips a deprecation warning under clang).
      std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        int c = members[a].key.compare(members[b].key);
        return c != 0 ? c < 0 : a < b;
      });
      for (size_t i = 1; i < n; ++i) {
        size_t a = order[i - 1], b = order[i];
        if (members[a].key == members[b].key && b < dup) {
          // The first of a run of equal keys is the earliest in the
          // document.
          size_t runStart = i - 1;
          while (runStart > 0 &&
                 members[order[runStart - 1]].key == members[b].key)
            --runStart;
          first = order[runStart];
          dup = b;
        }
      }
    }
    if (dup == n)
      return true;
    return fail(members[dup].keyOffset,
                "duplicate key " + jsonQuote(members[dup].key) +
                    " (first at byte " +
                    std::to_string(members[first].keyOffset) + ")");
  }

  static int hexValue(unsigned char c) {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  }

  /// Reads the 4 hex digits of a \u escape starting at `at` (just past the
  /// 'u').
  bool readHex4(size_t at, uint32_t &value) {
    if (size - at < 4)
      return fail(at, "truncated \\u escape");
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) {
      int h = hexValue(text[at + i]);
      if (h < 0)
        return fail(at + i, "invalid hex digit " + describe(at + i) +
                                " in a \\u escape");
      v = v * 16 + static_cast<uint32_t>(h);
    }
    value = v;
    return true;
  }

  static void appendUtf8(std::string &out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  /// Validates the UTF-8 sequence starting at `pos` (a byte >= 0x80) and
  /// appends it to `out`.
  bool copyUtf8(std::string &out) {
    unsigned char c = text[pos];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; // range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0)
        lo = 0xa0; // no overlong forms
      else if (c == 0xed)
        hi = 0x9f; // no UTF-16 surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0)
        lo = 0x90; // no overlong forms
      else if (c == 0xf4)
        hi = 0x8f; // nothing above U+10FFFF
    } else {
      return fail(pos, "invalid UTF-8 " + describe(pos) + " in a string");
    }
    if (size - pos < len)
      return fail(pos, "truncated UTF-8 sequence in a string");
    for (size_t i = 1; i < len; ++i) {
      unsigned char d = text[pos + i];
      unsigned char min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xbf;
      if (d < min || d > max)
        return fail(pos, "invalid UTF-8 sequence in a string");
    }
    out.append(reinterpret_cast<const char *>(text + pos), len);
    pos += len;
    return true;
  }

  bool parseString(std::string &out) {
    size_t start = pos;
    ++pos; // '"'
    while (true) {
      // Copy the run of plain ASCII characters at once.
      size_t run = pos;
      while (run < size && text[run] >= 0x20 && text[run] < 0x80 &&
             text[run] != '"' && text[run] != '\\')
        ++run;
      out.append(reinterpret_cast<const char *>(text + pos), run - pos);
      pos = run;
      if (pos >= size)
        return fail(start, "unterminated string");
      unsigned char c = text[pos];
      if (c == '"') {
        ++pos;
        return true;
      }
      if (c < 0x20)
        return fail(pos, "unescaped control character " + describe(pos) +
                             " in a string");
      if (c >= 0x80) {
        if (!copyUtf8(out))
          return false;
        continue;
      }
      // c == '\\'
      if (pos + 1 >= size)
        return fail(start, "unterminated string");
      unsigned char e = text[pos + 1];
      switch (e) {
      case '"':
      case '\\':
      case '/':
        out += static_cast<char>(e);
        pos += 2;
        continue;
      case 'b':
        out += '\b';
        pos += 2;
        continue;
      case 'f':
        out += '\f';
        pos += 2;
        continue;
      case 'n':
        out += '\n';
        pos += 2;
        continue;
      case 'r':
        out += '\r';
        pos += 2;
        continue;
      case 't':
        out += '\t';
        pos += 2;
        continue;
      case 'u':
        break;
      default:
        return fail(pos, "invalid escape '\\" +
                             (e >= 0x20 && e < 0x7f
                                  ? std::string(1, static_cast<char>(e))
                                  : describe(pos + 1)) +
                             "' in a string");
      }
      size_t escape = pos;
      uint32_t cp;
      if (!readHex4(pos + 2, cp))
        return false;
      pos += 6;
      if (cp >= 0xdc00 && cp <= 0xdfff)
        return fail(escape, "lone low surrogate in a \\u escape");
      if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t low;
        if (size - pos < 2 || text[pos] != '\\' || text[pos + 1] != 'u')
          return fail(escape, "high surrogate in a \\u escape not followed "
                              "by a low surrogate escape");
        if (!readHex4(pos + 2, low))
          return false;
        if (low < 0xdc00 || low > 0xdfff)
          return fail(escape, "high surrogate in a \\u escape not followed "
                              "by a low surrogate escape");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
        pos += 6;
      }
      appendUtf8(out, cp);
    }
  }

  static bool isDigit(unsigned char c) { return c >= '0' && c <= '9'; }

  bool parseNumber(JsonValue &out) {
    size_t start = pos;
    bool negative = false;
    if (text[pos] == '-') {
      negative = true;
      ++pos;
    }
    if (pos >= size || !isDigit(text[pos]))
      return fail(pos, "unexpected " + describe(pos) +
                           ", expected a digit in a number");
    size_t intStart = pos;
    if (text[pos] == '0') {
      ++pos;
      if (pos < size && isDigit(text[pos]))
        return fail(intStart, "leading zero in a number");
    } else {
      while (pos < size && isDigit(text[pos]))
        ++pos;
    }
    size_t intEnd = pos;
    size_t fracStart = pos, fracEnd = pos;
    bool integral = true;
    if (pos < size && text[pos] == '.') {
      integral = false;
      ++pos;
      fracStart = pos;
      if (pos >= size || !isDigit(text[pos]))
        return fail(pos, "unexpected " + describe(pos) +
                             ", expected a digit after '.' in a number");
      while (pos < size && isDigit(text[pos]))
        ++pos;
      fracEnd = pos;
    }
    int64_t exponent = 0; // saturated; used only to classify range errors
    if (pos < size && (text[pos] == 'e' || text[pos] == 'E')) {
      integral = false;
      ++pos;
      bool expNegative = false;
      if (pos < size && (text[pos] == '+' || text[pos] == '-')) {
        expNegative = text[pos] == '-';
        ++pos;
      }
      if (pos >= size || !isDigit(text[pos]))
        return fail(pos, "unexpected " + describe(pos) +
                             ", expected a digit in an exponent");
      while (pos < size && isDigit(text[pos])) {
        if (exponent < 1000000000)
          exponent = exponent * 10 + (text[pos] - '0');
        ++pos;
      }
      if (expNegative)
        exponent = -exponent;
    }

    const char *first = reinterpret_cast<const char *>(text + start);
    const char *last = reinterpret_cast<const char *>(text + pos);
    if (integral) {
      int64_t v = 0;
      auto r = std::from_chars(first, last, v);
      if (r.ec == std::errc() && r.ptr == last) {
        out.kind_ = JsonValue::Kind::Int;
        out.int_ = v;
        return true;
      }
      // Beyond int64_t: a Double below.
    }
    double d = 0;
    auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc() && r.ptr == last) {
      out.kind_ = JsonValue::Kind::Double;
      out.double_ = d;
      return true;
    }
    if (r.ec != std::errc::result_out_of_range)
      return fail(start, "invalid number");
    // Out of range: overflow when the value is at least 1 in magnitude,
    // underflow (a signed zero) otherwise. The decimal exponent of the first
    // nonzero digit tells which.
    int64_t magnitude = 0;
    bool found = false;
    for (size_t i = intStart; i < intEnd && !found; ++i)
      if (text[i] != '0') {
        magnitude = static_cast<int64_t>(intEnd - i) - 1;
        found = true;
      }
    for (size_t i = fracStart; i < fracEnd && !found; ++i)
      if (text[i] != '0') {
        magnitude = -static_cast<int64_t>(i - fracStart) - 1;
        found = true;
      }
    if (found && magnitude + exponent >= 0)
      return fail(start, "number out of range");
    out.kind_ = JsonValue::Kind::Double;
    out.double_ = negative ? -0.0 : 0.0;
    return true;
  }
};

Status parseJson(const char *text, size_t size, JsonValue &out,
                 const JsonParseOptions &options, size_t *errorOffset) {
  JsonParser parser(text, size, options);
  JsonValue value;
  if (!parser.parse(value)) {
    if (errorOffset)
      *errorOffset = parser.problemOffset();
    return Status::error("at byte " + std::to_string(parser.problemOffset()) +
                         ": " + parser.problem());
  }
  out = std::move(value);
  return Status::success();
}

Status parseJson(const std::string &text, JsonValue &out,
                 const JsonParseOptions &options, size_t *errorOffset) {
  return parseJson(text.data(), text.size(), out, options, errorOffset);
}

Status readJsonFile(const std::string &path, JsonValue &out,
                    const JsonParseOptions &options) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return Status::error(path + ": cannot open: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return Status::error(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > options.maxSize)
    return Status::error(path + ": file of " + std::to_string(st.st_size) +
                         " bytes exceeds the JSON limit of " +
                         std::to_string(options.maxSize) + " bytes");
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    return Status::error(path + ": cannot open: " + std::strerror(errno));
  std::string text;
  char buf[65536];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof(buf), f)) > 0) {
    text.append(buf, got);
    if (text.size() > options.maxSize)
      break; // grew since stat(); parseJson reports the size
  }
  bool readError = std::ferror(f) != 0;
  std::fclose(f);
  if (readError)
    return Status::error(path + ": read error");
  Status st2 = parseJson(text, out, options);
  if (!st2)
    return Status::error(path + ": invalid JSON " + st2.message);
  return Status::success();
}

//===----------------------------------------------------------------------===//
// Serialization
//===----------------------------------------------------------------------===//

std::string jsonQuote(const std::string &text) {
  static const char hex[] = "0123456789abcdef";
  std::string s = "\"";
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
    case '"':
      s += "\\\"";
      break;
    case '\\':
      s += "\\\\";
      break;
    case '\b':
      s += "\\b";
      break;
    case '\f':
      s += "\\f";
      break;
    case '\n':
      s += "\\n";
      break;
    case '\r':
      s += "\\r";
      break;
    case '\t':
      s += "\\t";
      break;
    default:
      if (c < 0x20) {
        s += "\\u00";
        s += hex[c >> 4];
        s += hex[c & 15];
      } else {
        s += ch;
      }
    }
  }
  return s + "\"";
}

namespace {

void serializeTo(const JsonValue &v, std::string &out) {
  switch (v.kind()) {
  case JsonValue::Kind::Null:
    out += "null";
    return;
  case JsonValue::Kind::Bool:
    out += v.asBool() ? "true" : "false";
    return;
  case JsonValue::Kind::Int: {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof(buf), v.asInt());
    out.append(buf, r.ptr);
    return;
  }
  case JsonValue::Kind::Double: {
    double d = v.asDouble();
    if (!std::isfinite(d)) {
      out += "null";
      return;
    }
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof(buf), d);
    std::string s(buf, r.ptr);
    // Keep it a Double when read back.
    if (s.find_first_of(".e") == std::string::npos)
      s += ".0";
    out += s;
    return;
  }
  case JsonValue::Kind::String:
    out += jsonQuote(v.asString());
    return;
  case JsonValue::Kind::Array: {
    out += '[';
    bool first = true;
    for (const JsonValue &item : v.items()) {
      if (!first)
        out += ',';
      first = false;
      serializeTo(item, out);
    }
    out += ']';
    return;
  }
  case JsonValue::Kind::Object: {
    out += '{';
    bool first = true;
    for (const JsonMember &m : v.members()) {
      if (!first)
        out += ',';
      first = false;
      out += jsonQuote(m.key);
      out += ':';
      serializeTo(m.value, out);
    }
    out += '}';
    return;
  }
  }
}

} // namespace

std::string serializeJson(const JsonValue &value) {
  std::string out;
  serializeTo(value, out);
  return out;
}

} // namespace moe_rt
