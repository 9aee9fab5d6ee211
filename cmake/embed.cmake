# Writes a binary file into a C++ source as a byte array (cmake -DIN=<file> -DOUT=<file.cc>
# -DNAME=<symbol> -P embed.cmake): the CUDA kernels' fatbin travels inside the addon, loaded with
# the driver API at run time, so the .node needs no CUDA runtime library and no file beside it.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" body "${body}")
file(WRITE "${OUT}" "// Generated from ${IN} by cmake/embed.cmake: do not edit.\n#include <cstddef>\n"
  "alignas(64) extern const unsigned char ${NAME}[] = {\n${body}\n};\n"
  "extern const size_t ${NAME}_size = ${bytes};\n")
