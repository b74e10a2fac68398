#!/usr/bin/env bash
# packaging.install_go: installs the build tree into a temporary prefix, moves the prefix, then
# builds and runs two Go programs outside the source tree against the moved prefix only, the way
# bindings/go/README.md says (its go.mod and program, its commands): the README's program with
# LD_LIBRARY_PATH, the example examples/go/main.go with an rpath (-ldflags=-r). Also checks the
# installed module's layout, that no installed file names the build or source tree, the RUNPATHs,
# and that godoc shows no raw SWIG name.
#
# usage: install_test.sh CMAKE BUILD_DIR WORK_DIR GO LIBDIR GO_MODULE_DIR VERSION README EXAMPLE
#   LIBDIR and GO_MODULE_DIR are relative to the prefix; WORK_DIR is deleted and recreated.
set -euo pipefail

if [ "$#" -ne 9 ]; then
  echo "usage: $0 CMAKE BUILD_DIR WORK_DIR GO LIBDIR GO_MODULE_DIR VERSION README EXAMPLE" >&2
  exit 2
fi
cmake_exe=$1 build_dir=$2 work=$3 go_exe=$4 libdir_rel=$5 module_rel=$6 version=$7 readme=$8
example=$9
source_dir=$(cd "$(dirname "$0")/../../.." && pwd)

test_name=install_go
# shellcheck source=../install_common.sh
. "$(dirname "$0")/../install_common.sh"

start_work "$work" "$libdir_rel" "$module_rel"
install_into "$cmake_exe" "$build_dir" "$work/installed" "$work/install.log"
grep -F "/$module_rel/" "$work/install.log" | sed 's/^/    /'

step "installed module"
module=$work/installed/$module_rel
for f in go.mod doc.go context.go internal/capi/alibi.go internal/capi/alibi_wrap.c \
         internal/capi/error.go; do
  [ -f "$module/$f" ] || fail "missing $module/$f"
done
grep -qx "module alibi.dev/go/alibi" "$module/go.mod" || fail "$module/go.mod is not alibi.dev/go/alibi"
grep -q "^#cgo pkg-config: alibi" "$module/internal/capi/alibi.go" || fail "capi does not link through pkg-config"

step "no build or source tree path in the installed files"
require_no_tree_paths "$build_dir" "$source_dir" -- "$work/installed"

step "RUNPATHs: \$ORIGIN-relative only"
require_relative_runpaths "$work/installed/$libdir_rel"/*.so.*

step "move the prefix: $work/installed -> $work/moved"
mv "$work/installed" "$work/moved"
prefix=$work/moved
libdir=$prefix/$libdir_rel

# The README's fenced block of the given language, its placeholder prefix replaced.
readme_block() {
  awk -v fence="\`\`\`$1" '$0 == fence {inside = 1; next} inside && /^```/ {exit} inside' "$readme" \
    | sed "s|/opt/alibi/lib|$libdir|g; s|/opt/alibi|$prefix|g"
}

# A clean environment: only what the README says (PKG_CONFIG_PATH), offline, caches in the work dir.
go_env=(env -i "PATH=$PATH" "HOME=$work" "GOCACHE=$work/go-cache" "GOPATH=$work/go-path" GOPROXY=off
        "PKG_CONFIG_PATH=$libdir/pkgconfig")

# consumer <dir> <main.go source> <go build flags...>: the README's go.mod with a program.
consumer() {
  local dir=$work/$1 source=$2
  shift 2
  mkdir -p "$dir"
  readme_block go-mod > "$dir/go.mod"
  [ -s "$dir/go.mod" ] || fail "no go-mod block in $readme"
  cat "$source" > "$dir/main.go"
  (cd "$dir" && "${go_env[@]}" "$go_exe" build "$@" -o program .) || fail "go build in $dir failed"
}

check_resolves_to_prefix() {  # binary, LD_LIBRARY_PATH to use
  local resolved
  resolved=$(env -i "PATH=$PATH" "LD_LIBRARY_PATH=$2" ldd "$1" | awk '$1 ~ /^libalibi\.so/ {print $3}')
  echo "    $(basename "$(dirname "$1")"): libalibi -> $resolved"
  case "$resolved" in
    "$libdir"/libalibi.so.*) ;;
    *) fail "$1 loads libalibi from '$resolved', not from $libdir" ;;
  esac
}

step "the README's program, run with LD_LIBRARY_PATH"
readme_block go > "$work/readme_main.go"
[ -s "$work/readme_main.go" ] || fail "no go block in $readme"
consumer readme "$work/readme_main.go"
check_resolves_to_prefix "$work/readme/program" "$libdir"
output=$(env -i "LD_LIBRARY_PATH=$libdir" "$work/readme/program") || fail "the README's program failed"
echo "    $output"
case "$output" in
  "libalibi $version: "*) ;;
  *) fail "the README's program printed '$output', expected libalibi $version" ;;
esac

step "the example, linked with -ldflags=-r=$libdir"
consumer example "$example" "-ldflags=-r=$libdir"
check_resolves_to_prefix "$work/example/program" ""
env -i "$work/example/program" > "$work/example.log" || { cat "$work/example.log"; fail "the example failed"; }
sed 's/^/    /' "$work/example.log"

step "godoc: no raw SWIG name"
(cd "$work/readme" && "${go_env[@]}" "$go_exe" doc -all alibi.dev/go/alibi) > "$work/godoc.txt" \
  || fail "go doc failed"
echo "    $(grep -c '^func' "$work/godoc.txt") funcs and methods, $(grep -c '^type' "$work/godoc.txt") types"
if grep -nE 'Alibi_|Swig|capi\.' "$work/godoc.txt"; then fail "godoc shows raw SWIG names"; fi

echo "install_go test: PASS (prefix $prefix)"
