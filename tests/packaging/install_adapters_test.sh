#!/usr/bin/env bash
# packaging.install_adapters: installs the build tree into a temporary prefix and checks the
# communicator adapters there: their layout and SONAMEs, no build-tree or source-tree path, and
# out-of-tree C consumers built against the installed files only, through pkg-config (alibi-mpi,
# alibi-nccl) and through find_package(alibi COMPONENTS mpi [nccl]), then run (the MPI consumer
# as a one-process MPI program; the NCCL one needs no GPU). find_package(alibi COMPONENTS ...) of
# an adapter that is not installed must fail.
#
# usage: install_adapters_test.sh CMAKE BUILD_DIR WORK_DIR CONSUMER_SRC C_COMPILER LIBDIR INCLUDEDIR SOVERSION WITH_NCCL
#   WITH_NCCL: 1 when libalibi_nccl was built, else 0. WORK_DIR is deleted and recreated.
set -euo pipefail

if [ "$#" -ne 9 ]; then
  echo "usage: $0 CMAKE BUILD_DIR WORK_DIR CONSUMER_SRC C_COMPILER LIBDIR INCLUDEDIR SOVERSION WITH_NCCL" >&2
  exit 2
fi
cmake_exe=$1 build_dir=$2 work=$3 consumer_src=$4 cc=$5 libdir_rel=$6 includedir_rel=$7
soversion=$8 with_nccl=$9

test_name=install_adapters
# shellcheck source=install_common.sh
. "$(dirname "$0")/install_common.sh"

start_work "$work" "$libdir_rel" "$includedir_rel"
prefix=$work/prefix
libdir=$prefix/$libdir_rel
includedir=$prefix/$includedir_rel
adapters=(mpi)
[ "$with_nccl" = 1 ] && adapters+=(nccl)

install_into "$cmake_exe" "$build_dir" "$prefix" "$work/install.log"

for a in "${adapters[@]}"; do
  upper=$(tr '[:lower:]' '[:upper:]' <<< "$a")
  step "alibi_$a: installed layout and SONAME"
  for f in "$includedir/alibi/alibi_$a.h" "$libdir/libalibi_$a.so" "$libdir/libalibi_$a.so.$soversion" \
           "$libdir/pkgconfig/alibi-$a.pc" "$libdir/cmake/alibi/alibi${upper}Targets.cmake"; do
    [ -e "$f" ] || fail "missing $f"
  done
  [ -L "$libdir/libalibi_$a.so" ] || fail "$libdir/libalibi_$a.so is not the development symlink"
  soname=$(readelf -d "$libdir/libalibi_$a.so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
  echo "    SONAME $soname"
  [ "$soname" = "libalibi_$a.so.$soversion" ] || fail "SONAME is '$soname', expected libalibi_$a.so.$soversion"
done

# As the bindings' install tests ask of every installed library: the adapters find libalibi
# beside them and their engine's libraries as the application finds its own, never through an
# absolute RUNPATH.
step "RUNPATHs: none, or \$ORIGIN-relative"
for a in "${adapters[@]}"; do
  require_relative_runpaths "$(readlink -f "$libdir/libalibi_$a.so.$soversion")"
done

step "no build-tree or source-tree path in any installed file (libraries included)"
require_no_tree_paths "$build_dir" "$(cd "$(dirname "$0")/../.." && pwd)" -- "$prefix"

unset LD_LIBRARY_PATH CPATH C_INCLUDE_PATH LIBRARY_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
# Open MPI runs a one-process program without mpiexec; as root it asks for this.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# check_resolves_to_prefix BINARY LD_LIBRARY_PATH LIBRARY...: each LIBRARY loads from $libdir.
check_resolves_to_prefix() {
  local binary=$1 path=$2 lib resolved
  shift 2
  for lib in "$@"; do
    resolved=$(LD_LIBRARY_PATH=$path ldd "$binary" | awk -v l="$lib" 'index($1, l ".so") == 1 {print $3}')
    echo "    $(basename "$binary"): $lib -> $resolved"
    case "$resolved" in
      "$libdir"/"$lib".so.*) ;;
      *) fail "$binary loads $lib from '$resolved', not from $libdir" ;;
    esac
  done
}

step "pkg-config consumers"
export PKG_CONFIG_PATH=$libdir/pkgconfig
mkdir -p "$work/pc"
for a in "${adapters[@]}"; do
  echo "    alibi-$a: cflags: $(pkg-config --cflags "alibi-$a")  libs: $(pkg-config --libs "alibi-$a")"
  # No -pedantic for NCCL: its nccl.h includes CUDA headers with anonymous unions.
  pedantic=-pedantic
  [ "$a" = nccl ] && pedantic=
  # shellcheck disable=SC2046
  "$cc" -std=c99 -Wall -Wextra $pedantic -o "$work/pc/${a}_consumer" "$consumer_src/${a}_consumer.c" \
    $(pkg-config --cflags --libs "alibi-$a") || fail "building the alibi-$a consumer failed"
  check_resolves_to_prefix "$work/pc/${a}_consumer" "$libdir" libalibi "libalibi_$a"
  LD_LIBRARY_PATH=$libdir "$work/pc/${a}_consumer" || fail "the alibi-$a consumer failed"
done
unset PKG_CONFIG_PATH

step "find_package(alibi COMPONENTS ${adapters[*]}) consumers"
with_nccl_option=OFF
[ "$with_nccl" = 1 ] && with_nccl_option=ON
"$cmake_exe" -S "$consumer_src" -B "$work/cmake" -DWITH_NCCL=$with_nccl_option \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF > "$work/cmake-configure.log" 2>&1 \
  || { cat "$work/cmake-configure.log"; fail "configuring the find_package consumers failed"; }
grep 'consumer: found alibi' "$work/cmake-configure.log" | sed 's/^/    /'
"$cmake_exe" --build "$work/cmake" > "$work/cmake-build.log" 2>&1 \
  || { cat "$work/cmake-build.log"; fail "building the find_package consumers failed"; }
for a in "${adapters[@]}"; do
  check_resolves_to_prefix "$work/cmake/${a}_consumer" "" libalibi "libalibi_$a"  # through the rpath
  "$work/cmake/${a}_consumer" || fail "the find_package alibi::$a consumer failed"
done

if [ "$with_nccl" != 1 ]; then
  step "find_package(alibi COMPONENTS nccl) without libalibi_nccl fails"
  if "$cmake_exe" -S "$consumer_src" -B "$work/cmake-nccl" -DWITH_NCCL=ON \
       -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
       -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF > "$work/cmake-nccl.log" 2>&1; then
    fail "find_package(alibi COMPONENTS nccl) succeeded without libalibi_nccl installed"
  fi
  grep -q 'set alibi_FOUND to FALSE' "$work/cmake-nccl.log" \
    || { cat "$work/cmake-nccl.log"; fail "configuring failed, but not by alibi's component check"; }
  echo "    refused by alibiConfig.cmake, as it should be"
fi

echo "install_adapters test: PASS (prefix $prefix: ${adapters[*]})"
