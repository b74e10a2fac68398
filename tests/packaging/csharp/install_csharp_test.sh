#!/usr/bin/env bash
# packaging.install_csharp: installs the build tree into a temporary prefix, checks the C# files
# (Alibi.dll with the project version, Alibi.xml, the wrapper with an $ORIGIN-only RUNPATH, the
# .nupkg), moves the prefix elsewhere and looks for build-tree paths in it, then builds and runs
# Hello.cs outside the source tree as bindings/csharp/README.md says: against the moved prefix
# (MONO_PATH), and, the prefix deleted, against the contents of the .nupkg alone: as a NuGet
# client restores it from a folder feed when NUGET is one (Debian's nuget), else unzipped.
#
# usage: install_csharp_test.sh CMAKE BUILD_DIR WORK_DIR CONSUMER_SRC LIBDIR DATADIR VERSION MCS MONO READELF NUGET
#   WORK_DIR is deleted and recreated (so the test can run any number of times); NUGET may be
#   anything that is not an executable (e.g. ALIBI_NUGET-NOTFOUND) when there is no NuGet client.
set -euo pipefail

if [ "$#" -ne 11 ]; then
  echo "usage: $0 CMAKE BUILD_DIR WORK_DIR CONSUMER_SRC LIBDIR DATADIR VERSION MCS MONO READELF NUGET" >&2
  exit 2
fi
cmake_exe=$1 build_dir=$2 work=$3 consumer_src=$4 libdir_rel=$5 datadir_rel=$6 version=$7
mcs=$8 mono=$9 readelf=${10} nuget=${11}

test_name=install_csharp
# shellcheck source=../install_common.sh
. "$(dirname "$0")/../install_common.sh"

start_work "$work" "$libdir_rel" "$datadir_rel"
prefix=$work/prefix
binding_rel=$libdir_rel/cli/alibi
nupkg_rel=$datadir_rel/nuget/Alibi.$version.nupkg

install_into "$cmake_exe" "$build_dir" "$prefix" "$work/install.log"
grep -E 'cli/alibi|nuget' "$work/install.log" | sed 's/^/    /'

step "installed layout"
for f in "$binding_rel/Alibi.dll" "$binding_rel/Alibi.xml" "$binding_rel/libalibi_csharp.so" "$nupkg_rel"; do
  [ -f "$prefix/$f" ] || fail "missing $prefix/$f"
done
grep -q '<member name="T:Alibi.Context">' "$prefix/$binding_rel/Alibi.xml" || fail "Alibi.xml documents no Alibi.Context"

step "RUNPATH of libalibi_csharp.so"
"$readelf" -d "$prefix/$binding_rel/libalibi_csharp.so" | grep -q 'R\(UN\)\{0,1\}PATH' \
  || fail "libalibi_csharp.so has no RUNPATH"
require_relative_runpaths "$prefix/$binding_rel/libalibi_csharp.so"

step "relocated: $prefix -> $work/moved, no build or source tree path in it or in the .nupkg"
mv "$prefix" "$work/moved"
prefix=$work/moved
mkdir -p "$work/nupkg" "$work/feed"
cp "$prefix/$nupkg_rel" "$work/feed/"
(cd "$work/nupkg" && "$cmake_exe" -E tar xf "$prefix/$nupkg_rel") || fail "cannot unpack the .nupkg"
require_no_tree_paths "$build_dir" "$(cd "$(dirname "$0")/../../.." && pwd)" -- "$prefix" "$work/nupkg"

step "the .nupkg"
(cd "$work/nupkg" && find . -type f | sort | sed 's|^\./|    |')
for f in Alibi.nuspec "[Content_Types].xml" _rels/.rels lib/net45/Alibi.dll lib/net45/Alibi.xml \
         runtimes/linux-x64/native/libalibi_csharp.so runtimes/linux-x64/native/libalibi.so.0; do
  [ -f "$work/nupkg/$f" ] || fail "the .nupkg lacks $f"
done
grep -q "<version>$version</version>" "$work/nupkg/Alibi.nuspec" || fail "Alibi.nuspec does not say $version"

# Only the installed files may be found at run time.
unset LD_LIBRARY_PATH MONO_PATH

step "consumer of the installed prefix (mcs -r:, MONO_PATH)"
mkdir -p "$work/app"
"$mcs" -nologo -warnaserror -r:"$prefix/$binding_rel/Alibi.dll" -out:"$work/app/Hello.exe" \
  "$consumer_src/Hello.cs" || fail "building Hello.exe against the prefix failed"
wrapper_needs=$(ldd "$prefix/$binding_rel/libalibi_csharp.so" | awk '$1 ~ /^libalibi\.so/ {print $3}')
wrapper_needs=$(realpath -s -m "$wrapper_needs")
echo "    libalibi_csharp.so: libalibi -> $wrapper_needs"
case "$wrapper_needs" in
  "$(realpath -s "$prefix/$libdir_rel")"/libalibi.so.*) ;;
  *) fail "libalibi_csharp.so loads libalibi from '$wrapper_needs', not from $prefix/$libdir_rel" ;;
esac
run_hello() {  # folder, MONO_PATH
  local said
  said=$(cd "$1" && MONO_PATH=$2 "$mono" Hello.exe) || { echo "$said"; return 1; }
  echo "    $said"
  case "$said" in
    "Alibi.dll $version.0, libalibi $version:"*) ;;
    *) echo "    expected Alibi.dll $version.0 and libalibi $version"; return 1 ;;
  esac
}
run_hello "$work/app" "$prefix/$binding_rel" || fail "Hello.exe failed against the prefix"
rm -rf "$prefix"

package=$work/nupkg
if [ -x "$nuget" ]; then
  step "a NuGet client restores it: nuget install Alibi -Version $version -Source <folder feed>"
  (cd "$work" && HOME=$work/home "$nuget" install Alibi -Version "$version" -Source "$work/feed" \
     -OutputDirectory "$work/restored" -NonInteractive) | sed 's/^/    /' \
    || fail "nuget install failed"
  package=$work/restored/Alibi.$version
else
  step "no NuGet client (Debian: nuget): the .nupkg unzipped instead"
fi

step "consumer of the .nupkg alone (lib/net45 and runtimes/linux-x64/native beside the program)"
mkdir -p "$work/nupkg-app"
cp "$package/lib/net45/"* "$package/runtimes/linux-x64/native/"* "$work/nupkg-app/"
"$mcs" -nologo -warnaserror -r:"$work/nupkg-app/Alibi.dll" -out:"$work/nupkg-app/Hello.exe" \
  "$consumer_src/Hello.cs" || fail "building Hello.exe against the .nupkg failed"
run_hello "$work/nupkg-app" "" || fail "Hello.exe failed against the .nupkg"

echo "install_csharp test: PASS"
