# Installation and packaging of libalibi: the shared library, its headers, a CMake package
# (alibi::alibi, find_package(alibi)) and a pkg-config file (alibi.pc).
#
# Eigen and the thread library are private dependencies of the shared library: they are not part
# of the exported interface, so neither the CMake package nor the .pc file asks consumers for them.

include(CMakePackageConfigHelpers)

set(ALIBI_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/alibi"
    CACHE STRING "Where to install the CMake package files of libalibi (relative to the prefix)")
mark_as_advanced(ALIBI_INSTALL_CMAKEDIR)

install(TARGETS alibi
  EXPORT alibiTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    COMPONENT runtime
    NAMELINK_COMPONENT development
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
# (The include directory of alibi::alibi comes from the target's $<INSTALL_INTERFACE:...>.)

# The CUDA backend, when built, goes beside libalibi, where libalibi looks for it at run time. It
# is a plugin opened by its SONAME: no development symlink, not part of alibi::alibi.
if(TARGET alibi_cuda)
  install(TARGETS alibi_cuda
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_SKIP)
endif()

install(FILES
    ${PROJECT_SOURCE_DIR}/include/alibi/alibi.h
    ${PROJECT_SOURCE_DIR}/include/alibi/alibi_dist.h
    ${PROJECT_BINARY_DIR}/include/alibi/alibi_version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/alibi
  COMPONENT development)

# CMake package: <prefix>/<libdir>/cmake/alibi/alibi{Config,ConfigVersion,Targets*}.cmake
install(EXPORT alibiTargets
  NAMESPACE alibi::
  FILE alibiTargets.cmake
  DESTINATION ${ALIBI_INSTALL_CMAKEDIR}
  COMPONENT development)

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/alibiConfig.cmake.in
  ${PROJECT_BINARY_DIR}/alibiConfig.cmake
  INSTALL_DESTINATION ${ALIBI_INSTALL_CMAKEDIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR)

write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/alibiConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)

install(FILES
    ${PROJECT_BINARY_DIR}/alibiConfig.cmake
    ${PROJECT_BINARY_DIR}/alibiConfigVersion.cmake
  DESTINATION ${ALIBI_INSTALL_CMAKEDIR}
  COMPONENT development)

# pkg-config, zstd style: the directories are joined onto ${prefix} only when they are relative,
# so an absolute CMAKE_INSTALL_LIBDIR / CMAKE_INSTALL_INCLUDEDIR still gives a correct file.
function(alibi_pc_join_path out_var base path)
  if(IS_ABSOLUTE "${path}")
    set(${out_var} "${path}" PARENT_SCOPE)
  else()
    set(${out_var} "${base}/${path}" PARENT_SCOPE)
  endif()
endfunction()
alibi_pc_join_path(ALIBI_PC_LIBDIR "\${exec_prefix}" "${CMAKE_INSTALL_LIBDIR}")
alibi_pc_join_path(ALIBI_PC_INCLUDEDIR "\${prefix}" "${CMAKE_INSTALL_INCLUDEDIR}")

# The library is C++ behind a C ABI: a static or fully private link also needs the C++ runtime,
# the thread library and libdl. (No CUDA library: the CUDA backend is loaded at run time.)
set(ALIBI_PC_LIBS_PRIVATE "-lstdc++ -lm")
if(CMAKE_THREAD_LIBS_INIT)
  string(APPEND ALIBI_PC_LIBS_PRIVATE " ${CMAKE_THREAD_LIBS_INIT}")
else()
  string(APPEND ALIBI_PC_LIBS_PRIVATE " -lpthread")
endif()
foreach(lib IN LISTS CMAKE_DL_LIBS)
  string(APPEND ALIBI_PC_LIBS_PRIVATE " -l${lib}")
endforeach()

# The prefix: with a relative libdir, found from the .pc file's own folder (${pcfiledir}), so an
# installation still works after it is moved; otherwise the one of the actual installation, set
# at install time (CMAKE_INSTALL_PREFIX there is the --prefix value): the file is configured in
# two steps, everything but the prefix now, the prefix then.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(ALIBI_PC_PREFIX "@CMAKE_INSTALL_PREFIX@")
else()
  file(RELATIVE_PATH _alibi_pc_up "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
  string(REGEX REPLACE "/$" "" _alibi_pc_up "${_alibi_pc_up}")
  set(ALIBI_PC_PREFIX "\${pcfiledir}/${_alibi_pc_up}")
  unset(_alibi_pc_up)
endif()
configure_file(${PROJECT_SOURCE_DIR}/pkgconfig/alibi.pc.in
               ${PROJECT_BINARY_DIR}/pkgconfig/alibi.pc.configured @ONLY)
unset(ALIBI_PC_PREFIX)
install(CODE "configure_file(\"${PROJECT_BINARY_DIR}/pkgconfig/alibi.pc.configured\"
                             \"${PROJECT_BINARY_DIR}/pkgconfig/install/alibi.pc\" @ONLY)"
  COMPONENT development)
install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/install/alibi.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
  COMPONENT development)
