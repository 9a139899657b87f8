# Standalone Asio (Debian: libasio-dev) is header-only and ships no CMake config: find its header
# and make an imported target for it.
# Asio 1.22 enables co_await under clang only for the Coroutines TS (__cpp_coroutines), which
# clang 14 does not define in C++20 mode although it implements C++20 coroutines
# (__cpp_impl_coroutine) and libstdc++'s <coroutine> works with it: say so explicitly.
find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
if(NOT TARGET serialserver_asio)
  add_library(serialserver_asio INTERFACE IMPORTED)
  set_target_properties(serialserver_asio PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${ASIO_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS
      "ASIO_STANDALONE;ASIO_NO_DEPRECATED;$<$<CXX_COMPILER_ID:Clang>:ASIO_HAS_CO_AWAIT=1>")
endif()
