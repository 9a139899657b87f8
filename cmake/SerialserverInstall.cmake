# What `cmake --install` puts under the prefix (the programs install themselves in apps/):
#   include/serialserver, include/serialclient            the public headers
#   <libdir>/libserialserver.{a,so}, libserialclient.{a,so}
#   <libdir>/cmake/serialserver/                            find_package(serialserver CONFIG)
#   <libdir>/pkgconfig/serialserver.pc, serialclient.pc     pkg-config
# and the CPack settings for the Debian package (scripts/package).
include(CMakePackageConfigHelpers)

set(SERIALSERVER_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/serialserver)
set(SERIALSERVER_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(TARGETS serialserver serialserver_shared serialclient serialclient_shared
  EXPORT serialserverTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/serialserver ${PROJECT_SOURCE_DIR}/include/serialclient
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp")

# The CMake package: exported targets serialserver::serialserver (shared),
# serialserver::serialserver_static, serialserver::serialclient, serialserver::serialclient_static.
install(EXPORT serialserverTargets
  NAMESPACE serialserver::
  DESTINATION ${SERIALSERVER_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/serialserverConfig.cmake.in
  ${PROJECT_BINARY_DIR}/serialserverConfig.cmake
  INSTALL_DESTINATION ${SERIALSERVER_CMAKE_DIR})
# 0.x: a new minor version may break the interface, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/serialserverConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/serialserverConfig.cmake
  ${PROJECT_BINARY_DIR}/serialserverConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindAsio.cmake
  DESTINATION ${SERIALSERVER_CMAKE_DIR})

# pkg-config files. Their prefix is written at install time, so that `cmake --install <build>
# --prefix <dir>` and the Debian package (which installs with the prefix /usr) both get theirs.
# Everything else is filled in now; "@PC_PREFIX@" survives this first pass on purpose.
set(PC_PREFIX "@PC_PREFIX@")
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
set(PC_EXTRA_CFLAGS "")
if(NOT ASIO_INCLUDE_DIR STREQUAL "/usr/include")
  string(APPEND PC_EXTRA_CFLAGS " -I${ASIO_INCLUDE_DIR}")
endif()
set(PC_SANITIZE "")
if(SERIALSERVER_SANITIZE)
  set(PC_SANITIZE " -fsanitize=${SERIALSERVER_SANITIZE}")
endif()
foreach(pc serialserver serialclient)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc.in
                 @ONLY)
endforeach()
install(CODE "set(SERIALSERVER_PC_DIR \"${PROJECT_BINARY_DIR}/pkgconfig\")
set(SERIALSERVER_PC_DESTINATION \"${SERIALSERVER_PKGCONFIG_DIR}\")")
install(CODE [[
  if(IS_ABSOLUTE "${SERIALSERVER_PC_DESTINATION}")
    set(_pc_destination "${SERIALSERVER_PC_DESTINATION}")
  else()
    set(_pc_destination "${CMAKE_INSTALL_PREFIX}/${SERIALSERVER_PC_DESTINATION}")
  endif()
  set(PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  foreach(_pc serialserver serialclient)
    configure_file("${SERIALSERVER_PC_DIR}/${_pc}.pc.in" "${SERIALSERVER_PC_DIR}/install/${_pc}.pc"
                   @ONLY)
    file(INSTALL DESTINATION "${_pc_destination}" TYPE FILE
         FILES "${SERIALSERVER_PC_DIR}/install/${_pc}.pc")
  endforeach()
]])

# The Debian package (one package: libraries, headers, CMake and pkg-config files, programs).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME serialserver)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "serialserver")
set(CPACK_PACKAGE_CONTACT "serialserver maintainers <serialserver@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
    "A C++20 library on standalone Asio for servers and clients of the serial protocol (one-byte \
task code, block-encoded messages, OK/Error/Goodbye answers), with its headers, CMake and \
pkg-config files, and the programs serialserver-demo, serialctl, serialbench, serialserver-logd \
and serialserver-log.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
# Shared-library dependencies of the libraries and programs, computed by dpkg-shlibdeps
# (dpkg-dev); the headers need the -dev packages of the libraries they include.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libasio-dev, libfmt-dev, libspdlog-dev, libssl-dev, prometheus-cpp-dev")
# A shlibs file for packages built against this one, and the ldconfig trigger.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
include(CPack)
