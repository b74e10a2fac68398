# Packaging tests (included from tests/CMakeLists.txt):
#   packaging.c_abi    the public header compiled as strict C99, version/handles/errors
#   packaging.params_abi_{older,newer}_caller  alibi_attention_params.struct_size across header
#                      versions (tests/packaging/params_abi_test.c)
#   packaging.symbols  the shared library exports exactly the alibi_* symbols the header declares
#   packaging.no_cuda_dependency  libalibi's NEEDED entries name no CUDA library
#   packaging.cuda_backend_symbols  libalibi_cuda exports only alibi_backend_entry (when built)
#   packaging.install  cmake --install into a temporary prefix, then out-of-tree C consumers
#                      through pkg-config and find_package(alibi)
#   packaging.{mpi,nccl}_symbols  libalibi_mpi / libalibi_nccl export exactly the alibi_* symbols
#                      their header declares (when built)
#   packaging.install_adapters  the same install; the adapters' layout, and C consumers through
#                      pkg-config alibi-mpi / alibi-nccl and find_package(alibi COMPONENTS ...)
#                      (when libalibi_mpi is built)

add_executable(alibi_c_abi_test ${CMAKE_CURRENT_LIST_DIR}/packaging/c_abi_test.c)
target_link_libraries(alibi_c_abi_test PRIVATE alibi::alibi)
set_target_properties(alibi_c_abi_test PROPERTIES
  C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_compile_options(alibi_c_abi_test PRIVATE
  $<$<C_COMPILER_ID:GNU,Clang>:-Wall -Wextra -pedantic-errors>)
add_test(NAME packaging.c_abi COMMAND alibi_c_abi_test)
set_tests_properties(packaging.c_abi PROPERTIES LABELS packaging TIMEOUT 60)

# alibi_attention_params across versions: a copy of the header with a field appended (8 bytes,
# past today's struct), libalibi built against it, and a caller built against each header.
set(_alibi_newer_include ${CMAKE_CURRENT_BINARY_DIR}/params_abi_newer)
file(READ ${PROJECT_SOURCE_DIR}/include/alibi/alibi.h _alibi_header)
string(REPLACE "} alibi_attention_params;"
       "  int64_t appended_in_a_newer_version;\n} alibi_attention_params;"
       _alibi_newer_header "${_alibi_header}")
file(WRITE ${_alibi_newer_include}/alibi/alibi.h "${_alibi_newer_header}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${PROJECT_SOURCE_DIR}/include/alibi/alibi.h)
alibi_library(alibi_newer_header)
target_include_directories(alibi_newer_header BEFORE PRIVATE ${_alibi_newer_include}
                           ${PROJECT_BINARY_DIR}/include)
# The other public headers (alibi_dist.h), after the newer alibi.h.
target_include_directories(alibi_newer_header PRIVATE ${PROJECT_SOURCE_DIR}/include)
foreach(_alibi_caller older newer)
  add_executable(alibi_params_abi_${_alibi_caller} ${CMAKE_CURRENT_LIST_DIR}/packaging/params_abi_test.c)
  target_link_libraries(alibi_params_abi_${_alibi_caller} PRIVATE ${CMAKE_DL_LIBS})
  target_include_directories(alibi_params_abi_${_alibi_caller} PRIVATE ${PROJECT_BINARY_DIR}/include)
  add_test(NAME packaging.params_abi_${_alibi_caller}_caller
           COMMAND alibi_params_abi_${_alibi_caller} $<TARGET_FILE:alibi> $<TARGET_FILE:alibi_newer_header>)
  # In the ASan job: bounds checks, no leak check. gcc 12's LeakSanitizer dies at exit ("Tracer
  # caught signal 11") in this program for some lengths of the library paths it dlopens (seen:
  # the same build passing under /tmp/ci and failing under /tmp/tmp.FINUfe1akG); nothing leaks.
  set_tests_properties(packaging.params_abi_${_alibi_caller}_caller PROPERTIES LABELS packaging TIMEOUT 60
    ENVIRONMENT_MODIFICATION "ASAN_OPTIONS=string_append::detect_leaks=0")
endforeach()
target_include_directories(alibi_params_abi_older PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_include_directories(alibi_params_abi_newer BEFORE PRIVATE ${_alibi_newer_include})
target_compile_definitions(alibi_params_abi_newer PRIVATE ALIBI_NEWER_HEADER)

if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  message(STATUS "alibi: packaging.symbols and packaging.install are ELF/Linux only: not added")
  return()
endif()

find_program(ALIBI_BASH_EXECUTABLE bash)
find_program(ALIBI_PKG_CONFIG_EXECUTABLE NAMES pkg-config pkgconf)
find_program(ALIBI_READELF_EXECUTABLE NAMES readelf ${CMAKE_READELF})
find_program(ALIBI_LDD_EXECUTABLE ldd)
mark_as_advanced(ALIBI_BASH_EXECUTABLE ALIBI_PKG_CONFIG_EXECUTABLE ALIBI_READELF_EXECUTABLE
                 ALIBI_LDD_EXECUTABLE)
if(NOT ALIBI_BASH_EXECUTABLE)
  message(WARNING "alibi: bash not found: packaging.symbols and packaging.install not added")
  return()
endif()

if(CMAKE_NM)
  add_test(NAME packaging.symbols
    COMMAND ${ALIBI_BASH_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/packaging/symbols_test.sh
            $<TARGET_FILE:alibi> ${PROJECT_SOURCE_DIR}/include/alibi/alibi.h)
  # The script calls nm from PATH; point it at the toolchain's.
  get_filename_component(_alibi_nm_dir ${CMAKE_NM} DIRECTORY)
  set_tests_properties(packaging.symbols PROPERTIES LABELS packaging TIMEOUT 60
    ENVIRONMENT "PATH=${_alibi_nm_dir}:$ENV{PATH}")
  foreach(_alibi_adapter mpi nccl)
    if(TARGET alibi_${_alibi_adapter})
      add_test(NAME packaging.${_alibi_adapter}_symbols
        COMMAND ${ALIBI_BASH_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/packaging/symbols_test.sh
                $<TARGET_FILE:alibi_${_alibi_adapter}>
                ${PROJECT_SOURCE_DIR}/include/alibi/alibi_${_alibi_adapter}.h)
      set_tests_properties(packaging.${_alibi_adapter}_symbols PROPERTIES LABELS packaging
        TIMEOUT 60 ENVIRONMENT "PATH=${_alibi_nm_dir}:$ENV{PATH}")
    endif()
  endforeach()
  unset(_alibi_adapter)
  unset(_alibi_nm_dir)
else()
  message(WARNING "alibi: nm not found: packaging.symbols not added")
endif()

if(ALIBI_READELF_EXECUTABLE)
  add_test(NAME packaging.no_cuda_dependency
    COMMAND ${ALIBI_BASH_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/packaging/no_cuda_needed_test.sh
            ${ALIBI_READELF_EXECUTABLE} $<TARGET_FILE:alibi>)
  set_tests_properties(packaging.no_cuda_dependency PROPERTIES LABELS packaging TIMEOUT 60)
else()
  message(WARNING "alibi: readelf not found: packaging.no_cuda_dependency not added")
endif()

if(TARGET alibi_cuda AND CMAKE_NM)
  add_test(NAME packaging.cuda_backend_symbols
    COMMAND ${ALIBI_BASH_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/packaging/backend_symbols_test.sh
            ${CMAKE_NM} $<TARGET_FILE:alibi_cuda>)
  set_tests_properties(packaging.cuda_backend_symbols PROPERTIES LABELS packaging TIMEOUT 60)
endif()

if(ALIBI_PKG_CONFIG_EXECUTABLE AND ALIBI_READELF_EXECUTABLE AND ALIBI_LDD_EXECUTABLE)
  add_test(NAME packaging.install
    COMMAND ${ALIBI_BASH_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/packaging/install_test.sh
            ${CMAKE_COMMAND} ${PROJECT_BINARY_DIR} ${CMAKE_CURRENT_BINARY_DIR}/packaging-install
            ${CMAKE_CURRENT_LIST_DIR}/packaging/consumer ${CMAKE_C_COMPILER}
            ${CMAKE_INSTALL_LIBDIR} ${CMAKE_INSTALL_INCLUDEDIR}
            ${PROJECT_VERSION} ${PROJECT_VERSION_MAJOR})
  set_tests_properties(packaging.install PROPERTIES LABELS packaging TIMEOUT 300
    SKIP_RETURN_CODE 77 RESOURCE_LOCK alibi_packaging_install)
  if(TARGET alibi_mpi)
    set(_alibi_with_nccl 0)
    if(TARGET alibi_nccl)
      set(_alibi_with_nccl 1)
    endif()
    add_test(NAME packaging.install_adapters
      COMMAND ${ALIBI_BASH_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/packaging/install_adapters_test.sh
              ${CMAKE_COMMAND} ${PROJECT_BINARY_DIR} ${CMAKE_CURRENT_BINARY_DIR}/packaging-install-adapters
              ${CMAKE_CURRENT_LIST_DIR}/packaging/adapters_consumer ${CMAKE_C_COMPILER}
              ${CMAKE_INSTALL_LIBDIR} ${CMAKE_INSTALL_INCLUDEDIR} ${PROJECT_VERSION_MAJOR}
              ${_alibi_with_nccl})
    set_tests_properties(packaging.install_adapters PROPERTIES LABELS packaging TIMEOUT 300
      SKIP_RETURN_CODE 77 RESOURCE_LOCK alibi_packaging_install)
    unset(_alibi_with_nccl)
  endif()
else()
  message(WARNING "alibi: pkg-config, readelf or ldd not found: packaging.install not added")
endif()
