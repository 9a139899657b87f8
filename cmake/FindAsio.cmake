# Standalone Asio (Debian: libasio-dev) is header-only and ships no CMake config: find its header
# and make an imported target for it.
find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
if(NOT TARGET serialserver_asio)
  add_library(serialserver_asio INTERFACE IMPORTED)
  set_target_properties(serialserver_asio PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${ASIO_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS "ASIO_STANDALONE;ASIO_NO_DEPRECATED")
endif()
