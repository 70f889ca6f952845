# ctest script: install the build tree into a temporary prefix, then
# configure and build client/examples as an outside project that finds the
# package with find_package(tagcache) and links tagcache::client.
#   cmake -DBUILD_DIR=... -DEXAMPLE_DIR=... -DWORK_DIR=... -DGENERATOR=...
#         [-DCXX=...] [-DLAUNCHER=...] [-DEXTRA_FLAGS=...] -P install_test.cmake
foreach(var BUILD_DIR EXAMPLE_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_test.cmake: ${var} is not set")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  TIMEOUT 240)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${step} failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()

run("cmake --install" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f include/tagcache/client/client.h include/tagcache/common/status.h
          lib/cmake/tagcache/tagcacheConfig.cmake lib/cmake/tagcache/tagcacheTargets.cmake)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

set(configure_args -S "${EXAMPLE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
if(CXX)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX})
endif()
if(LAUNCHER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})
endif()
if(EXTRA_FLAGS)
  list(APPEND configure_args "-DCMAKE_CXX_FLAGS=${EXTRA_FLAGS}"
       "-DCMAKE_EXE_LINKER_FLAGS=${EXTRA_FLAGS}")
endif()
run("configure the example" ${CMAKE_COMMAND} ${configure_args})
run("build the example" ${CMAKE_COMMAND} --build "${WORK_DIR}/build" -j2)
if(NOT EXISTS "${WORK_DIR}/build/tagcache_client_example")
  message(FATAL_ERROR "the example was not built")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
message(STATUS "installed package found and linked")
