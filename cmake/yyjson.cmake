# yyjson.cmake -- the pinned yyjson 0.10.0 (MIT), built into a private static
# library for fs.from_json (arena/json.c).
#
# Result: target fs_yyjson (static, PIC, hidden visibility; its include dir
# on the interface). The source is Debian's orig tarball of yyjson
# 0.10.0+ds (trixie's source package; Debian 12 has none), SHA-256 verified:
#   1. -DFS_YYJSON_TARBALL=<path>
#   2. <source>/.deps/yyjson_0.10.0+ds.orig.tar.xz (scripts/setup.sh fetches
#      it with a private apt configuration naming trixie's deb-src)
# It is compiled from the tarball as shipped, with its own warnings off: it is
# not our code to lint.
set(FS_YYJSON_SHA256 ae6fde69a193e10afab426ef13f113d6903446405f9db9ee98bfb572bd6c961a)
set(FS_YYJSON_TARBALL "" CACHE FILEPATH "yyjson_0.10.0+ds.orig.tar.xz to build from")
set(_yy_tarball "${FS_YYJSON_TARBALL}")
if(NOT _yy_tarball)
  set(_yy_tarball "${PROJECT_SOURCE_DIR}/.deps/yyjson_0.10.0+ds.orig.tar.xz")
endif()
set(_yy_ok FALSE)
if(EXISTS "${_yy_tarball}")
  file(SHA256 "${_yy_tarball}" _yy_hash)
  if(_yy_hash STREQUAL FS_YYJSON_SHA256)
    set(_yy_ok TRUE)
  endif()
endif()
if(NOT _yy_ok)
  message(FATAL_ERROR
    "yyjson 0.10.0 source not found (or its SHA-256 is not ${FS_YYJSON_SHA256}): run "
    "scripts/setup.sh, which fetches Debian's yyjson_0.10.0+ds.orig.tar.xz into .deps/, "
    "or pass -DFS_YYJSON_TARBALL=/path/to/it")
endif()
set(_yy_dir "${CMAKE_BINARY_DIR}/yyjson-0.10.0")
if(NOT EXISTS "${_yy_dir}/src/yyjson.c")
  file(ARCHIVE_EXTRACT INPUT "${_yy_tarball}" DESTINATION "${CMAKE_BINARY_DIR}/yyjson-extract")
  file(GLOB _yy_top "${CMAKE_BINARY_DIR}/yyjson-extract/*")
  file(REMOVE_RECURSE "${_yy_dir}")
  file(RENAME "${_yy_top}" "${_yy_dir}")
  file(REMOVE_RECURSE "${CMAKE_BINARY_DIR}/yyjson-extract")
endif()
message(STATUS "yyjson: ${_yy_tarball}")
add_library(fs_yyjson STATIC "${_yy_dir}/src/yyjson.c")
set_target_properties(fs_yyjson PROPERTIES POSITION_INDEPENDENT_CODE ON C_VISIBILITY_PRESET hidden)
target_compile_options(fs_yyjson PRIVATE -w -O2)
target_include_directories(fs_yyjson SYSTEM INTERFACE "${_yy_dir}/src")
