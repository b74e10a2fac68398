# What the install tests share (sourced by tests/packaging/install_test.sh and the bindings'
# tests/packaging/<lang>/ scripts): messages, the work folder, the install itself, and the checks
# every installed tree must pass. Set `test_name` before sourcing.

fail() { echo "$test_name test: FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

# start_work WORK RELATIVE_DIR...: skips (77) when an install dir is absolute (it would lie outside
# any prefix), then empties WORK so that the test can run any number of times.
start_work() {
  local work=$1 dir
  shift
  for dir in "$@"; do
    case "$dir" in
      /*) echo "$test_name test: SKIP: an absolute install dir ($dir) lies outside any prefix"
          exit 77 ;;
    esac
  done
  case "$work" in
    ""|/) fail "refusing to use work dir '$work'" ;;
  esac
  rm -rf "$work"
  mkdir -p "$work"
}

# install_into CMAKE BUILD_DIR PREFIX LOG [COMPONENT...]: the whole build tree, or those components.
install_into() {
  local cmake_exe=$1 build_dir=$2 prefix=$3 log=$4 component
  shift 4
  step "cmake --install $build_dir --prefix $prefix${*:+ (components $*)}"
  if [ "$#" -eq 0 ]; then
    "$cmake_exe" --install "$build_dir" --prefix "$prefix" > "$log" \
      || { cat "$log"; fail "cmake --install failed"; }
  fi
  for component in "$@"; do
    "$cmake_exe" --install "$build_dir" --prefix "$prefix" --component "$component" >> "$log" \
      || { cat "$log"; fail "cmake --install --component $component failed"; }
  done
}

# require_relative_runpaths LIBRARY...: every RUNPATH (or RPATH) entry starts with $ORIGIN.
require_relative_runpaths() {
  local lib runpath entry
  for lib in "$@"; do
    [ -L "$lib" ] && continue
    runpath=$(readelf -d "$lib" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\].*/\2/p')
    echo "    $(basename "$lib"): RUNPATH ${runpath:-(none)}"
    IFS=: read -ra entries <<< "$runpath"
    for entry in "${entries[@]}"; do
      case "$entry" in
        '$ORIGIN'|'$ORIGIN/'*) ;;
        *) fail "$lib has the RUNPATH entry '$entry', not \$ORIGIN-relative" ;;
      esac
    done
  done
}

# require_no_tree_paths TREE... -- DIR...: no file below the DIRs (binaries included) names a TREE.
require_no_tree_paths() {
  local trees=() tree found
  while [ "$1" != "--" ]; do trees+=("$1"); shift; done
  shift
  for tree in "${trees[@]}"; do
    if found=$(grep -rlF "$tree" "$@"); then
      fail "installed files name $tree: $found"
    fi
  done
}
