# Install-time script: packs the C# binding just installed (its wrapper already carries the
# install RUNPATH) into <datadir>/nuget/Alibi.<version>.nupkg, a zip laid out as NuGet expects:
#   Alibi.nuspec, [Content_Types].xml, _rels/.rels
#   lib/net45/Alibi.dll, lib/net45/Alibi.xml
#   runtimes/linux-x64/native/libalibi_csharp.so, runtimes/linux-x64/native/libalibi.so.0
# Set by the install(CODE) before it: ALIBI_NUPKG_TEMPLATES (this folder), ALIBI_NUPKG_STAGE (a
# build-tree folder), ALIBI_NUPKG_VERSION, ALIBI_NUPKG_SONAME, and the install-relative
# ALIBI_NUPKG_BINDING_DIR, ALIBI_NUPKG_LIBDIR, ALIBI_NUPKG_OUTPUT_DIR.

set(root "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")
set(binding "${root}/${ALIBI_NUPKG_BINDING_DIR}")
set(native "${ALIBI_NUPKG_STAGE}/runtimes/linux-x64/native")
set(package "${root}/${ALIBI_NUPKG_OUTPUT_DIR}/Alibi.${ALIBI_NUPKG_VERSION}.nupkg")

file(REMOVE_RECURSE "${ALIBI_NUPKG_STAGE}")
file(COPY "${ALIBI_NUPKG_TEMPLATES}/[Content_Types].xml" "${ALIBI_NUPKG_TEMPLATES}/_rels"
     DESTINATION "${ALIBI_NUPKG_STAGE}")
set(PROJECT_VERSION "${ALIBI_NUPKG_VERSION}")
configure_file("${ALIBI_NUPKG_TEMPLATES}/Alibi.nuspec.in" "${ALIBI_NUPKG_STAGE}/Alibi.nuspec" @ONLY)
file(COPY "${binding}/Alibi.dll" "${binding}/Alibi.xml" DESTINATION "${ALIBI_NUPKG_STAGE}/lib/net45")
file(COPY "${binding}/libalibi_csharp.so" DESTINATION "${native}")
# The library under its SONAME, a file rather than the installed symlink.
file(REAL_PATH "${root}/${ALIBI_NUPKG_LIBDIR}/${ALIBI_NUPKG_SONAME}" library)
file(COPY "${library}" DESTINATION "${native}")
get_filename_component(library_name "${library}" NAME)
if(NOT library_name STREQUAL ALIBI_NUPKG_SONAME)
  file(RENAME "${native}/${library_name}" "${native}/${ALIBI_NUPKG_SONAME}")
endif()

file(MAKE_DIRECTORY "${root}/${ALIBI_NUPKG_OUTPUT_DIR}")
message(STATUS "Packing: ${package}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -E tar cf "${package}" --format=zip --
          Alibi.nuspec "[Content_Types].xml" _rels lib runtimes
  WORKING_DIRECTORY "${ALIBI_NUPKG_STAGE}" RESULT_VARIABLE packed)
if(NOT packed EQUAL 0)
  message(FATAL_ERROR "packing ${package} failed: ${packed}")
endif()
