# Third-party libraries, all from Debian packages (scripts/install-deps.sh).
# Header-only forms are used where Debian offers them so that binaries carry no
# third-party shared libraries (they must run on hosts with other versions).
find_package(Threads REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(CLI11 REQUIRED)
if(BATON_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(BATON_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

# yaml-cpp: Debian ships a static archive beside the shared one; prefer it.
find_library(BATON_YAML_CPP_STATIC NAMES libyaml-cpp.a)
if(BATON_YAML_CPP_STATIC)
  add_library(baton_yaml_cpp STATIC IMPORTED)
  set_target_properties(baton_yaml_cpp PROPERTIES IMPORTED_LOCATION ${BATON_YAML_CPP_STATIC})
  get_target_property(_yaml_inc yaml-cpp INTERFACE_INCLUDE_DIRECTORIES)
  if(_yaml_inc)
    set_target_properties(baton_yaml_cpp PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_yaml_inc}")
  endif()
else()
  add_library(baton_yaml_cpp INTERFACE)
  target_link_libraries(baton_yaml_cpp INTERFACE yaml-cpp)
endif()

# One interface target for the whole project's third-party base.
add_library(baton_thirdparty INTERFACE)
target_link_libraries(baton_thirdparty INTERFACE
  Threads::Threads Boost::headers fmt::fmt-header-only spdlog::spdlog_header_only
  nlohmann_json::nlohmann_json)
target_compile_definitions(baton_thirdparty INTERFACE BOOST_ASIO_NO_DEPRECATED)
