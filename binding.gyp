# The native addon of vmcomm (backends/native/). Built by `node scripts/build-addon.mjs` (the package's
# `install` script) into build/Release/vmcomm_native.node; only backends/native/native.ts loads it.
# Linux only: the addon is mmap, futex and process_vm_readv/writev; elsewhere the script skips the build.
{
  "targets": [
    {
      "target_name": "vmcomm_native",
      "sources": [
        "backends/native/src/module.cc",
        "backends/native/src/mapping.cc",
        "backends/native/src/futex-waiter.cc",
        "backends/native/src/cma.cc",
        "backends/native/src/sched.cc",
        "backends/native/src/pin.cc",
        "backends/native/src/thread-end.cc"
      ],
      # Node-API 8: instance data, threadsafe functions, cleanup hooks, object freeze.
      "defines": ["NAPI_VERSION=8"],
      # node's common.gypi builds Release with -O3, C++17 (gnu++17), no exceptions, no RTTI, -pthread.
      "cflags!": ["-O3"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-cast-function-type"],
      "cflags_cc": ["-std=gnu++17"]
    }
  ]
}
