// What the source files of the addon share: the per-instance data (one per Node environment: the main
// thread and each worker thread load the addon separately, so nothing JS-related is global) and each
// file's export function, called once per environment by module.cc.
#pragma once

#include <node_api.h>

#include <cstdint>
#include <utility>

namespace vmcomm {

// Settings read from `process.env` of the loading environment (a worker's own `env` option counts).
struct AddonData {
  // VMCOMM_CMA=0: single copy is turned off; cmaRead/cmaWrite throw ENOTSUP.
  bool cma_disabled = false;
  // VMCOMM_FUTEX_WAITV=0: waiters use the FUTEX_WAIT fallback even where futex_waitv exists (testing).
  bool futex_waitv_disabled = false;
  // The NativeWaiter class (createWaiter instantiates it).
  napi_ref waiter_class = nullptr;
};

// Every binding receives the AddonData as its callback data.
napi_value ExportMapping(napi_env env, napi_value exports, AddonData* data);  // mapping.cc
napi_value ExportFutex(napi_env env, napi_value exports, AddonData* data);    // futex-waiter.cc
napi_value ExportCma(napi_env env, napi_value exports, AddonData* data);      // cma.cc
napi_value ExportSched(napi_env env, napi_value exports, AddonData* data);    // sched.cc
napi_value ExportPin(napi_env env, napi_value exports, AddonData* data);      // pin.cc
napi_value ExportThreadEnd(napi_env env, napi_value exports, AddonData* data);  // thread-end.cc

// Closes the lockFile fds that `data`'s environment still holds (it is ending).
void ReleaseLocksOf(const AddonData* data);  // mapping.cc
// Releases the pins `data`'s environment still holds (it is ending).
void ReleasePinsOf(const AddonData* data);  // pin.cc
// Makes the stores `data`'s environment registered with onThreadEnd (it is ending).
void RunThreadEndStores(const AddonData* data);  // thread-end.cc

// Probes for `capability` (each a cheap system call, no side effects).
bool ProbeFutex();
bool ProbeCma();

// The next id in [1, 2^32 − 1] that `entries` does not hold, counting on from `next` and wrapping
// (the caller holds the lock that guards both).
template <typename Map>
uint32_t NextFreeId(const Map& entries, uint32_t& next) {
  uint32_t id;
  do {
    id = next++;
    if (next == 0) next = 1;
  } while (id == 0 || entries.count(id) != 0);
  return id;
}

// Removes from `entries` (a map whose values have an `owner`) those `data`'s environment owns and
// returns them, for the caller to drop after it released its lock (a destructor may take other locks).
template <typename Map>
Map TakeOwnedBy(Map& entries, const AddonData* data) {
  Map taken;
  for (auto it = entries.begin(); it != entries.end();) {
    if (it->second.owner == data) {
      taken.emplace(it->first, std::move(it->second));
      it = entries.erase(it);
    } else {
      ++it;
    }
  }
  return taken;
}

// Defines `count` functions on `exports`, each with `data` as its callback data.
struct Binding {
  const char* name;
  napi_callback callback;
};
napi_value DefineBindings(napi_env env, napi_value exports, AddonData* data, const Binding* bindings, size_t count);

}  // namespace vmcomm
