# The web chat page, compiled in: index.html becomes the C array that
# src/net/webpage.h declares, in ${CMAKE_BINARY_DIR}/webpage.c, generated at
# build time by CMake itself (no xxd or other tool) and again whenever
# index.html changes.
#
#   include(src/net/web/embed.cmake)
#   rc_embed_webpage(rc_net)          # any target that needs the page
#
# The same file is also the generator: the build runs it with `cmake -P`.

if(CMAKE_SCRIPT_MODE_FILE)
  # cmake -DRC_WEBPAGE_IN=index.html -DRC_WEBPAGE_OUT=webpage.c -P embed.cmake
  file(READ "${RC_WEBPAGE_IN}" hex HEX)
  string(LENGTH "${hex}" digits)
  math(EXPR len "${digits} / 2")
  # Each byte as a character constant, '\xNN': a plain 0xNN above 0x7f would
  # overflow a signed char (-Woverflow). Then 16 bytes a line (CMake's regular
  # expressions have no {16}).
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
  string(REPEAT "'[^']*'," 16 line)
  string(REGEX REPLACE "(${line})" "\\1\n    " bytes "${bytes}")
  # Written beside and renamed, so that a failed run leaves no half file.
  file(WRITE "${RC_WEBPAGE_OUT}.tmp"
    "/* Generated from src/net/web/index.html by src/net/web/embed.cmake. Do not edit. */\n"
    "#include \"net/webpage.h\"\n\n"
    "const char rc_webpage_index[] = {\n    ${bytes}'\\0' /* not counted */\n};\n"
    "const unsigned rc_webpage_index_len = ${len}u;\n")
  file(RENAME "${RC_WEBPAGE_OUT}.tmp" "${RC_WEBPAGE_OUT}")
  return()
endif()

set(RC_WEBPAGE_DIR "${CMAKE_CURRENT_LIST_DIR}" CACHE INTERNAL "where index.html and its embedding live")

# Adds the generated webpage.c to `target`. One rule makes the file, whatever
# the number of targets (or directories) that use it.
function(rc_embed_webpage target)
  set(out "${CMAKE_BINARY_DIR}/webpage.c")
  if(NOT TARGET rc_webpage)
    add_custom_command(OUTPUT "${out}"
      COMMAND "${CMAKE_COMMAND}" "-DRC_WEBPAGE_IN=${RC_WEBPAGE_DIR}/index.html" "-DRC_WEBPAGE_OUT=${out}"
              -P "${RC_WEBPAGE_DIR}/embed.cmake"
      DEPENDS "${RC_WEBPAGE_DIR}/index.html" "${RC_WEBPAGE_DIR}/embed.cmake"
      COMMENT "Embedding the web chat page (src/net/web/index.html)"
      VERBATIM)
    add_custom_target(rc_webpage DEPENDS "${out}")
  endif()
  target_sources(${target} PRIVATE "${out}")
  set_source_files_properties("${out}" TARGET_DIRECTORY ${target} PROPERTIES GENERATED TRUE)
  add_dependencies(${target} rc_webpage)
endfunction()
