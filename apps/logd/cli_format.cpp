#include "cli_format.hpp"

#include "cli_time.hpp"

#include <array>
#include <cstdint>
#include <set>

#include <nlohmann/json.hpp>

namespace logd::cli {

namespace {

/// The length of the well-formed UTF-8 sequence at the start of `text` (Unicode table 3-7:
/// no overlong forms, no surrogates, nothing above U+10FFFF), or 0 if there is none.
std::size_t utf8_sequence_length(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const auto continuation = [&](std::size_t i, unsigned char low = 0x80,
                                unsigned char high = 0xBF) {
    return i < text.size() && byte(i) >= low && byte(i) <= high;
  };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) {
    return 1;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    return continuation(1) ? 2 : 0;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    const unsigned char low = b0 == 0xE0 ? 0xA0 : 0x80;
    const unsigned char high = b0 == 0xED ? 0x9F : 0xBF;
    return continuation(1, low, high) && continuation(2) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    const unsigned char low = b0 == 0xF0 ? 0x90 : 0x80;
    const unsigned char high = b0 == 0xF4 ? 0x8F : 0xBF;
    return continuation(1, low, high) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

bool valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8_sequence_length(text.substr(i));
    if (n == 0) {
      return false;
    }
    i += n;
  }
  return true;
}

void append_hex_escape(std::string& out, unsigned char byte) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  out += "\\x";
  out += kHex[byte >> 4];
  out += kHex[byte & 0x0F];
}

/// Appends `text` escaped; with `quote`, a double quote is escaped too.
void append_escaped(std::string& out, std::string_view text, bool quote) {
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8_sequence_length(text.substr(i));
    const auto b0 = static_cast<unsigned char>(text[i]);
    if (n == 0) {
      append_hex_escape(out, b0);
      ++i;
      continue;
    }
    if (n == 2 && b0 == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0) {
      // A C1 control character (U+0080..U+009F): terminals obey some of them (U+009B is CSI).
      append_hex_escape(out, b0);
      append_hex_escape(out, static_cast<unsigned char>(text[i + 1]));
      i += 2;
      continue;
    }
    if (n > 1) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    }
    switch (b0) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '"':
        out += quote ? "\\\"" : "\"";
        break;
      default:
        if (b0 < 0x20 || b0 == 0x7F) {
          append_hex_escape(out, b0);
        } else {
          out += static_cast<char>(b0);
        }
    }
    ++i;
  }
}

/// A field key or value: escaped, and quoted if empty or holding a space, '"' or '='.
void append_field_part(std::string& out, std::string_view text) {
  const bool quote = text.empty() || text.find_first_of(" \"=") != std::string_view::npos;
  if (quote) {
    out += '"';
  }
  append_escaped(out, text, quote);
  if (quote) {
    out += '"';
  }
}

std::string base64(std::string_view bytes) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t v =
        (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16) |
        (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8) |
        static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 0x3F];
    out += kAlphabet[(v >> 12) & 0x3F];
    out += kAlphabet[(v >> 6) & 0x3F];
    out += kAlphabet[v & 0x3F];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    }
    out += kAlphabet[(v >> 18) & 0x3F];
    out += kAlphabet[(v >> 12) & 0x3F];
    out += rest == 2 ? kAlphabet[(v >> 6) & 0x3F] : '=';
    out += '=';
  }
  return out;
}

/// True if the plain JSON members cannot hold the record exactly.
bool needs_raw(std::string_view log, const Record& record) {
  if (!valid_utf8(log) || !valid_utf8(record.text)) {
    return true;
  }
  std::set<std::string_view> keys;
  for (const auto& field : record.fields) {
    if (!valid_utf8(field.key) || !valid_utf8(field.value) || !keys.insert(field.key).second) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string escape_text(std::string_view text) {
  std::string out;
  append_escaped(out, text, false);
  return out;
}

std::string format_text_line(const Record& record) {
  std::string line = std::to_string(record.id);
  line += ' ';
  line += format_time(record.time_ns);
  line += ' ';
  line += level_name(record.level);
  line += ' ';
  append_escaped(line, record.text, false);
  for (const auto& field : record.fields) {
    line += ' ';
    append_field_part(line, field.key);
    line += '=';
    append_field_part(line, field.value);
  }
  line += '\n';
  return line;
}

std::string format_json_line(std::string_view log, const Record& record) {
  nlohmann::ordered_json object;
  object["id"] = record.id;
  object["time"] = format_time(record.time_ns);
  object["level"] = level_name(record.level);
  object["log"] = log;
  object["text"] = record.text;
  auto fields = nlohmann::ordered_json::object();
  for (const auto& field : record.fields) {
    fields[field.key] = field.value;
  }
  object["fields"] = std::move(fields);
  if (needs_raw(log, record)) {
    auto raw_fields = nlohmann::ordered_json::array();
    for (const auto& field : record.fields) {
      raw_fields.push_back(nlohmann::ordered_json::array({base64(field.key), base64(field.value)}));
    }
    object["raw"] = {
        {"log", base64(log)}, {"text", base64(record.text)}, {"fields", std::move(raw_fields)}};
  }
  std::string line = object.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  line += '\n';
  return line;
}

}  // namespace logd::cli
