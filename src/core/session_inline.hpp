#pragma once

// Session's serving of a request that is all in the input buffer, without waiting: a code
// without a task function, or an inline task run in place. Included by session.hpp, so that the
// driver's read completion handler inlines these steps; not a header of its own.

#include "core/session.hpp"  // IWYU pragma: keep

namespace serialserver::detail {

inline bool Session::serve_whole_request(TaskCode code, const RegisteredTask* entry,
                                         std::size_t length) {
  begin_request();
  TaskEnd end = begin_task_record(code, entry);
  EndTaskOnExit end_task_on_exit{this};
  // Built in place (guaranteed copy elision): no move or second destructor per request.
  Response response =
      entry == nullptr ? answer_without_task(code, end) : run_inline(*entry, end, length);
  if (!end.failure && answer_now(end, response)) {
    return true;
  }
  end_task_on_exit.session = nullptr;  // the driver's finish_task ends it
  pending_ = std::make_unique<PendingAnswer>(PendingAnswer{std::move(end), std::move(response)});
  return false;
}

inline Response Session::answer_without_task(TaskCode code, TaskEnd& end) {
  drain_buffered();  // the whole message, within the limit
  return reserved_answer(code, end);
}

inline Response Session::run_inline(const RegisteredTask& entry, TaskEnd& end, std::size_t length) {
  const std::span<const std::uint8_t> content = message_content(in_.readable().first(length));
  request_bytes_ = content.size();
  request_ended_ = true;
  task_bytes_read_.store(request_bytes_, std::memory_order_relaxed);
  Response response = guarded_dispatch_ ? call_inline_guarded(entry, end, content)
                                        : call_inline(entry, end, content);
  in_.consume(length);  // after the call: `content` may view the input buffer
  settle(end, response);
  return response;
}

inline Response Session::call_inline(const RegisteredTask& entry, TaskEnd& end,
                                     std::span<const std::uint8_t> content) {
  RequestReader reader(source_);
  // Nothing can cancel the task during the call (the documented contract of an inline task),
  // so its stop token is one that never fires: no reference count to take and drop.
  TaskContext ctx(*this, reader, *snapshot_.logger, session_, end.record.code, std::stop_token());
  try {
    return entry.inline_function(ctx, content);
  } catch (...) {
    note_task_exception(end);
  }
  return {};
}

inline std::span<const std::uint8_t> Session::message_content(
    std::span<const std::uint8_t> blocks) {
  const std::size_t first = blocks[0];
  if (first == 0 || blocks.size() == first + 2) {
    return blocks.subspan(first == 0 ? 0 : 1, first);
  }
  return join_blocks(blocks);
}

}  // namespace serialserver::detail
