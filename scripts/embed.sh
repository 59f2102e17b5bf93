#!/bin/sh
# scripts/embed.sh FILE SYMBOL — print a C file defining `const unsigned char SYMBOL[]` with FILE's bytes
# and `const size_t SYMBOL_len`. Only od and sed (coreutils), so the build needs nothing new.
set -eu
file=$1
sym=$2
echo "/* generated from $file by scripts/embed.sh: do not edit */"
echo "#include <stddef.h>"
echo "const unsigned char ${sym}[] = {"
od -An -v -tx1 "$file" | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g' -e '/^$/d'
echo "};"
echo "const size_t ${sym}_len = sizeof ${sym};"
