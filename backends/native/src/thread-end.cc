// What a thread says to its peers when it ends without saying goodbye.
//
// A worker that is terminated (`worker.terminate()`) runs no more JavaScript: no `exit` handler, no
// finally. Peers that share memory with it would then wait on it forever: a thread-rank's peers read
// its inbox state word to learn that it is gone. So a thread registers, while it is alive, a store to
// make on its behalf: `onThreadEnd(sab, byteOffset, expected, value)` compare-and-swaps the 32-bit
// word from `expected` to `value` when the thread's environment is torn down (terminate, exit, end
// of the process), unless `cancelOnThreadEnd` withdrew it first (the thread stopped cleanly).
//
// A registration holds the SharedArrayBuffer's backing store, so the word stays valid until then.

#include <mutex>
#include <unordered_map>

#include "addon.h"
#include "args.h"
#include "errors.h"

namespace vmcomm {
namespace {

struct Registration {
  std::shared_ptr<v8::BackingStore> store;
  int32_t* word;
  int32_t expected;
  int32_t value;
  const AddonData* owner;
};

struct Registrations {
  std::mutex mutex;
  std::unordered_map<uint32_t, Registration> entries;
  uint32_t next = 1;
};

// Leaked on purpose, as the other registries: finalizers may run during process teardown.
Registrations& TheRegistrations() {
  static Registrations* registrations = new Registrations();
  return *registrations;
}

// onThreadEnd(sab, byteOffset, expected, value): a number for cancelOnThreadEnd.
napi_value OnThreadEnd(napi_env env, napi_callback_info info) {
  Args args;
  std::shared_ptr<v8::BackingStore> store;
  uint32_t* word = nullptr;
  double expected = 0, value = 0;
  if (!GetArgs(env, info, "onThreadEnd", args) || !GetWord(env, args, 0, 1, store, word) ||
      !GetInteger(env, args, 2, "expected", -2147483648.0, 2147483647.0, expected) || !GetInteger(env, args, 3, "value", -2147483648.0, 2147483647.0, value)) {
    return nullptr;
  }
  Registrations& r = TheRegistrations();
  uint32_t id;
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    id = NextFreeId(r.entries, r.next);
    r.entries.emplace(id, Registration{std::move(store), reinterpret_cast<int32_t*>(word), static_cast<int32_t>(expected), static_cast<int32_t>(value),
                                       static_cast<const AddonData*>(args.data)});
  }
  napi_value result;
  VMCOMM_NAPI(env, napi_create_uint32(env, id, &result));
  return result;
}

// cancelOnThreadEnd(id): true when the registration was held (and is withdrawn now).
napi_value CancelOnThreadEnd(napi_env env, napi_callback_info info) {
  Args args;
  double id = 0;
  if (!GetArgs(env, info, "cancelOnThreadEnd", args) || !GetInteger(env, args, 0, "id", 1, 4294967295.0, id)) return nullptr;
  std::shared_ptr<v8::BackingStore> released;  // dropped after the lock
  bool held = false;
  {
    Registrations& r = TheRegistrations();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.entries.find(static_cast<uint32_t>(id));
    if (it != r.entries.end() && it->second.owner == args.data) {
      released = std::move(it->second.store);
      r.entries.erase(it);
      held = true;
    }
  }
  napi_value result;
  VMCOMM_NAPI(env, napi_get_boolean(env, held, &result));
  return result;
}

}  // namespace

void RunThreadEndStores(const AddonData* data) {
  std::unordered_map<uint32_t, Registration> mine;  // backing stores freed after the lock
  {
    Registrations& r = TheRegistrations();
    std::lock_guard<std::mutex> lock(r.mutex);
    mine = TakeOwnedBy(r.entries, data);
  }
  for (auto& [id, reg] : mine) {
    int32_t expected = reg.expected;
    __atomic_compare_exchange_n(reg.word, &expected, reg.value, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  }
}

napi_value ExportThreadEnd(napi_env env, napi_value exports, AddonData* data) {
  static const Binding bindings[] = {
      {"onThreadEnd", OnThreadEnd},
      {"cancelOnThreadEnd", CancelOnThreadEnd},
  };
  return DefineBindings(env, exports, data, bindings, sizeof bindings / sizeof bindings[0]);
}

}  // namespace vmcomm
