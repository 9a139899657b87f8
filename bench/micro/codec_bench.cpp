// Micro-benchmarks of the block framing and of the typed content readers and writers.
// Bytes/s counts message content (not framing), so encode and decode figures compare directly.

#include <serialserver/binary_reader.hpp>
#include <serialserver/binary_writer.hpp>
#include <serialserver/wire/block_decoder.hpp>
#include <serialserver/wire/block_encoder.hpp>

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace {

using serialserver::BinaryReader;
using serialserver::BinaryWriter;
using serialserver::wire::BlockDecoder;
using serialserver::wire::BlockEncoder;

std::vector<std::uint8_t> random_content(std::size_t n) {
  std::vector<std::uint8_t> content(n);
  std::mt19937 rng(1);
  for (auto& b : content) {
    b = static_cast<std::uint8_t>(rng());
  }
  return content;
}

std::vector<std::uint8_t> encoded(const std::vector<std::uint8_t>& content) {
  std::vector<std::uint8_t> wire(serialserver::wire::encoded_size(content.size()));
  serialserver::wire::encode_message(content, wire);
  return wire;
}

// Runs `body` once untimed, then once per iteration. The untimed pass faults in and warms the
// buffers: on this project's VMs the first pass over freshly allocated 64 MiB buffers runs several
// times slower, and with a short --benchmark_min_time it would be the only pass measured. A server
// reuses its buffers, so the warm figure is the representative one.
template <typename Body>
void run_warm(benchmark::State& state, Body body) {
  body();
  for (auto _ : state) {
    body();
  }
}

void set_bytes(benchmark::State& state, std::size_t per_iteration) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(per_iteration));
}

void apply_sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {std::int64_t{0}, std::int64_t{64}, std::int64_t{4} << 10,
                         std::int64_t{1} << 20, std::int64_t{64} << 20}) {
    b->Arg(n);
  }
}

void BM_EncodeMessage(benchmark::State& state) {
  const auto content = random_content(static_cast<std::size_t>(state.range(0)));
  std::vector<std::uint8_t> wire(serialserver::wire::encoded_size(content.size()));
  run_warm(state, [&] {
    benchmark::DoNotOptimize(serialserver::wire::encode_message(content, wire));
    benchmark::ClobberMemory();
  });
  set_bytes(state, content.size());
}
BENCHMARK(BM_EncodeMessage)->Apply(apply_sizes);

// The streaming encoder, fed in 16 KiB pieces as a response writer would.
void BM_BlockEncoderStream(benchmark::State& state) {
  const auto content = random_content(static_cast<std::size_t>(state.range(0)));
  std::vector<std::uint8_t> wire(serialserver::wire::encoded_size(content.size()) + 256);
  constexpr std::size_t kPiece = 16 << 10;
  run_warm(state, [&] {
    BlockEncoder encoder;
    std::size_t out = 0;
    for (std::size_t pos = 0; pos < content.size(); pos += kPiece) {
      const std::size_t n = std::min(kPiece, content.size() - pos);
      out += encoder.write(std::span(content).subspan(pos, n), std::span(wire).subspan(out));
    }
    out += encoder.finish(std::span(wire).subspan(out));
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  });
  set_bytes(state, content.size());
}
BENCHMARK(BM_BlockEncoderStream)->Apply(apply_sizes);

// Zero-copy decoding: next() hands out views of the input; the loop only touches the views'
// sizes, as a reader that hashes or forwards content would touch them itself.
void BM_DecodeNext(benchmark::State& state) {
  const auto wire = encoded(random_content(static_cast<std::size_t>(state.range(0))));
  const auto content_size = static_cast<std::size_t>(state.range(0));
  run_warm(state, [&] {
    BlockDecoder decoder;
    std::span<const std::uint8_t> input = wire;
    std::size_t total = 0;
    while (!decoder.finished()) {
      const auto chunk = decoder.next(input);
      total += chunk.content.size();
      input = input.subspan(chunk.consumed);
    }
    benchmark::DoNotOptimize(total);
  });
  set_bytes(state, content_size);
}
BENCHMARK(BM_DecodeNext)->Apply(apply_sizes);

// Copying decoding into one output buffer large enough for the whole content.
void BM_DecodeCopy(benchmark::State& state) {
  const auto wire = encoded(random_content(static_cast<std::size_t>(state.range(0))));
  std::vector<std::uint8_t> out(static_cast<std::size_t>(state.range(0)));
  run_warm(state, [&] {
    BlockDecoder decoder;
    const auto r = decoder.decode(wire, out);
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  });
  set_bytes(state, out.size());
}
BENCHMARK(BM_DecodeCopy)->Apply(apply_sizes);

// Copying decoding from socket-sized reads (64 KiB) into a 64 KiB output buffer.
void BM_DecodeCopyChunked(benchmark::State& state) {
  const auto wire = encoded(random_content(static_cast<std::size_t>(state.range(0))));
  const auto content_size = static_cast<std::size_t>(state.range(0));
  constexpr std::size_t kRead = 64 << 10;
  std::vector<std::uint8_t> out(kRead);
  run_warm(state, [&] {
    BlockDecoder decoder;
    std::size_t pos = 0;
    while (!decoder.finished()) {
      const std::size_t n = std::min(kRead, wire.size() - pos);
      auto input = std::span(wire).subspan(pos, n);
      while (!input.empty() && !decoder.finished()) {
        const auto r = decoder.decode(input, out);
        benchmark::DoNotOptimize(out.data());
        input = input.subspan(r.consumed);
        pos += r.consumed;
      }
    }
    benchmark::ClobberMemory();
  });
  set_bytes(state, content_size);
}
BENCHMARK(BM_DecodeCopyChunked)->Apply(apply_sizes);

void BM_FindMessageEnd(benchmark::State& state) {
  const auto wire = encoded(random_content(static_cast<std::size_t>(state.range(0))));
  run_warm(state, [&] { benchmark::DoNotOptimize(serialserver::wire::find_message_end(wire)); });
  set_bytes(state, static_cast<std::size_t>(state.range(0)));
}
BENCHMARK(BM_FindMessageEnd)->Apply(apply_sizes);

// ---- Typed content
// -------------------------------------------------------------------------------

constexpr std::size_t kValues = 1024;

void BM_WriterInts(benchmark::State& state) {
  const auto order = static_cast<serialserver::ByteOrder>(state.range(0));
  BinaryWriter writer(order);
  for (auto _ : state) {
    writer.clear();
    for (std::size_t i = 0; i < kValues; ++i) {
      writer.write_u32(static_cast<std::uint32_t>(i));
      writer.write_i64(-static_cast<std::int64_t>(i));
    }
    benchmark::DoNotOptimize(writer.data().data());
  }
  set_bytes(state, kValues * 12);
}
BENCHMARK(BM_WriterInts)->Arg(0)->Arg(1);

void BM_ReaderInts(benchmark::State& state) {
  const auto order = static_cast<serialserver::ByteOrder>(state.range(0));
  BinaryWriter writer(order);
  for (std::size_t i = 0; i < kValues; ++i) {
    writer.write_u32(static_cast<std::uint32_t>(i));
    writer.write_i64(-static_cast<std::int64_t>(i));
  }
  for (auto _ : state) {
    BinaryReader reader(writer.data(), order);
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < kValues; ++i) {
      sum += reader.read_u32();
      sum += static_cast<std::uint64_t>(reader.read_i64());
    }
    benchmark::DoNotOptimize(sum);
  }
  set_bytes(state, kValues * 12);
}
BENCHMARK(BM_ReaderInts)->Arg(0)->Arg(1);

void BM_WriterStrings(benchmark::State& state) {
  const std::string text(static_cast<std::size_t>(state.range(0)), 'x');
  BinaryWriter writer;
  for (auto _ : state) {
    writer.clear();
    for (std::size_t i = 0; i < 64; ++i) {
      writer.write_string(text);
    }
    benchmark::DoNotOptimize(writer.data().data());
  }
  set_bytes(state, 64 * (text.size() + 4));
}
BENCHMARK(BM_WriterStrings)->Arg(8)->Arg(256)->Arg(16 << 10);

void BM_ReaderStrings(benchmark::State& state) {
  const std::string text(static_cast<std::size_t>(state.range(0)), 'x');
  BinaryWriter writer;
  for (std::size_t i = 0; i < 64; ++i) {
    writer.write_string(text);
  }
  for (auto _ : state) {
    BinaryReader reader(writer.data());
    for (std::size_t i = 0; i < 64; ++i) {
      benchmark::DoNotOptimize(reader.read_string());
    }
  }
  set_bytes(state, 64 * (text.size() + 4));
}
BENCHMARK(BM_ReaderStrings)->Arg(8)->Arg(256)->Arg(16 << 10);

}  // namespace

BENCHMARK_MAIN();
