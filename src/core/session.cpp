#include "core/session.hpp"

#include <algorithm>
#include <cstddef>
#include <vector>

namespace serialserver::detail {

void Session::log_task(const TaskRecord& record) const {
  const std::string client = to_string();
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(record.duration).count();
  const std::string_view outcome = task_outcome_name(record.outcome);
  if (record.outcome == TaskOutcome::error) {
    snapshot_.logger->event(LogLevel::debug, "task",
                            {{"client", client},
                             {"id", id()},
                             {"code", record.code},
                             {"name", record.name},
                             {"outcome", outcome},
                             {"error_code", record.error_code},
                             {"duration_us", micros},
                             {"bytes_in", record.bytes_read},
                             {"bytes_out", record.bytes_written}});
  } else {
    snapshot_.logger->event(LogLevel::debug, "task",
                            {{"client", client},
                             {"id", id()},
                             {"code", record.code},
                             {"name", record.name},
                             {"outcome", outcome},
                             {"duration_us", micros},
                             {"bytes_in", record.bytes_read},
                             {"bytes_out", record.bytes_written}});
  }
}

std::size_t Session::encode_some(wire::BlockEncoder& encoder,
                                 std::span<const std::uint8_t> content) {
  if (!output_fits(kMinEncodeRoom)) {
    return 0;
  }
  auto space = out_.writable();
  // Content whose encoding surely fits: whole blocks of 256 encoded bytes per 255.
  const std::size_t fits = (space.size() / (kMaxBlockSize + 1) - 1) * kMaxBlockSize;
  const std::size_t n = std::min(content.size(), fits);
  out_.commit(encoder.write(content.first(n), space));
  add_task_bytes_written(n);
  return n;
}
bool Session::finish_encoding(wire::BlockEncoder& encoder) {
  if (!output_fits(kMaxBlockSize + 2)) {
    return false;
  }
  out_.commit(encoder.finish(out_.writable()));
  return true;
}

bool Session::refused(const RegisteredTask& entry, TaskEnd& end) {
  if (!has_interceptors_) {
    return false;
  }
  const Admission admission = admit(end.record.code, entry);
  switch (admission.verdict()) {
    case Admission::Verdict::run:
      return false;
    case Admission::Verdict::error:
      end.error_code = admission.error_code();
      return true;
    case Admission::Verdict::drop:
      end.refused = true;
      end.failure = "refused by an interceptor";
      return true;
  }
  return false;
}

Admission Session::admit(TaskCode code, const RegisteredTask& entry) {
  const TaskCall call{*this, code, entry.name, session_};
  for (const auto& interceptor : server().options().interceptors) {
    try {
      const Admission admission = interceptor->before_task(call);
      if (admission.verdict() != Admission::Verdict::run) {
        return admission;
      }
    } catch (const std::exception& e) {
      snapshot_.logger->error("{}: an interceptor failed before task {} ({}): {}", to_string(),
                              code, entry.name, e.what());
      return Admission::drop();
    } catch (...) {
      snapshot_.logger->error("{}: an interceptor failed before task {} ({})", to_string(), code,
                              entry.name);
      return Admission::drop();
    }
  }
  return Admission::run();
}

Response Session::call_inline_guarded(const RegisteredTask& entry, TaskEnd& end,
                                      std::span<const std::uint8_t> content) {
  if (refused(entry, end)) {
    return {};
  }
  if (!server().try_take_task_slot()) {
    end.error_code = kBusyErrorCode;
    return {};
  }
  Response response = call_inline(entry, end, content);
  server().give_back_task_slot();
  return response;
}

void Session::call_after_task(const TaskRecord& record) const noexcept {
  for (const auto& interceptor : server().options().interceptors) {
    interceptor->after_task(*this, record);
  }
}

std::string Session::close_detail(std::error_code reason) const {
  if (reason == Errc::graceful_disconnect && disconnect_requested_) {
    return "the server disconnected gracefully";
  }
  return reason.message();
}

Response Session::describe_listing() const {
  std::vector<std::uint8_t> listing{1};
  for (std::size_t code = 0; code < table_->entries.size(); ++code) {
    const auto& entry = table_->entries[code];
    if (!entry || is_reserved_task_code(static_cast<TaskCode>(code))) {
      continue;
    }
    const std::size_t length = std::min<std::size_t>(entry->name.size(), 255);
    listing.push_back(static_cast<std::uint8_t>(code));
    listing.push_back(static_cast<std::uint8_t>(length));
    listing.insert(listing.end(), entry->name.begin(),
                   entry->name.begin() + static_cast<std::ptrdiff_t>(length));
  }
  return {std::move(listing)};
}

void Session::adopt_task_table() {
  // The old table (freed after the swap, outside the lock) holds the name that a reader of
  // Client::metadata() may be copying: end_task does not take the lock, so this does.
  const auto version = server().task_table_version();
  auto table = server().task_table();
  {
    const auto lock = lock_task_metadata();
    table_.swap(table);
  }
  table_version_ = version;
}

void Session::note_task_exception(TaskEnd& end) {
  try {
    throw;
  } catch (const TaskError& e) {
    end.error_code = e.code();
  } catch (const std::exception& e) {
    end.failure = e.what();
  } catch (...) {
    end.failure = "unknown exception";
  }
}

std::span<const std::uint8_t> Session::join_blocks(std::span<const std::uint8_t> blocks) {
  // Grows to the longest message seen (at most the input buffer); zero-filled only then.
  static thread_local std::vector<std::uint8_t> joined;
  if (joined.size() < blocks.size()) {
    joined.resize(blocks.size());
  }
  wire::BlockDecoder decoder;
  const auto decoded = decoder.decode(blocks, joined);
  return {joined.data(), decoded.produced};
}

}  // namespace serialserver::detail
