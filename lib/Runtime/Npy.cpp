//===- Npy.cpp - NumPy .npy reader and writer -----------------------------===//
//
// Plain C++17, no exceptions, no MLIR/LLVM. See Npy.h.
//
// The .npy format (numpy/lib/format.py): the magic "\x93NUMPY", a major and a
// minor version byte, the header length (uint16 little-endian for 1.0,
// uint32 for 2.0 and 3.0), then the header: the repr() of a Python dict
// {'descr': ..., 'fortran_order': ..., 'shape': (...), } padded with spaces
// and a final '\n' so that the data start at a multiple of 64 bytes, then the
// raw element data.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Npy.h"

#include "MessageText.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <system_error>
#include <utility>

namespace moe_rt {

//===----------------------------------------------------------------------===//
// DType, Array, Status
//===----------------------------------------------------------------------===//

size_t dtypeSize(DType dtype) {
  switch (dtype) {
  case DType::F32:
  case DType::I32:
    return 4;
  case DType::F16:
  case DType::BF16:
    return 2;
  case DType::I64:
    return 8;
  case DType::U8:
  case DType::Bool:
    return 1;
  }
  return 0;
}

const char *dtypeName(DType dtype) {
  switch (dtype) {
  case DType::F32:
    return "f32";
  case DType::F16:
    return "f16";
  case DType::BF16:
    return "bf16";
  case DType::I32:
    return "i32";
  case DType::I64:
    return "i64";
  case DType::U8:
    return "u8";
  case DType::Bool:
    return "bool";
  }
  return "?";
}

namespace {

/// The .npy descr written for (and, but for BF16, accepted as) each dtype.
const char *dtypeDescr(DType dtype) {
  switch (dtype) {
  case DType::F32:
    return "<f4";
  case DType::F16:
    return "<f2";
  case DType::BF16:
    return "<u2";
  case DType::I32:
    return "<i4";
  case DType::I64:
    return "<i8";
  case DType::U8:
    return "|u1";
  case DType::Bool:
    return "|b1";
  }
  return "";
}

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

/// Product of `shape` (1 for rank 0); false when a dimension is negative or
/// the product overflows.
bool checkedProduct(const std::vector<int64_t> &shape, int64_t &result) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      return false;
    if (d != 0 && n > kInt64Max / d)
      return false;
    n *= d;
  }
  result = n;
  return true;
}

/// Python's repr() of a shape tuple: "()", "(3,)", "(2, 3)".
std::string shapeRepr(const std::vector<int64_t> &shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1)
    s += ",";
  s += ")";
  return s;
}

/// Keeps messages on one line and readable (see MessageText.h).
std::string sanitize(const std::string &text, size_t maxLen = 80) {
  return printableText(text, maxLen, /*escapeQuotes=*/false);
}

} // namespace

int64_t Array::numElements() const {
  int64_t n = 0;
  return checkedProduct(shape, n) ? n : -1;
}

Status Status::error(std::string message) {
  Status s;
  s.ok = false;
  // One line, always.
  for (char &c : message)
    if (c == '\n' || c == '\r')
      c = ' ';
  s.message = std::move(message);
  return s;
}

//===----------------------------------------------------------------------===//
// Header parsing: a tiny parser for the Python literals a header may hold.
//===----------------------------------------------------------------------===//

namespace {

struct PyValue {
  enum Kind { Str, Bool, None, Int, Float, Tuple, List, Dict };
  Kind kind = None;
  std::string str;      // Str; the literal's text for Int and Float
  bool boolean = false; // Bool
  int64_t integer = 0;  // Int (valid unless intOverflow)
  bool intOverflow = false;
  std::vector<PyValue> items;                       // Tuple, List
  std::vector<std::pair<PyValue, PyValue>> entries; // Dict
};

class HeaderParser {
public:
  explicit HeaderParser(const std::string &input) : text(input) {}

  /// Parses the whole text as one literal (trailing whitespace allowed).
  bool parse(PyValue &out) {
    if (!parseValue(out, 0))
      return false;
    skipSpace();
    if (pos != text.size())
      return fail("unexpected text after the closing brace");
    return true;
  }

  const std::string &problem() const { return error; }

private:
  static constexpr int kMaxDepth = 32;

  const std::string &text;
  size_t pos = 0;
  std::string error;

  bool fail(const std::string &what) {
    if (error.empty())
      error = what + " at offset " + std::to_string(pos);
    return false;
  }

  bool atEnd() const { return pos >= text.size(); }
  char peek() const { return atEnd() ? '\0' : text[pos]; }

  void skipSpace() {
    while (!atEnd() && (text[pos] == ' ' || text[pos] == '\t' ||
                        text[pos] == '\n' || text[pos] == '\r'))
      ++pos;
  }

  static bool isDigit(char c) { return c >= '0' && c <= '9'; }
  static bool isIdentStart(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  }

  bool parseValue(PyValue &out, int depth) {
    if (depth > kMaxDepth)
      return fail("nesting too deep");
    skipSpace();
    if (atEnd())
      return fail("unexpected end of header");
    char c = peek();
    if (c == '\'' || c == '"')
      return parseString(out);
    if (c == '(' || c == '[')
      return parseSequence(out, depth);
    if (c == '{')
      return parseDict(out, depth);
    if (c == '-' || c == '+' || isDigit(c))
      return parseNumber(out);
    if (isIdentStart(c))
      return parseIdentifier(out);
    return fail(std::string("unexpected character '") +
                sanitize(std::string(1, c)) + "'");
  }

  bool parseString(PyValue &out) {
    char quote = text[pos++];
    std::string s;
    while (true) {
      if (atEnd())
        return fail("unterminated string");
      char c = text[pos++];
      if (c == quote)
        break;
      if (c == '\n')
        return fail("unterminated string");
      if (c == '\\') {
        if (atEnd())
          return fail("unterminated string");
        char e = text[pos++];
        switch (e) {
        case 'n':
          s += '\n';
          break;
        case 't':
          s += '\t';
          break;
        case 'r':
          s += '\r';
          break;
        case '0':
          s += '\0';
          break;
        default: // \\, \', \" and anything else: the character itself
          s += e;
          break;
        }
        continue;
      }
      s += c;
    }
    out = PyValue();
    out.kind = PyValue::Str;
    out.str = std::move(s);
    return true;
  }

  bool parseNumber(PyValue &out) {
    bool negative = false;
    if (peek() == '-' || peek() == '+') {
      negative = peek() == '-';
      ++pos;
      skipSpace();
    }
    if (!isDigit(peek()))
      return fail("malformed number");
    size_t start = pos;
    out = PyValue();
    out.kind = PyValue::Int;
    // Accumulate as a negative number so that INT64_MIN fits.
    const int64_t kMin = std::numeric_limits<int64_t>::min();
    int64_t acc = 0;
    bool overflow = false;
    while (isDigit(peek())) {
      int digit = text[pos++] - '0';
      if (acc < (kMin + digit) / 10)
        overflow = true;
      else
        acc = acc * 10 - digit;
    }
    if (peek() == '.' || peek() == 'e' || peek() == 'E' || peek() == 'j' ||
        peek() == 'J') {
      // A float or complex literal: consume it so that the caller can say
      // what the shape holds.
      while (isDigit(peek()) || peek() == '.' || peek() == 'e' ||
             peek() == 'E' || peek() == 'j' || peek() == 'J' ||
             ((peek() == '-' || peek() == '+') &&
              (text[pos - 1] == 'e' || text[pos - 1] == 'E')))
        ++pos;
      out.kind = PyValue::Float;
      out.str = text.substr(start, pos - start);
      return true;
    }
    // Python 2 wrote longs as "3L"; NumPy filters the L out of 1.0 and 2.0
    // headers, and so do we.
    if (peek() == 'L' || peek() == 'l')
      ++pos;
    if (isIdentStart(peek()))
      return fail("malformed number");
    if (!negative && acc == kMin)
      overflow = true;
    out.intOverflow = overflow;
    out.str = (negative ? "-" : "") + text.substr(start, pos - start);
    if (!overflow)
      out.integer = negative ? acc : -acc;
    return true;
  }

  bool parseIdentifier(PyValue &out) {
    size_t start = pos;
    while (isIdentStart(peek()) || isDigit(peek()))
      ++pos;
    std::string word = text.substr(start, pos - start);
    out = PyValue();
    if (word == "True" || word == "False") {
      out.kind = PyValue::Bool;
      out.boolean = word == "True";
      return true;
    }
    if (word == "None") {
      out.kind = PyValue::None;
      return true;
    }
    pos = start;
    return fail("unexpected name '" + sanitize(word, 32) + "'");
  }

  bool parseSequence(PyValue &out, int depth) {
    char open = text[pos++];
    char close = open == '(' ? ')' : ']';
    PyValue seq;
    seq.kind = open == '(' ? PyValue::Tuple : PyValue::List;
    bool sawComma = false;
    while (true) {
      skipSpace();
      if (atEnd())
        return fail(std::string("missing '") + close + "'");
      if (peek() == close) {
        ++pos;
        break;
      }
      PyValue item;
      if (!parseValue(item, depth + 1))
        return false;
      seq.items.push_back(std::move(item));
      skipSpace();
      if (peek() == ',') {
        ++pos;
        sawComma = true;
        continue;
      }
      if (peek() == close) {
        ++pos;
        break;
      }
      return fail(std::string("expected ',' or '") + close + "'");
    }
    // "(x)" is x in Python, not a tuple; "(x,)" and "()" are tuples.
    if (open == '(' && seq.items.size() == 1 && !sawComma) {
      out = std::move(seq.items[0]);
      return true;
    }
    out = std::move(seq);
    return true;
  }

  bool parseDict(PyValue &out, int depth) {
    ++pos; // '{'
    PyValue dict;
    dict.kind = PyValue::Dict;
    while (true) {
      skipSpace();
      if (atEnd())
        return fail("missing '}'");
      if (peek() == '}') {
        ++pos;
        break;
      }
      PyValue key, value;
      if (!parseValue(key, depth + 1))
        return false;
      skipSpace();
      if (peek() != ':')
        return fail("expected ':'");
      ++pos;
      if (!parseValue(value, depth + 1))
        return false;
      dict.entries.emplace_back(std::move(key), std::move(value));
      skipSpace();
      if (peek() == ',') {
        ++pos;
        continue;
      }
      if (peek() == '}') {
        ++pos;
        break;
      }
      return fail("expected ',' or '}'");
    }
    out = std::move(dict);
    return true;
  }
};

/// Short description of a literal for messages.
std::string describe(const PyValue &v) {
  switch (v.kind) {
  case PyValue::Str:
    return "'" + sanitize(v.str, 32) + "'";
  case PyValue::Bool:
    return v.boolean ? "True" : "False";
  case PyValue::None:
    return "None";
  case PyValue::Int:
    return v.intOverflow ? sanitize(v.str, 32) + " (out of range)"
                         : std::to_string(v.integer);
  case PyValue::Float:
    return sanitize(v.str, 32);
  case PyValue::Tuple:
    return "a tuple";
  case PyValue::List:
    return "a list";
  case PyValue::Dict:
    return "a dict";
  }
  return "?";
}

/// Maps a descr to a dtype; on failure sets `problem`.
bool descrToDType(const PyValue &descr, bool u16AsBF16, DType &dtype,
                  std::string &problem) {
  if (descr.kind != PyValue::Str) {
    problem = "unsupported dtype: descr is " + describe(descr) +
              " (structured dtypes are not supported)";
    return false;
  }
  const std::string &s = descr.str;
  std::string quoted = "'" + sanitize(s, 32) + "'";
  if (s.size() >= 2) {
    char order = s[0];
    std::string code = s.substr(1);
    struct Known {
      const char *code;
      DType dtype;
    };
    static const Known known[] = {
        {"f4", DType::F32},  {"f2", DType::F16}, {"i4", DType::I32},
        {"i8", DType::I64},  {"u1", DType::U8},  {"b1", DType::Bool},
        {"u2", DType::BF16},
    };
    for (const Known &k : known) {
      if (code != k.code)
        continue;
      if (k.dtype == DType::BF16 && !u16AsBF16)
        break; // '<u2' is bf16 only when the caller asks for it.
      bool oneByte = dtypeSize(k.dtype) == 1;
      if (oneByte
              ? (order == '|' || order == '<' || order == '>' || order == '=')
              : order == '<') {
        dtype = k.dtype;
        return true;
      }
      if (order == '>') {
        problem = "big-endian dtype " + quoted + " is not supported";
        return false;
      }
      break;
    }
  }
  problem = "unsupported dtype " + quoted +
            " (supported: '<f4', '<f2', '<i4', '<i8', '|u1', '|b1'" +
            (u16AsBF16 ? ", '<u2' as bf16)" : ")");
  return false;
}

/// RAII for std::FILE.
struct FileCloser {
  std::FILE *file = nullptr;
  explicit FileCloser(std::FILE *f) : file(f) {}
  ~FileCloser() {
    if (file)
      std::fclose(file);
  }
  FileCloser(const FileCloser &) = delete;
  FileCloser &operator=(const FileCloser &) = delete;
};

bool readExactly(std::FILE *f, void *buffer, size_t size) {
  return size == 0 || std::fread(buffer, 1, size, f) == size;
}

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

} // namespace

//===----------------------------------------------------------------------===//
// readNpy
//===----------------------------------------------------------------------===//

Status readNpy(const std::string &path, Array &out, bool u16AsBF16) {
  auto fail = [&](const std::string &problem) {
    return Status::error(path + ": " + problem);
  };

  std::error_code ec;
  std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) {
    if (!ec || ec == std::errc::no_such_file_or_directory)
      return fail("cannot open: no such file");
    return fail("cannot open: " + ec.message());
  }
  if (std::filesystem::is_directory(st))
    return fail("cannot open: is a directory");
  if (!std::filesystem::is_regular_file(st))
    return fail("cannot open: not a regular file");
  uintmax_t fileSize = std::filesystem::file_size(path, ec);
  if (ec)
    return fail("cannot open: " + ec.message());

  errno = 0;
  std::FILE *raw = std::fopen(path.c_str(), "rb");
  if (!raw)
    return fail(std::string("cannot open: ") +
                (errno ? std::strerror(errno) : "unknown error"));
  FileCloser file(raw);

  // Preamble: magic, version, header length.
  unsigned char preamble[12] = {};
  size_t preambleAvail = static_cast<size_t>(
      fileSize < sizeof(preamble) ? fileSize : sizeof(preamble));
  if (!readExactly(raw, preamble, preambleAvail))
    return fail("read error in the header");
  size_t magicAvail = preambleAvail < kMagicLen ? preambleAvail : kMagicLen;
  if (std::memcmp(preamble, kMagic, magicAvail) != 0)
    return fail("bad magic: not a .npy file");
  if (preambleAvail < 8)
    return fail("truncated header: file has only " + std::to_string(fileSize) +
                " bytes");
  unsigned major = preamble[6], minor = preamble[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    return fail("unsupported .npy format version " + std::to_string(major) +
                "." + std::to_string(minor));
  size_t lenBytes = major == 1 ? 2 : 4;
  size_t prefixLen = 8 + lenBytes;
  if (fileSize < prefixLen)
    return fail("truncated header: file has only " + std::to_string(fileSize) +
                " bytes");
  uint64_t headerLen = 0;
  for (size_t i = 0; i < lenBytes; ++i)
    headerLen |= static_cast<uint64_t>(preamble[8 + i]) << (8 * i);
  if (headerLen > fileSize - prefixLen)
    return fail("truncated header: header length " + std::to_string(headerLen) +
                " exceeds the " + std::to_string(fileSize - prefixLen) +
                " bytes after the preamble");

  // NumPy refuses headers over 10000 characters by default; allow more, but
  // keep the parser's memory small whatever the file holds.
  constexpr uint64_t kMaxHeaderLen = 1u << 20;
  if (headerLen > kMaxHeaderLen)
    return fail("header length " + std::to_string(headerLen) +
                " exceeds the limit of " + std::to_string(kMaxHeaderLen) +
                " bytes");

  // The header itself; its size is bounded by the file size.
  std::string header(static_cast<size_t>(headerLen), '\0');
  if (std::fseek(raw, static_cast<long>(prefixLen), SEEK_SET) != 0 ||
      !readExactly(raw, header.data(), header.size()))
    return fail("read error in the header");

  PyValue dict;
  HeaderParser parser(header);
  if (!parser.parse(dict))
    return fail("header is not a valid dict: " + parser.problem());
  if (dict.kind != PyValue::Dict)
    return fail("header is not a valid dict: it is " + describe(dict));

  const PyValue *descr = nullptr, *fortran = nullptr, *shapeValue = nullptr;
  for (const auto &entry : dict.entries) {
    if (entry.first.kind != PyValue::Str)
      return fail("header is not a valid dict: key " + describe(entry.first) +
                  " is not a string");
    const std::string &key = entry.first.str;
    const PyValue **slot = key == "descr"           ? &descr
                           : key == "fortran_order" ? &fortran
                           : key == "shape"         ? &shapeValue
                                                    : nullptr;
    if (!slot)
      return fail("header is not a valid dict: unexpected key '" +
                  sanitize(key, 32) + "'");
    if (*slot)
      return fail("header is not a valid dict: duplicate key '" + key + "'");
    *slot = &entry.second;
  }
  if (!descr || !fortran || !shapeValue)
    return fail(std::string("header is not a valid dict: missing key '") +
                (!descr     ? "descr"
                 : !fortran ? "fortran_order"
                            : "shape") +
                "'");

  DType dtype = DType::F32;
  std::string problem;
  if (!descrToDType(*descr, u16AsBF16, dtype, problem))
    return fail(problem);

  if (fortran->kind != PyValue::Bool)
    return fail("fortran_order is " + describe(*fortran) + ", not a bool");
  if (fortran->boolean)
    return fail("fortran_order True (column-major data) is not supported");

  if (shapeValue->kind != PyValue::Tuple)
    return fail("invalid shape: " + describe(*shapeValue) +
                " is not a tuple of integers");
  constexpr size_t kMaxRank = 64;
  if (shapeValue->items.size() > kMaxRank)
    return fail("invalid shape: rank " +
                std::to_string(shapeValue->items.size()) + " exceeds " +
                std::to_string(kMaxRank));
  std::vector<int64_t> shape;
  for (const PyValue &dim : shapeValue->items) {
    if (dim.kind != PyValue::Int || dim.intOverflow)
      return fail("invalid shape: dimension " + describe(dim) +
                  " is not an integer");
    if (dim.integer < 0)
      return fail("invalid shape: negative dimension " +
                  std::to_string(dim.integer));
    shape.push_back(dim.integer);
  }

  int64_t numElements = 0;
  uint64_t itemSize = dtypeSize(dtype);
  if (!checkedProduct(shape, numElements) ||
      static_cast<uint64_t>(numElements) >
          static_cast<uint64_t>(kInt64Max) / itemSize)
    return fail("invalid shape: " + shapeRepr(shape) + " of " +
                dtypeName(dtype) + " is too large (size overflows)");
  uint64_t expected = static_cast<uint64_t>(numElements) * itemSize;
  uint64_t dataOffset = prefixLen + headerLen;
  uint64_t actual = fileSize - dataOffset;
  if (expected != actual)
    return fail("data size mismatch: expected " + std::to_string(expected) +
                " bytes (shape " + shapeRepr(shape) + " of " +
                dtypeName(dtype) + "), actual " + std::to_string(actual) +
                " bytes");
  if (expected > std::numeric_limits<size_t>::max())
    return fail("data too large for this machine");

  // Only now, with the size checked against the file, allocate.
  std::vector<uint8_t> data(static_cast<size_t>(expected));
  if (!readExactly(raw, data.data(), data.size()))
    return fail("truncated data: the file changed while it was read");

  out.dtype = dtype;
  out.shape = std::move(shape);
  out.data = std::move(data);
  return Status::success();
}

//===----------------------------------------------------------------------===//
// writeNpy
//===----------------------------------------------------------------------===//

namespace {

/// Header bytes exactly as numpy.lib.format writes them (NumPy >= 1.24: keys
/// sorted, spare spaces after the dict so the first dimension can grow in
/// place, padding to 64 bytes, final '\n').
std::string makeHeader(const Array &array) {
  std::string dict =
      std::string("{'descr': '") + dtypeDescr(array.dtype) +
      "', 'fortran_order': False, 'shape': " + shapeRepr(array.shape) + ", }";
  constexpr size_t kGrowthAxisMaxDigits = 21;
  if (!array.shape.empty()) {
    size_t digits = std::to_string(array.shape[0]).size();
    if (digits < kGrowthAxisMaxDigits)
      dict.append(kGrowthAxisMaxDigits - digits, ' ');
  }
  constexpr size_t kAlign = 64;
  // Version 1.0 (2-byte length) unless the header does not fit, then 2.0.
  for (int major = 1; major <= 2; ++major) {
    size_t lenBytes = major == 1 ? 2 : 4;
    size_t hlen = dict.size() + 1; // + '\n'
    size_t padLen = kAlign - ((8 + lenBytes + hlen) % kAlign);
    size_t total = hlen + padLen;
    if (major == 1 && total > 0xffff)
      continue;
    std::string out(kMagic, kMagicLen);
    out += static_cast<char>(major);
    out += '\0';
    for (size_t i = 0; i < lenBytes; ++i)
      out += static_cast<char>((total >> (8 * i)) & 0xff);
    out += dict;
    out.append(padLen, ' ');
    out += '\n';
    return out;
  }
  return std::string(); // unreachable: rank is bounded by the caller
}

std::string randomSuffix() {
  static std::atomic<uint64_t> counter{0};
  uint64_t seed = static_cast<uint64_t>(
      std::chrono::steady_clock::now().time_since_epoch().count());
  std::random_device rd;
  seed ^= (static_cast<uint64_t>(rd()) << 32) ^ rd();
  seed ^= counter.fetch_add(1) * 0x9e3779b97f4a7c15ULL;
  std::mt19937_64 gen(seed);
  static const char hex[] = "0123456789abcdef";
  std::string s;
  uint64_t v = gen();
  for (int i = 0; i < 12; ++i, v >>= 4)
    s += hex[v & 15];
  return s;
}

} // namespace

Status writeNpy(const std::string &path, const Array &array) {
  auto fail = [&](const std::string &problem) {
    return Status::error(path + ": " + problem);
  };

  for (int64_t d : array.shape)
    if (d < 0)
      return fail("cannot write: negative dimension in shape " +
                  shapeRepr(array.shape));
  if (array.shape.size() > 64)
    return fail("cannot write: rank " + std::to_string(array.shape.size()) +
                " exceeds 64");
  int64_t numElements = array.numElements();
  uint64_t itemSize = dtypeSize(array.dtype);
  if (numElements < 0 || static_cast<uint64_t>(numElements) >
                             static_cast<uint64_t>(kInt64Max) / itemSize)
    return fail("cannot write: shape " + shapeRepr(array.shape) +
                " is too large");
  uint64_t expected = static_cast<uint64_t>(numElements) * itemSize;
  if (expected != array.data.size())
    return fail("cannot write: shape " + shapeRepr(array.shape) + " of " +
                dtypeName(array.dtype) + " needs " + std::to_string(expected) +
                " bytes of data, the array has " +
                std::to_string(array.data.size()));

  std::string header = makeHeader(array);

  // A fresh temporary file next to the target ("x": fail if it exists).
  std::string tmpPath;
  std::FILE *raw = nullptr;
  for (int attempt = 0; attempt < 16 && !raw; ++attempt) {
    tmpPath = path + ".tmp-" + randomSuffix();
    errno = 0;
    raw = std::fopen(tmpPath.c_str(), "wbx");
    if (!raw && errno != EEXIST)
      break;
  }
  if (!raw)
    return fail(std::string("cannot create temporary file: ") +
                (errno ? std::strerror(errno) : "unknown error"));

  bool ok = std::fwrite(header.data(), 1, header.size(), raw) == header.size();
  if (ok && !array.data.empty())
    ok = std::fwrite(array.data.data(), 1, array.data.size(), raw) ==
         array.data.size();
  int savedErrno = ok ? 0 : errno;
  if (ok && std::fflush(raw) != 0) {
    ok = false;
    savedErrno = errno;
  }
  if (std::fclose(raw) != 0 && ok) {
    ok = false;
    savedErrno = errno;
  }
  if (!ok) {
    std::remove(tmpPath.c_str());
    return fail(std::string("write error: ") +
                (savedErrno ? std::strerror(savedErrno) : "unknown error"));
  }
  errno = 0;
  if (std::rename(tmpPath.c_str(), path.c_str()) != 0) {
    savedErrno = errno;
    std::remove(tmpPath.c_str());
    return fail(std::string("cannot rename the temporary file into place: ") +
                (savedErrno ? std::strerror(savedErrno) : "unknown error"));
  }
  return Status::success();
}

//===----------------------------------------------------------------------===//
// bf16 / f16 conversions
//===----------------------------------------------------------------------===//

namespace {
uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
float bitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
} // namespace

float bf16ToFloat(uint16_t bits) {
  return bitsToFloat(static_cast<uint32_t>(bits) << 16);
}

uint16_t floatToBF16(float value) {
  uint32_t u = floatBits(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) // NaN: keep sign and top payload,
    return static_cast<uint16_t>((u >> 16) | 0x0040u); // force quiet.
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb; // round to nearest, ties to even; may carry to inf
  return static_cast<uint16_t>(u >> 16);
}

float f16ToFloat(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) // inf / NaN
    return bitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    if (mantissa == 0)
      return bitsToFloat(sign);
    // Subnormal: mantissa * 2^-24, normalise.
    int e = -1;
    do {
      ++e;
      mantissa <<= 1;
    } while ((mantissa & 0x400u) == 0);
    mantissa &= 0x3ffu;
    return bitsToFloat(sign | (static_cast<uint32_t>(127 - 15 - e) << 23) |
                       (mantissa << 13));
  }
  return bitsToFloat(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
}

uint16_t floatToF16(float value) {
  uint32_t u = floatBits(value);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t x = u & 0x7fffffffu;
  if (x >= 0x7f800000u) {
    if (x > 0x7f800000u) // NaN: quiet, keep the top 9 payload bits
      return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
    return static_cast<uint16_t>(sign | 0x7c00u); // inf
  }
  if (x >= 0x477ff000u) // >= 65520 (halfway from 65504 to 2^16): inf
    return static_cast<uint16_t>(sign | 0x7c00u);
  if (x >= 0x38800000u) { // >= 2^-14: normal half
    uint32_t odd = (x >> 13) & 1u;
    x += 0xc8000fffu + odd; // rebias exponent by -112, round to nearest even
    return static_cast<uint16_t>(sign | (x >> 13));
  }
  if (x <= 0x33000000u) // <= 2^-25 (half of the smallest subnormal): zero
    return sign;
  // Subnormal half: value = m * 2^(e - 150), in units of 2^-24 that is
  // m >> (126 - e), rounded to nearest even.
  uint32_t e = x >> 23;
  uint32_t m = (x & 0x7fffffu) | 0x800000u;
  uint32_t shift = 126 - e; // 14..24
  uint32_t q = m >> shift;
  uint32_t rem = m & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u)))
    ++q;
  return static_cast<uint16_t>(sign | q);
}

} // namespace moe_rt
