# Installation and packaging of libalibi: the shared library, its headers, a CMake package
# (alibi::alibi, find_package(alibi)) and a pkg-config file (alibi.pc); and, when built, the
# communicator adapters: libalibi_mpi (alibi::mpi, alibi-mpi.pc) and libalibi_nccl (alibi::nccl,
# alibi-nccl.pc), each in an export file of its own that alibiConfig.cmake includes when the
# engine it links is found.
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

# The adapters: library, header and export file alibi<Name>Targets.cmake (target alibi::<name>).
foreach(_alibi_adapter mpi nccl)
  if(TARGET alibi_${_alibi_adapter})
    string(TOUPPER ${_alibi_adapter} _alibi_adapter_upper)
    install(TARGETS alibi_${_alibi_adapter}
      EXPORT alibi${_alibi_adapter_upper}Targets
      LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        COMPONENT runtime
        NAMELINK_COMPONENT development)
    install(FILES ${PROJECT_SOURCE_DIR}/include/alibi/alibi_${_alibi_adapter}.h
      DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/alibi
      COMPONENT development)
    install(EXPORT alibi${_alibi_adapter_upper}Targets
      NAMESPACE alibi::
      FILE alibi${_alibi_adapter_upper}Targets.cmake
      DESTINATION ${ALIBI_INSTALL_CMAKEDIR}
      COMPONENT development)
  endif()
endforeach()
unset(_alibi_adapter_upper)

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
# pkgconfig/NAME.pc.in configured now (with ALIBI_PC_PREFIX), then at install time.
function(alibi_install_pc name)
  configure_file(${PROJECT_SOURCE_DIR}/pkgconfig/${name}.pc.in
                 ${PROJECT_BINARY_DIR}/pkgconfig/${name}.pc.configured @ONLY)
  install(CODE "configure_file(\"${PROJECT_BINARY_DIR}/pkgconfig/${name}.pc.configured\"
                               \"${PROJECT_BINARY_DIR}/pkgconfig/install/${name}.pc\" @ONLY)"
    COMPONENT development)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/install/${name}.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
    COMPONENT development)
endfunction()
alibi_install_pc(alibi)

# An adapter's .pc file also carries the engine its header includes: the include directories
# and libraries its CMakeLists.txt put in ALIBI_PC_INCLUDE_DIRS and ALIBI_PC_LIBRARIES.
foreach(_alibi_adapter mpi nccl)
  if(TARGET alibi_${_alibi_adapter})
    get_target_property(_alibi_dirs alibi_${_alibi_adapter} ALIBI_PC_INCLUDE_DIRS)
    get_target_property(_alibi_libs alibi_${_alibi_adapter} ALIBI_PC_LIBRARIES)
    list(REMOVE_DUPLICATES _alibi_dirs)
    list(TRANSFORM _alibi_dirs PREPEND "-I")
    list(JOIN _alibi_dirs " " ALIBI_PC_ADAPTER_CFLAGS)
    list(JOIN _alibi_libs " " ALIBI_PC_ADAPTER_LIBS)
    alibi_install_pc(alibi-${_alibi_adapter})
  endif()
endforeach()
unset(_alibi_adapter)
unset(_alibi_dirs)
unset(_alibi_libs)
unset(ALIBI_PC_ADAPTER_CFLAGS)
unset(ALIBI_PC_ADAPTER_LIBS)
unset(ALIBI_PC_PREFIX)
