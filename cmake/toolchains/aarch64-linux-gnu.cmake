# Cross build for 64-bit ARM Linux with Debian's cross compilers (g++-aarch64-linux-gnu,
# libc6-dev-arm64-cross). Target programs run under qemu-user where it is installed: the build's
# gtest_discover_tests and ctest go through CMAKE_CROSSCOMPILING_EMULATOR. .ci/arm uses it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Debian 12's gcc 12.2 for aarch64 fails with an internal compiler error (in
# vect_transform_reduction) vectorizing an fmax reduction over doubles at -O2 and above, as
# examples/train_slopes.c has; the C code (examples, ABI tests) is built without loop vectorization.
set(CMAKE_C_FLAGS_INIT -fno-tree-loop-vectorize)

# Libraries and headers of the target only; programs (the build's tools) of the build machine.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Eigen is header-only: the build machine's copy (libeigen3-dev) serves the target.
if(NOT DEFINED Eigen3_DIR AND EXISTS /usr/share/eigen3/cmake/Eigen3Config.cmake)
  set(Eigen3_DIR /usr/share/eigen3/cmake CACHE PATH "Eigen3Config.cmake of the build machine")
endif()

find_program(ALIBI_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(ALIBI_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${ALIBI_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
endif()
