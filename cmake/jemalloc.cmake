# jemalloc.cmake -- build the pinned jemalloc 5.3.0 privately.
#
# Result: imported target fs_jemalloc (static, PIC, symbols prefixed fsje_,
# no initial-exec TLS so the library loads into a running Python; see
# PLATFORM.md "jemalloc"). Users of the library link it with
# -Wl,--exclude-libs,ALL so that no jemalloc symbol is exported.
#
# Source tarball, first found wins, SHA-256 verified in every case:
#   1. -DFS_JEMALLOC_TARBALL=<path>
#   2. <source>/.deps/jemalloc-5.3.0.tar.bz2 (scripts/setup.sh puts it there)
#   3. Debian's source package (apt-get source --download-only jemalloc),
#      whose orig tarball is the identical file: tried before the URL where
#      apt-get exists, since the distribution's mirror is what machines of
#      this kind reach (no general internet)
#   4. the upstream release URL, when the machine has internet
include(ExternalProject)

# Reuse: FS_JEMALLOC_DIR names the jemalloc tree another build dir already
# built (<build>/jemalloc/src/jemalloc_ext); the sanitizer and fuzz builds of
# scripts/sanitize.sh use it (jemalloc itself is never instrumented).
set(FS_JEMALLOC_DIR "" CACHE PATH "reuse an already built jemalloc tree")
if(FS_JEMALLOC_DIR AND EXISTS "${FS_JEMALLOC_DIR}/lib/libjemalloc_pic.a")
  add_library(fs_jemalloc STATIC IMPORTED GLOBAL)
  set_target_properties(fs_jemalloc PROPERTIES
    IMPORTED_LOCATION "${FS_JEMALLOC_DIR}/lib/libjemalloc_pic.a"
    INTERFACE_INCLUDE_DIRECTORIES "${FS_JEMALLOC_DIR}/include")
  message(STATUS "jemalloc: reusing ${FS_JEMALLOC_DIR}")
  return()
endif()

set(FS_JEMALLOC_SHA256 2db82d1e7119df3e71b7640219b6dfe84789bc0537983c3b7ac4f7189aecfeaa)
set(FS_JEMALLOC_TARBALL "" CACHE FILEPATH "jemalloc-5.3.0.tar.bz2 to build from")
set(_je_cache "${PROJECT_SOURCE_DIR}/.deps/jemalloc-5.3.0.tar.bz2")

function(_fs_je_hash_ok path out)
  set(${out} FALSE PARENT_SCOPE)
  if(EXISTS "${path}")
    file(SHA256 "${path}" _h)
    if(_h STREQUAL FS_JEMALLOC_SHA256)
      set(${out} TRUE PARENT_SCOPE)
    endif()
  endif()
endfunction()

set(_je_tarball "")
if(FS_JEMALLOC_TARBALL)
  _fs_je_hash_ok("${FS_JEMALLOC_TARBALL}" _ok)
  if(NOT _ok)
    message(FATAL_ERROR "FS_JEMALLOC_TARBALL=${FS_JEMALLOC_TARBALL}: missing or SHA-256 is not ${FS_JEMALLOC_SHA256}")
  endif()
  set(_je_tarball "${FS_JEMALLOC_TARBALL}")
endif()
if(NOT _je_tarball)
  _fs_je_hash_ok("${_je_cache}" _ok)
  if(_ok)
    set(_je_tarball "${_je_cache}")
  endif()
endif()
if(NOT _je_tarball)
  find_program(APT_GET apt-get)
  if(APT_GET)
    message(STATUS "jemalloc: trying Debian's source package")
    set(_d "${CMAKE_BINARY_DIR}/jemalloc-debsrc")
    file(MAKE_DIRECTORY "${_d}")
    execute_process(COMMAND ${APT_GET} source --download-only jemalloc=5.3.0-1
                    WORKING_DIRECTORY "${_d}" RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
    _fs_je_hash_ok("${_d}/jemalloc_5.3.0.orig.tar.bz2" _ok)
    if(NOT _ok)
      execute_process(COMMAND ${APT_GET} source --download-only jemalloc
                      WORKING_DIRECTORY "${_d}" RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
      _fs_je_hash_ok("${_d}/jemalloc_5.3.0.orig.tar.bz2" _ok)
    endif()
    if(_ok)
      file(COPY_FILE "${_d}/jemalloc_5.3.0.orig.tar.bz2" "${_je_cache}")
      set(_je_tarball "${_je_cache}")
    endif()
  endif()
endif()
if(NOT _je_tarball)
  file(MAKE_DIRECTORY "${PROJECT_SOURCE_DIR}/.deps")
  message(STATUS "jemalloc: trying the upstream release URL")
  file(DOWNLOAD
    "https://github.com/jemalloc/jemalloc/releases/download/5.3.0/jemalloc-5.3.0.tar.bz2"
    "${_je_cache}.part" TIMEOUT 20 STATUS _st)
  list(GET _st 0 _code)
  _fs_je_hash_ok("${_je_cache}.part" _ok)
  if(_code EQUAL 0 AND _ok)
    file(RENAME "${_je_cache}.part" "${_je_cache}")
    set(_je_tarball "${_je_cache}")
  else()
    file(REMOVE "${_je_cache}.part")
  endif()
endif()
if(NOT _je_tarball)
  message(FATAL_ERROR
    "jemalloc 5.3.0 source not found. Run scripts/setup.sh (it enables Debian "
    "deb-src entries and fetches the source package), or pass "
    "-DFS_JEMALLOC_TARBALL=/path/to/jemalloc-5.3.0.tar.bz2")
endif()
message(STATUS "jemalloc: ${_je_tarball}")

set(_je_prefix "${CMAKE_BINARY_DIR}/jemalloc")
set(_je_lib "${_je_prefix}/src/jemalloc_ext/lib/libjemalloc_pic.a")
set(_je_inc "${_je_prefix}/src/jemalloc_ext/include")
set(_je_cflags "-O2 -g -fPIC -fvisibility=hidden ${FS_JEMALLOC_EXTRA_CFLAGS}")
ExternalProject_Add(jemalloc_ext
  PREFIX "${_je_prefix}"
  URL "${_je_tarball}"
  URL_HASH SHA256=${FS_JEMALLOC_SHA256}
  DOWNLOAD_EXTRACT_TIMESTAMP TRUE
  BUILD_IN_SOURCE 1
  CONFIGURE_COMMAND <SOURCE_DIR>/configure
    --with-jemalloc-prefix=fsje_ --with-private-namespace=fsje_int_
    --disable-initial-exec-tls --disable-cxx --without-export
    --disable-shared --enable-static
    "CC=${CMAKE_C_COMPILER}" "CFLAGS=${_je_cflags}"
  BUILD_COMMAND make -j4 build_lib_static
  INSTALL_COMMAND ""
  BUILD_BYPRODUCTS "${_je_lib}"
  LOG_CONFIGURE TRUE LOG_BUILD TRUE LOG_OUTPUT_ON_FAILURE TRUE)

file(MAKE_DIRECTORY "${_je_inc}")
add_library(fs_jemalloc STATIC IMPORTED GLOBAL)
set_target_properties(fs_jemalloc PROPERTIES
  IMPORTED_LOCATION "${_je_lib}"
  INTERFACE_INCLUDE_DIRECTORIES "${_je_inc}")
add_dependencies(fs_jemalloc jemalloc_ext)
