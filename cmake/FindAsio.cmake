# Standalone Asio (Debian: libasio-dev) is header-only and ships no CMake config: find its header
# and make an imported target for it. A find module, so that both this project and the installed
# package's config (which installs this file beside itself) can say find_package(Asio).
#
# Defines: Asio_FOUND, Asio_VERSION, ASIO_INCLUDE_DIR and the imported target serialserver_asio
# (the name the library's exported targets refer to).
find_path(ASIO_INCLUDE_DIR asio.hpp)
if(ASIO_INCLUDE_DIR AND EXISTS "${ASIO_INCLUDE_DIR}/asio/version.hpp")
  # "#define ASIO_VERSION 102201 // 1.22.1": major * 100000 + minor * 100 + patch.
  file(STRINGS "${ASIO_INCLUDE_DIR}/asio/version.hpp" _asio_version_line
       REGEX "^#define ASIO_VERSION [0-9]+")
  string(REGEX MATCH "[0-9]+" _asio_version "${_asio_version_line}")
  math(EXPR _asio_major "${_asio_version} / 100000")
  math(EXPR _asio_minor "${_asio_version} / 100 % 1000")
  math(EXPR _asio_patch "${_asio_version} % 100")
  set(Asio_VERSION "${_asio_major}.${_asio_minor}.${_asio_patch}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Asio REQUIRED_VARS ASIO_INCLUDE_DIR VERSION_VAR Asio_VERSION
                                  HANDLE_VERSION_RANGE)

# Asio 1.22 enables co_await under clang only for the Coroutines TS (__cpp_coroutines), which
# clang 14 does not define in C++20 mode although it implements C++20 coroutines
# (__cpp_impl_coroutine) and libstdc++'s <coroutine> works with it: say so explicitly.
if(Asio_FOUND AND NOT TARGET serialserver_asio)
  add_library(serialserver_asio INTERFACE IMPORTED)
  set_target_properties(serialserver_asio PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${ASIO_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS
      "ASIO_STANDALONE;ASIO_NO_DEPRECATED;$<$<CXX_COMPILER_ID:Clang>:ASIO_HAS_CO_AWAIT=1>")
endif()
