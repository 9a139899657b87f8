# serialserver_add_library(<name> SOURCES <file>... [PROJECT_LIBRARIES <lib>...]
#                          [PUBLIC_LINK <target>...] [PRIVATE_INCLUDE <dir>...])
#
# Compiles the sources once, position-independent, as the object library <name>_objects, and
# makes two libraries of those objects, both called lib<name> on disk:
#   <name>          static; what the project's own programs, tests and benchmarks link with.
#                   Installed and exported as serialserver::<name>_static.
#   <name>_shared   shared, with VERSION and SOVERSION. Installed and exported as
#                   serialserver::<name>.
# PROJECT_LIBRARIES names other libraries made by this function: the static form links with
# their static form, the shared form with their shared form. PUBLIC_LINK lists the external
# targets that users of the library need (headers and libraries).
#
# Both forms carry the same usage requirements. In a sanitizer build (SERIALSERVER_SANITIZE),
# the installed targets also carry -fsanitize=... as compile and link options: a library built
# with a sanitizer only links into programs built with the same one.
function(serialserver_add_library name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES;PROJECT_LIBRARIES;PUBLIC_LINK;PRIVATE_INCLUDE")

  add_library(${name}_objects OBJECT ${arg_SOURCES})
  set_target_properties(${name}_objects PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${name}_objects
    PUBLIC ${PROJECT_SOURCE_DIR}/include
    PRIVATE ${arg_PRIVATE_INCLUDE})
  target_link_libraries(${name}_objects
    PUBLIC ${arg_PROJECT_LIBRARIES} ${arg_PUBLIC_LINK}
    PRIVATE serialserver_warnings)
  target_compile_features(${name}_objects PUBLIC cxx_std_20)

  add_library(${name} STATIC $<TARGET_OBJECTS:${name}_objects>)
  add_library(${name}_shared SHARED $<TARGET_OBJECTS:${name}_objects>)

  # 0.x releases may break the ABI with every minor version, so the SONAME carries it.
  if(PROJECT_VERSION_MAJOR EQUAL 0)
    set(soversion "${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}")
  else()
    set(soversion "${PROJECT_VERSION_MAJOR}")
  endif()
  set_target_properties(${name} PROPERTIES OUTPUT_NAME ${name} EXPORT_NAME ${name}_static)
  set_target_properties(${name}_shared PROPERTIES
    OUTPUT_NAME ${name} EXPORT_NAME ${name}
    VERSION ${PROJECT_VERSION} SOVERSION ${soversion})

  set(shared_project_libraries "")
  foreach(lib IN LISTS arg_PROJECT_LIBRARIES)
    list(APPEND shared_project_libraries ${lib}_shared)
  endforeach()
  target_link_libraries(${name} PUBLIC ${arg_PROJECT_LIBRARIES} ${arg_PUBLIC_LINK})
  target_link_libraries(${name}_shared PUBLIC ${shared_project_libraries} ${arg_PUBLIC_LINK})

  foreach(target ${name} ${name}_shared)
    target_include_directories(${target} PUBLIC
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
    target_compile_features(${target} PUBLIC cxx_std_20)
    if(SERIALSERVER_SANITIZE)
      # In the build tree the top-level add_compile_options/add_link_options already apply.
      target_compile_options(${target} INTERFACE
        $<INSTALL_INTERFACE:-fsanitize=${SERIALSERVER_SANITIZE}>)
      target_link_options(${target} INTERFACE
        $<INSTALL_INTERFACE:-fsanitize=${SERIALSERVER_SANITIZE}>)
    endif()
  endforeach()
endfunction()
