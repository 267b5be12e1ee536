# Turns the binary file IN into a C source OUT that defines
# sl_descriptor_set / sl_descriptor_set_len.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT} "#include <stddef.h>\nconst unsigned char sl_descriptor_set[] = {${body}};\nconst size_t sl_descriptor_set_len = ${len};\n")
