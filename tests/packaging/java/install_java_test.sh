#!/usr/bin/env bash
# packaging.install_java: installs the build tree's runtime and java components into a temporary
# prefix, then, outside the source tree and with only what bindings/java/README.md says (the jar
# on the classpath, nothing else), compiles and runs the README's program and the packed-batch
# example; moves the prefix and runs them again (relocatable); checks the jar's manifest, the
# POM, the javadoc jar, the JNI library's RUNPATH ($ORIGIN only) and that no installed file
# names the build tree. Also checks each way of finding the JNI library (bindings/java/README.md).
#
# usage: install_java_test.sh CMAKE BUILD_DIR WORK_DIR TEST_SRC EXAMPLE JAVA_BIN_DIR LIBDIR DATADIR VERSION
set -euo pipefail

if [ "$#" -ne 9 ]; then
  echo "usage: $0 CMAKE BUILD_DIR WORK_DIR TEST_SRC EXAMPLE JAVA_BIN_DIR LIBDIR DATADIR VERSION" >&2
  exit 2
fi
cmake_exe=$1 build_dir=$2 work=$3 test_src=$4 example=$5 java_bin=$6 libdir_rel=$7
datadir_rel=$8 version=$9

test_name=install_java
# shellcheck source=../install_common.sh
. "$(dirname "$0")/../install_common.sh"

start_work "$work" "$libdir_rel" "$datadir_rel"
prefix=$work/prefix
install_into "$cmake_exe" "$build_dir" "$prefix" "$work/install.log" runtime java
sed 's/^/    /' "$work/install.log"

jardir=$prefix/$datadir_rel/java
libdir=$prefix/$libdir_rel
step "installed layout"
for f in "$jardir/alibi-$version.jar" "$jardir/alibi.jar" "$jardir/alibi-$version-javadoc.jar" \
         "$jardir/alibi-$version.pom" "$libdir/libalibi_java.so"; do
  [ -e "$f" ] || fail "missing $f"
done

step "manifest, POM, javadoc"
mkdir -p "$work/jar" "$work/javadoc"
(cd "$work/jar" && "$java_bin/jar" xf "$jardir/alibi-$version.jar")
(cd "$work/javadoc" && "$java_bin/jar" xf "$jardir/alibi-$version-javadoc.jar")
manifest=$work/jar/META-INF/MANIFEST.MF
grep -q '^Automatic-Module-Name: org.alibi' "$manifest" || fail "no Automatic-Module-Name: org.alibi"
grep -q "^Implementation-Version: $version" "$manifest" || fail "no Implementation-Version: $version"
grep -q "<version>$version</version>" "$jardir/alibi-$version.pom" || fail "the POM lacks version $version"
grep -q "<artifactId>alibi</artifactId>" "$jardir/alibi-$version.pom" || fail "the POM lacks artifactId alibi"
[ -f "$work/javadoc/org/alibi/Context.html" ] || fail "the javadoc jar has no org/alibi/Context.html"
[ ! -e "$work/javadoc/org/alibi/AlibiNative.html" ] || fail "the javadoc documents the raw layer"

step "RUNPATH of the installed libraries: \$ORIGIN-relative only"
require_relative_runpaths "$libdir"/*.so*
[ "$(readelf -d "$libdir/libalibi_java.so" | grep -c 'RUNPATH.*\[\$ORIGIN\]')" = 1 ] \
  || fail "libalibi_java.so does not have RUNPATH \$ORIGIN"

step "no installed file names the build or source tree (the jars unpacked too)"
require_no_tree_paths "$build_dir" "$(cd "$(dirname "$0")/../../.." && pwd)" \
  -- "$prefix" "$work/jar" "$work/javadoc"

# Only the installed files may be found: nothing from the environment.
unset LD_LIBRARY_PATH CLASSPATH JAVA_TOOL_OPTIONS _JAVA_OPTIONS JDK_JAVA_OPTIONS
app=$work/app
mkdir -p "$app"
cp "$test_src/Consumer.java" "$example" "$app/"
step "compile the README program and the example against $jardir/alibi.jar"
(cd "$app" && "$java_bin/javac" -cp "$jardir/alibi.jar" -d classes Consumer.java "$(basename "$example")") \
  || fail "javac failed"

run_all() {  # jar folder, extra java options...
  local jar=$1/alibi.jar
  shift
  for main in Consumer PackedBatch; do
    (cd "$app" && "$java_bin/java" "$@" -cp "$jar:classes" "$main") > "$work/run.log" 2>&1 \
      || { cat "$work/run.log"; fail "$main failed (jar $jar $*)"; }
    sed 's/^/    /' "$work/run.log" | tail -n 1
  done
}

step "run: the JNI library found beside the jar (installed layout)"
run_all "$jardir"

step "move the prefix: run again (relocatable)"
moved=$work/moved/prefix
mkdir -p "$work/moved"
mv "$prefix" "$moved"
run_all "$moved/$datadir_rel/java"

step "run: -Dalibi.library.path, with the jar away from the install"
mkdir -p "$work/lone"
cp "$moved/$datadir_rel/java/alibi-$version.jar" "$work/lone/alibi.jar"
run_all "$work/lone" "-Dalibi.library.path=$moved/$libdir_rel/libalibi_java.so"

step "run: java.library.path, with the jar away from the install"
run_all "$work/lone" "-Djava.library.path=$moved/$libdir_rel"

step "no way to find it: an UnsatisfiedLinkError that says where it looked"
if (cd "$app" && "$java_bin/java" -cp "$work/lone/alibi.jar:classes" Consumer) > "$work/run.log" 2>&1; then
  fail "Consumer ran without any way to find libalibi_java"
fi
grep -q 'alibi.library.path' "$work/run.log" || { cat "$work/run.log"; fail "the error does not name alibi.library.path"; }

echo "install_java test: PASS"
