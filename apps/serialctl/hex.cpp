#include "hex.hpp"

#include <string_view>

namespace serialctl {

std::vector<std::uint8_t> parse_hex(const std::string& text) {
  std::vector<std::uint8_t> out;
  int high = -1;
  std::string_view rest(text);
  if (rest.starts_with("0x") || rest.starts_with("0X")) {
    rest.remove_prefix(2);
  }
  for (char ch : rest) {
    int value = -1;
    if (ch >= '0' && ch <= '9') {
      value = ch - '0';
    } else if (ch >= 'a' && ch <= 'f') {
      value = ch - 'a' + 10;
    } else if (ch >= 'A' && ch <= 'F') {
      value = ch - 'A' + 10;
    } else if (ch == ' ' || ch == ':' || ch == '-' || ch == '\t' || ch == '\n') {
      if (high >= 0) {
        throw UsageError("--data: separators must fall between whole bytes");
      }
      continue;
    } else {
      throw UsageError(std::string("--data: not a hex digit: '") + ch + "'");
    }
    if (high < 0) {
      high = value;
    } else {
      out.push_back(static_cast<std::uint8_t>(high * 16 + value));
      high = -1;
    }
  }
  if (high >= 0) {
    throw UsageError("--data: odd number of hex digits");
  }
  return out;
}

void HexDumper::add(std::span<const std::uint8_t> data) {
  for (std::uint8_t b : data) {
    line_[fill_++] = b;
    if (fill_ == line_.size()) {
      emit();
    }
  }
}

void HexDumper::finish() {
  if (fill_ != 0) {
    emit();
  }
}

void HexDumper::emit() {
  std::fprintf(out_, "%08llx:", static_cast<unsigned long long>(offset_));
  for (std::size_t i = 0; i < line_.size(); ++i) {
    if (i % 2 == 0) {
      std::fputc(' ', out_);
    }
    if (i < fill_) {
      std::fprintf(out_, "%02x", line_[i]);
    } else {
      std::fputs("  ", out_);
    }
  }
  std::fputs("  ", out_);
  for (std::size_t i = 0; i < fill_; ++i) {
    std::fputc(line_[i] >= 0x20 && line_[i] < 0x7f ? line_[i] : '.', out_);
  }
  std::fputc('\n', out_);
  offset_ += fill_;
  fill_ = 0;
}

}  // namespace serialctl
