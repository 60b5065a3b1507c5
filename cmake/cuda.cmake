# BATON_CUDA=AUTO builds kernels/cuda when nvcc is found (default location
# /usr/local/cuda). Targets: sm_90a (Hopper, with wgmma) plus compute_80 PTX as
# the portable fallback that any newer GPU can JIT.
set(BATON_HAVE_CUDA OFF)
if(NOT BATON_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(_baton_nvcc nvcc PATHS /usr/local/cuda/bin NO_CACHE)
    if(_baton_nvcc)
      set(CMAKE_CUDA_COMPILER ${_baton_nvcc})
    endif()
  endif()
  if(CMAKE_CUDA_COMPILER)
    # Architectures are given as explicit -gencode flags below.
    set(CMAKE_CUDA_ARCHITECTURES OFF)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(BATON_HAVE_CUDA ON)
    # CMake 3.25 predates nvcc's C++20 support: teach it the flag.
    if(NOT "cuda_std_20" IN_LIST CMAKE_CUDA_COMPILE_FEATURES)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
      list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
      set(CMAKE_CUDA20_COMPILE_FEATURES cuda_std_20)
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(BATON_CUDA_GENCODE
      "-gencode=arch=compute_90a,code=sm_90a"
      "-gencode=arch=compute_80,code=compute_80")
    message(STATUS "Baton: CUDA backend enabled (${CMAKE_CUDA_COMPILER})")
  elseif(BATON_CUDA STREQUAL "ON")
    message(FATAL_ERROR "BATON_CUDA=ON but nvcc was not found")
  else()
    message(STATUS "Baton: nvcc not found, CUDA backend disabled")
  endif()
endif()
