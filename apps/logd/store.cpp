#include "store.hpp"

#include <serialserver/binary_reader.hpp>
#include <serialserver/error.hpp>
#include "sqlite_util.hpp"
#include "store_schema.hpp"

#include <utility>

#include <sqlite3.h>

namespace logd {

using namespace sql;  // NOLINT(google-build-using-namespace): this file is all SQLite

namespace {

constexpr const char* kRecordColumns = "m.id, m.time, m.level, m.text, m.fields";

/// Reads the record in the current row (columns as kRecordColumns).
Record row_to_record(sqlite3_stmt* s) {
  Record r;
  r.id = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
  r.time_ns = sqlite3_column_int64(s, 1);
  r.level = static_cast<std::uint8_t>(sqlite3_column_int(s, 2));
  const auto* text = sqlite3_column_text(s, 3);
  r.text.assign(reinterpret_cast<const char*>(text),
                static_cast<std::size_t>(sqlite3_column_bytes(s, 3)));
  const auto* blob = static_cast<const std::uint8_t*>(sqlite3_column_blob(s, 4));
  const auto blob_size = static_cast<std::size_t>(sqlite3_column_bytes(s, 4));
  if (blob != nullptr && blob_size > 0) {
    // Stored as the protocol's fields encoding, always big-endian.
    serialserver::BinaryReader reader({blob, blob_size}, serialserver::ByteOrder::big_endian);
    try {
      r.fields = decode_fields(reader);
    } catch (const std::exception& e) {
      throw StorageError("message " + std::to_string(r.id) + " has corrupt fields: " + e.what());
    }
  }
  return r;
}

/// Steps `s` to the end, collecting records.
std::vector<Record> collect(sqlite3* db, sqlite3_stmt* s) {
  std::vector<Record> out;
  for (;;) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      out.push_back(row_to_record(s));
    } else if (rc == SQLITE_DONE) {
      break;
    } else {
      sqlite3_reset(s);
      fail(db, "step");
    }
  }
  sqlite3_reset(s);
  return out;
}

}  // namespace

// ---- ReadCursor ---------------------------------------------------------------------------------

ReadCursor::ReadCursor(Store& store, std::unique_ptr<ReaderConnection> connection)
    : store_(store), connection_(std::move(connection)), statement_(connection_->read) {}

ReadCursor::~ReadCursor() {
  sqlite3_reset(statement_);
  sqlite3_clear_bindings(statement_);
  store_.release_reader(std::move(connection_));
}

bool ReadCursor::next(Record& out) {
  const int rc = sqlite3_step(statement_);
  if (rc == SQLITE_ROW) {
    out = row_to_record(statement_);
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  fail(connection_->db, "read step");
}

// ---- ListCursor ---------------------------------------------------------------------------------

ListCursor::ListCursor(Store& store, std::unique_ptr<ReaderConnection> connection)
    : store_(store), connection_(std::move(connection)) {}

ListCursor::~ListCursor() {
  sqlite3_reset(connection_->list);
  sqlite3_reset(connection_->count_logs);
  sqlite3_exec(connection_->db, "COMMIT", nullptr, nullptr, nullptr);  // ends the snapshot
  store_.release_reader(std::move(connection_));
}

bool ListCursor::next(LogInfo& out) {
  sqlite3_stmt* s = connection_->list;
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) {
    return false;
  }
  if (rc != SQLITE_ROW) {
    fail(connection_->db, "list");
  }
  out.name.assign(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)),
                  static_cast<std::size_t>(sqlite3_column_bytes(s, 0)));
  out.count = static_cast<std::uint64_t>(sqlite3_column_int64(s, 1));
  out.last_id = static_cast<std::uint64_t>(sqlite3_column_int64(s, 2));
  return true;
}

// ---- Store --------------------------------------------------------------------------------------

Store::Store(StoreOptions options)
    : options_(std::move(options)),
      writer_(open_db(options_.path, options_.uri, true)),
      readers_([this] { return open_reader(); }, options_.max_readers,
               options_.reader_idle_timeout) {
  try {
    const char* file = sqlite3_db_filename(writer_, "main");
    lock_.emplace(file != nullptr ? file : "");
    exec("PRAGMA journal_mode=WAL");
    exec(synchronous_pragma(options_.synchronous_full));
    // The journal of a request's savepoint, when a group is written again after a failure, in
    // memory rather than in a temporary file: it holds at most the pages one request changes.
    exec("PRAGMA temp_store=MEMORY");
    exec(schema::kTables);
    add_bytes_column();
    // An id is never given twice. SQLite gives the largest id + 1, which is an id given before
    // once the newest messages are deleted (a tail that saw it would miss the new message); the
    // writer then moves the message to next_id_. logs.last_id keeps each log's largest id
    // through deletes.
    next_id_ = select_int(writer_,
                          "SELECT max((SELECT coalesce(max(last_id), 0) FROM logs), "
                          "(SELECT coalesce(max(id), 0) FROM messages))") +
               1;
    insert_messages_.emplace(writer_);
    checkpointer_.emplace(writer_, options_.path, options_.uri, options_.synchronous_full);
    move_message_ = prepare(writer_, "UPDATE messages SET id = ?2 WHERE id = ?1");
    insert_log_ = prepare(writer_, "INSERT OR IGNORE INTO logs(name) VALUES(?1)");
    select_log_ = prepare(writer_, "SELECT id FROM logs WHERE name = ?1");
    update_log_ = prepare(
        writer_,
        "UPDATE logs SET count = count + ?2, last_id = max(last_id, ?3), bytes = bytes + ?4 "
        "WHERE id = ?1");
    // Check that WAL mode took (it does not on some file systems).
    sqlite3_stmt* mode = prepare(writer_, "PRAGMA journal_mode");
    std::string journal;
    if (sqlite3_step(mode) == SQLITE_ROW) {
      journal = reinterpret_cast<const char*>(sqlite3_column_text(mode, 0));
    }
    sqlite3_finalize(mode);
    if (journal != "wal") {
      throw StorageError("cannot use WAL mode on " + options_.path + " (journal mode " + journal +
                         ")");
    }
  } catch (...) {
    finalize_writer_statements();
    sqlite3_close_v2(writer_);
    throw;
  }
  writer_thread_ = std::thread([this] { writer_loop(); });
}

Store::~Store() {
  close();
  finalize_writer_statements();
  readers_.clear();
  sqlite3_close_v2(maintenance_);
  sqlite3_close_v2(writer_);
}

void Store::refuse_appends() {
  {
    std::lock_guard lock(queue_mutex_);
    closing_ = true;
  }
  queue_cv_.notify_all();
}

void Store::close() {
  refuse_appends();
  if (writer_thread_.joinable()) {
    writer_thread_.join();
  }
}

void Store::finalize_writer_statements() noexcept {
  insert_messages_.reset();
  for (sqlite3_stmt* s : {move_message_, insert_log_, select_log_, update_log_}) {
    sqlite3_finalize(s);  // a no-op on a statement never prepared (nullptr)
  }
}

void Store::exec(const char* sql) { exec_on(writer_, sql); }

void Store::add_bytes_column() {
  // A database made before logs.bytes existed gets the column, counted once from its messages.
  const auto has_bytes = [this] {
    return select_int(writer_, "SELECT 1 FROM pragma_table_info('logs') WHERE name = 'bytes'") == 1;
  };
  if (has_bytes()) {
    return;
  }
  exec("BEGIN IMMEDIATE");
  try {
    if (!has_bytes()) {  // another process may have added it meanwhile
      exec("ALTER TABLE logs ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0");
      exec((std::string("UPDATE logs SET bytes = (SELECT coalesce(sum(") + schema::kMessageBytes +
            "), 0) FROM messages WHERE log_id = logs.id)")
               .c_str());
    }
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(writer_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::size_t Store::cached_names() const { return cached_names_.load(std::memory_order_relaxed); }

std::unique_ptr<ReaderConnection> Store::open_reader() {
  auto c = std::make_unique<ReaderConnection>();
  c->db = open_db(options_.path, options_.uri, false);
  exec_on(c->db, "PRAGMA query_only=1");
  const std::string from = std::string(" FROM messages m JOIN logs l ON l.id = m.log_id ");
  c->read = prepare(c->db, std::string("SELECT ") + kRecordColumns + from +
                               "WHERE l.name = ?1 AND m.time BETWEEN ?2 AND ?3 "
                               "AND m.level BETWEEN ?4 AND ?5 ORDER BY m.time, m.id LIMIT ?6");
  c->tail_after = prepare(c->db, std::string("SELECT ") + kRecordColumns + from +
                                     "WHERE l.name = ?1 AND m.id > ?2 ORDER BY m.id LIMIT ?3");
  c->tail_last = prepare(c->db, std::string("SELECT * FROM (SELECT ") + kRecordColumns + from +
                                    "WHERE l.name = ?1 ORDER BY m.id DESC LIMIT ?2) ORDER BY 1");
  c->list = prepare(c->db, "SELECT name, count, last_id FROM logs ORDER BY name");
  c->count_logs = prepare(c->db, "SELECT count(*) FROM logs");
  return c;
}

std::unique_ptr<ReaderConnection> Store::acquire_reader() {
  auto c = readers_.acquire();
  if (!c) {
    throw StoreBusy();
  }
  return c;
}

void Store::release_reader(std::unique_ptr<ReaderConnection> connection) noexcept {
  readers_.release(std::move(connection));
}

/// A reader connection taken from the pool for one scope, given back when the scope ends,
/// however it ends.
class Store::ReaderLease {
 public:
  explicit ReaderLease(Store& store) : store_(store), connection_(store.acquire_reader()) {}
  ~ReaderLease() { store_.release_reader(std::move(connection_)); }
  ReaderLease(const ReaderLease&) = delete;
  ReaderLease& operator=(const ReaderLease&) = delete;
  ReaderConnection* operator->() const noexcept { return connection_.get(); }

 private:
  Store& store_;
  std::unique_ptr<ReaderConnection> connection_;
};

std::unique_ptr<ReadCursor> Store::read(const ReadQuery& q) {
  auto c = acquire_reader();
  sqlite3* db = c->db;
  sqlite3_stmt* s = c->read;
  std::unique_ptr<ReadCursor> cursor(new ReadCursor(*this, std::move(c)));
  bind_text_copy(db, s, 1, q.log);
  bind_i64(db, s, 2, q.since_ns);
  bind_i64(db, s, 3, q.until_ns);
  bind_i64(db, s, 4, q.min_level);
  bind_i64(db, s, 5, q.max_level);
  bind_i64(db, s, 6, q.limit == 0 ? -1 : static_cast<std::int64_t>(q.limit));
  return cursor;
}

std::vector<Record> Store::tail(const TailQuery& q) {
  const ReaderLease c(*this);
  sqlite3_stmt* s = q.after_id == kTailLast ? c->tail_last : c->tail_after;
  ResetOnExit reset{s};
  bind_text(c->db, s, 1, q.log);
  if (q.after_id == kTailLast) {
    bind_i64(c->db, s, 2, q.limit);
  } else {
    bind_i64(c->db, s, 2, to_sql(q.after_id));
    bind_i64(c->db, s, 3, q.limit);
  }
  return collect(c->db, s);
}

std::optional<std::vector<Record>> Store::recent_tail(const TailQuery& q) {
  if (q.after_id == kTailLast) {
    return std::nullopt;
  }
  return recent_.after(q.log, q.after_id, q.limit);
}

std::unique_ptr<ListCursor> Store::list() {
  auto c = acquire_reader();
  sqlite3* db = c->db;
  sqlite3_stmt* count = c->count_logs;
  std::unique_ptr<ListCursor> cursor(new ListCursor(*this, std::move(c)));
  // One read transaction for the count and the rows, so that they agree.
  exec_on(db, "BEGIN");
  if (sqlite3_step(count) != SQLITE_ROW) {
    fail(db, "count logs");
  }
  cursor->count_ = static_cast<std::uint64_t>(sqlite3_column_int64(count, 0));
  sqlite3_reset(count);
  return cursor;
}

}  // namespace logd
