#!/usr/bin/env bash
# packaging.install: installs the build tree into a temporary prefix and builds two out-of-tree C
# consumers against the installed files only: one through pkg-config, one through
# find_package(alibi). Also checks the installed layout, the SONAME and that the CMake package
# does not ask for Eigen; then moves the prefix and builds the pkg-config consumer again.
#
# usage: install_test.sh CMAKE BUILD_DIR WORK_DIR CONSUMER_SRC C_COMPILER LIBDIR INCLUDEDIR VERSION SOVERSION
#   WORK_DIR is deleted and recreated (so the test can run any number of times).
set -euo pipefail

if [ "$#" -ne 9 ]; then
  echo "usage: $0 CMAKE BUILD_DIR WORK_DIR CONSUMER_SRC C_COMPILER LIBDIR INCLUDEDIR VERSION SOVERSION" >&2
  exit 2
fi
cmake_exe=$1 build_dir=$2 work=$3 consumer_src=$4 cc=$5 libdir_rel=$6 includedir_rel=$7
version=$8 soversion=$9

test_name=install
# shellcheck source=install_common.sh
. "$(dirname "$0")/install_common.sh"

start_work "$work" "$libdir_rel" "$includedir_rel"
prefix=$work/prefix
libdir=$prefix/$libdir_rel
includedir=$prefix/$includedir_rel

install_into "$cmake_exe" "$build_dir" "$prefix" "$work/install.log"
sed 's/^/    /' "$work/install.log"

step "installed layout"
for f in "$includedir/alibi/alibi.h" "$includedir/alibi/alibi_version.h" \
         "$libdir/libalibi.so" "$libdir/libalibi.so.$soversion" "$libdir/libalibi.so.$version" \
         "$libdir/pkgconfig/alibi.pc" \
         "$libdir/cmake/alibi/alibiConfig.cmake" "$libdir/cmake/alibi/alibiConfigVersion.cmake" \
         "$libdir/cmake/alibi/alibiTargets.cmake"; do
  [ -e "$f" ] || fail "missing $f"
done
[ -L "$libdir/libalibi.so" ] || fail "$libdir/libalibi.so is not the development symlink"
grep -q "ALIBI_VERSION_STRING \"$version\"" "$includedir/alibi/alibi_version.h" \
  || fail "alibi_version.h does not say $version"
grep -q "PACKAGE_VERSION \"$version\"" "$libdir/cmake/alibi/alibiConfigVersion.cmake" \
  || fail "alibiConfigVersion.cmake does not say $version"

step "SONAME"
soname=$(readelf -d "$libdir/libalibi.so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
echo "    SONAME $soname"
[ "$soname" = "libalibi.so.$soversion" ] || fail "SONAME is '$soname', expected libalibi.so.$soversion"

step "no Eigen in the installed package files"
for f in "$libdir"/cmake/alibi/*.cmake "$libdir/pkgconfig/alibi.pc"; do
  if grep -v '^[[:space:]]*#' "$f" | grep -qi eigen; then
    fail "$f asks for Eigen (a private, header-only dependency)"
  fi
done

step "no build-tree or source-tree path in any installed file (libraries included)"
require_no_tree_paths "$build_dir" "$(cd "$(dirname "$0")/../.." && pwd)" -- "$prefix"

# Only the installed library may be found at run time.
unset LD_LIBRARY_PATH CPATH C_INCLUDE_PATH LIBRARY_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
check_resolves_to_prefix() {  # binary, LD_LIBRARY_PATH to use
  local resolved
  resolved=$(LD_LIBRARY_PATH=$2 ldd "$1" | awk '$1 ~ /^libalibi\.so/ {print $3}')
  echo "    $(basename "$1"): libalibi -> $resolved"
  case "$resolved" in
    "$libdir"/libalibi.so.*) ;;
    *) fail "$1 loads libalibi from '$resolved', not from $libdir" ;;
  esac
}

step "pkg-config consumer"
export PKG_CONFIG_PATH=$libdir/pkgconfig
pc_version=$(pkg-config --modversion alibi) || fail "pkg-config cannot find alibi"
pc_libdir=$(pkg-config --variable=libdir alibi)
pc_includedir=$(pkg-config --variable=includedir alibi)
echo "    version $pc_version, libdir $pc_libdir, includedir $pc_includedir"
echo "    cflags: $(pkg-config --cflags alibi)  libs: $(pkg-config --libs alibi)  static: $(pkg-config --libs --static alibi)"
[ "$pc_version" = "$version" ] || fail "pkg-config version $pc_version, expected $version"
# The .pc file finds its prefix from its own folder: compare the directories it names.
[ "$(realpath -m "$pc_libdir")" = "$(realpath -m "$libdir")" ] || fail "pkg-config libdir $pc_libdir, expected $libdir"
[ "$(realpath -m "$pc_includedir")" = "$(realpath -m "$includedir")" ] \
  || fail "pkg-config includedir $pc_includedir, expected $includedir"
pkg-config --libs --static alibi | grep -q -- -lstdc++ || fail "Libs.private lacks the C++ runtime"
mkdir -p "$work/pc"
# shellcheck disable=SC2046
"$cc" -std=c99 -Wall -Wextra -pedantic -o "$work/pc/consumer" "$consumer_src/consumer.c" \
  $(pkg-config --cflags --libs alibi) -lm || fail "building the pkg-config consumer failed"
check_resolves_to_prefix "$work/pc/consumer" "$libdir"
LD_LIBRARY_PATH=$libdir "$work/pc/consumer" || fail "the pkg-config consumer failed"

step "find_package consumer"
unset PKG_CONFIG_PATH
"$cmake_exe" -S "$consumer_src" -B "$work/cmake" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF > "$work/cmake-configure.log" 2>&1 \
  || { cat "$work/cmake-configure.log"; fail "configuring the find_package consumer failed"; }
grep 'consumer: found alibi' "$work/cmake-configure.log" | sed 's/^/    /'
found_dir=$(sed -n 's/^alibi_DIR:PATH=//p' "$work/cmake/CMakeCache.txt")
[ "$found_dir" = "$libdir/cmake/alibi" ] || fail "find_package used '$found_dir', expected $libdir/cmake/alibi"
"$cmake_exe" --build "$work/cmake" > "$work/cmake-build.log" 2>&1 \
  || { cat "$work/cmake-build.log"; fail "building the find_package consumer failed"; }
check_resolves_to_prefix "$work/cmake/consumer" ""   # through the rpath CMake sets
"$work/cmake/consumer" || fail "the find_package consumer failed"

step "a moved installation: the pkg-config consumer again"
moved=$work/moved
mv "$prefix" "$moved"
prefix=$moved libdir=$moved/$libdir_rel
export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046
"$cc" -std=c99 -Wall -Wextra -pedantic -o "$work/pc/consumer-moved" "$consumer_src/consumer.c" \
  $(pkg-config --cflags --libs alibi) -lm || fail "building against the moved installation failed"
check_resolves_to_prefix "$work/pc/consumer-moved" "$libdir"
LD_LIBRARY_PATH=$libdir "$work/pc/consumer-moved" || fail "the consumer of the moved installation failed"

echo "install test: PASS (prefix $prefix)"
