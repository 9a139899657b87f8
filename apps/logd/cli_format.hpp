#pragma once

// How serialserver-log prints records: a text line for people, a JSON line for programs.
//
// Text: "ID TIME LEVEL TEXT [KEY=VALUE]...", one record a line whatever the bytes stored, so
// that no client can forge lines or terminal escapes in another's output. In the text and in
// field keys and values, a backslash is written \\, newline \n, carriage return \r, tab \t, any
// other control character (C0, DEL, C1) \xNN (C1 as the two bytes of its UTF-8 encoding:
// \xc2\x9b), and a byte that is not part of valid UTF-8 \xNN. A field key or value that is
// empty or holds a space, a double quote or '=' is written in double quotes, with \" inside:
// user="john doe".
//
// JSON: one object a line, {"id", "time", "level", "log", "text", "fields"}, valid UTF-8 for
// any bytes stored. Text, keys and values that are not valid UTF-8 have each invalid sequence
// replaced by U+FFFD; such a record (and one with a repeated field key, which the "fields"
// object cannot hold twice) also carries "raw": {"log", "text", "fields": [[KEY, VALUE]...]}
// with the exact bytes in base64, so nothing stored is lost.

#include "logd_protocol.hpp"

#include <string>
#include <string_view>

namespace logd::cli {

/// The text line of a record, with its newline. Thread-safety: a pure function.
std::string format_text_line(const Record& record);

/// The JSON line of a record of log `log`, with its newline. Thread-safety: a pure function.
std::string format_json_line(std::string_view log, const Record& record);

/// `text` with the escapes of the text format (not quoted). Thread-safety: a pure function.
std::string escape_text(std::string_view text);

}  // namespace logd::cli
