# Finds every dependency, records what was found, and for what is missing the Debian package
# that provides it. engram_print_summary() prints the table at the end of configure.
set(_ENGRAM_SUMMARY "")
set(_ENGRAM_MISSING "")

function(_engram_record name found detail package)
  if(found)
    set(_ENGRAM_SUMMARY "${_ENGRAM_SUMMARY}  ${name}: found ${detail}\n" PARENT_SCOPE)
  else()
    set(_ENGRAM_SUMMARY "${_ENGRAM_SUMMARY}  ${name}: MISSING (apt-get install ${package})\n" PARENT_SCOPE)
    set(_ENGRAM_MISSING "${_ENGRAM_MISSING} ${package}" PARENT_SCOPE)
  endif()
endfunction()

# LibTorch: Debian's libtorch-dev, or any LibTorch >= 1.13 through CMAKE_PREFIX_PATH.
find_package(Torch QUIET)
_engram_record("LibTorch" "${Torch_FOUND}" "${Torch_VERSION} (${TORCH_INSTALL_PREFIX})" "libtorch-dev libopenblas0-openmp")

find_package(MPI QUIET COMPONENTS C)
_engram_record("MPI" "${MPI_C_FOUND}" "${MPI_C_VERSION} (${MPIEXEC_EXECUTABLE})" "libopenmpi-dev openmpi-bin")

set(HDF5_PREFER_PARALLEL TRUE)
find_package(HDF5 QUIET COMPONENTS C)
if(HDF5_FOUND AND NOT HDF5_IS_PARALLEL)
  _engram_record("HDF5 (parallel)" FALSE "" "libhdf5-openmpi-dev")
else()
  _engram_record("HDF5 (parallel)" "${HDF5_FOUND}" "${HDF5_VERSION}" "libhdf5-openmpi-dev")
endif()

find_package(ZLIB QUIET)
_engram_record("zlib" "${ZLIB_FOUND}" "${ZLIB_VERSION_STRING}" "zlib1g-dev")

find_package(yaml-cpp QUIET)
_engram_record("yaml-cpp" "${yaml-cpp_FOUND}" "${yaml-cpp_VERSION}" "libyaml-cpp-dev")

find_package(Boost QUIET COMPONENTS program_options)
_engram_record("Boost.Program_options" "${Boost_FOUND}" "${Boost_VERSION}" "libboost-program-options-dev")

find_package(GTest QUIET)
_engram_record("GoogleTest" "${GTest_FOUND}" "${GTest_VERSION}" "googletest libgtest-dev libgmock-dev")

find_package(spdlog QUIET)
_engram_record("spdlog" "${spdlog_FOUND}" "${spdlog_VERSION}" "libspdlog-dev")

find_package(nlohmann_json QUIET)
_engram_record("nlohmann_json" "${nlohmann_json_FOUND}" "${nlohmann_json_VERSION}" "nlohmann-json3-dev")

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(SENTENCEPIECE QUIET IMPORTED_TARGET sentencepiece)
endif()
_engram_record("SentencePiece" "${SENTENCEPIECE_FOUND}" "${SENTENCEPIECE_VERSION}" "libsentencepiece-dev")

if(PkgConfig_FOUND)
  pkg_check_modules(PCRE2 QUIET IMPORTED_TARGET libpcre2-8)
endif()
_engram_record("PCRE2 (GPT-2 pre-tokenizer)" "${PCRE2_FOUND}" "${PCRE2_VERSION}" "libpcre2-dev")

# Debian's faiss config names OpenMP::OpenMP_CXX in its link interface without finding it.
find_package(OpenMP QUIET COMPONENTS CXX)
find_package(faiss QUIET)
_engram_record("faiss" "${faiss_FOUND}" "${faiss_VERSION}" "libfaiss-dev")

# NCCL: AUTO builds the backend whenever the CUDA toolkit and NCCL are found (it compiles and
# links without a GPU); ON makes their absence an error; OFF skips it.
set(ENGRAM_HAVE_NCCL FALSE)
if(NOT ENGRAM_WITH_NCCL STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
  if(CUDAToolkit_FOUND AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(ENGRAM_HAVE_NCCL TRUE)
    file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" _nccl_ver REGEX "#define NCCL_(MAJOR|MINOR|PATCH) ")
    string(REGEX REPLACE ".*NCCL_MAJOR ([0-9]+).*NCCL_MINOR ([0-9]+).*NCCL_PATCH ([0-9]+).*" "\\1.\\2.\\3" NCCL_VERSION "${_nccl_ver}")
    add_library(engram_nccl INTERFACE)
    target_include_directories(engram_nccl INTERFACE ${NCCL_INCLUDE_DIR})
    target_link_libraries(engram_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
    _engram_record("NCCL" TRUE "${NCCL_VERSION} (CUDA ${CUDAToolkit_VERSION})" "")
  elseif(ENGRAM_WITH_NCCL STREQUAL "ON")
    message(FATAL_ERROR "ENGRAM_WITH_NCCL=ON but the CUDA toolkit with NCCL was not found "
                        "(set CUDAToolkit_ROOT, or install the CUDA toolkit and libnccl-dev)")
  else()
    set(_ENGRAM_SUMMARY "${_ENGRAM_SUMMARY}  NCCL: not found (optional; install the CUDA toolkit with NCCL)\n")
  endif()
else()
  set(_ENGRAM_SUMMARY "${_ENGRAM_SUMMARY}  NCCL: off (ENGRAM_WITH_NCCL=OFF)\n")
endif()

function(engram_print_summary)
  message(STATUS "engram ${PROJECT_VERSION} configuration (${CMAKE_BUILD_TYPE}):\n${_ENGRAM_SUMMARY}")
  if(_ENGRAM_MISSING)
    message(FATAL_ERROR "missing dependencies; run tools/setup.sh or: apt-get install${_ENGRAM_MISSING}")
  endif()
endfunction()
