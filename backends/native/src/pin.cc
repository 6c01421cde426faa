// Single copy between threads of one process: a thread *pins* a view (the process keeps its memory
// alive, whatever happens to the JS objects), publishes the pin's number, and another thread copies
// from or into that memory with memcpy — one copy, no kernel, no crossing of isolates.
//
// Why pins and not raw addresses: a raw address is only as good as the sender's promise to keep its
// buffer. A buffer transferred away (postMessage, structuredClone) and collected, or a worker that is
// terminated mid-message, would leave a raw address pointing at freed or unmapped memory, and a
// memcpy from it crashes the process. A pin holds the view's std::shared_ptr<v8::BackingStore>, so
// the memory lives until the pin is released, even after a detach (the backing store then belongs to
// the new ArrayBuffer, or to nobody but the pin). The copy takes its own reference under the lock and
// copies outside it, so a concurrent unpin cannot free memory under a memcpy, and two copies into or
// out of one pin run at once (the cooperative copy: both threads copy a half).
//
// Bounds are checked here, against the length the view had when pinned: a corrupt offset or length
// from shared memory becomes EFAULT, never an out-of-bounds access. A pin's number is its slot (low
// 32 bits) and a random tag (the 21 bits above, so the number stays a safe integer): a number read
// from a corrupt descriptor names another live pin only by guessing its tag. An unknown pin
// (released, its thread ended, or a wrong tag) is ESRCH. Pins belong to the environment (main
// thread or worker) that made them and are released when it ends (ReleasePinsOf, from the addon's
// instance-data finalizer).
//
// What a pin keeps alive is memory V8 owns: every ArrayBuffer and Buffer that JavaScript creates. An
// external buffer a native addon made (napi_create_external_arraybuffer) is freed by that addon's own
// cleanup when its thread ends, pinned or not.

#include <cstring>
#include <mutex>
#include <random>
#include <unordered_map>

#include "addon.h"
#include "args.h"
#include "errors.h"

namespace vmcomm {
namespace {

struct Pin {
  std::shared_ptr<v8::BackingStore> store;
  uint8_t* data;
  size_t length;
  const AddonData* owner;
  uint32_t tag;
};

struct PinTable {
  std::mutex mutex;
  std::unordered_map<uint32_t, Pin> pins;
  uint32_t next = 1;
  std::mt19937 random{std::random_device{}()};
};

// A pin number: slot + tag × 2^32, tag in [1, 2^21 − 1] (a safe integer).
constexpr double kTagUnit = 4294967296.0;

// Leaked on purpose, like the mapping registry: finalizers may run during process teardown.
PinTable& ThePins() {
  static PinTable* table = new PinTable();
  return *table;
}

// A pin number argument: an integer in [1, 2^53 − 1], split into slot and tag.
bool GetPinId(napi_env env, const Args& args, size_t i, uint32_t& id, uint32_t& tag) {
  double value = 0;
  if (!GetInteger(env, args, i, "pin", 1, 9007199254740991.0, value)) return false;
  uint64_t number = static_cast<uint64_t>(value);
  id = static_cast<uint32_t>(number & 0xffffffffu);
  tag = static_cast<uint32_t>(number >> 32);
  return true;
}

// pin(view): a number naming the view's memory for copyFromPin/copyToPin in any thread of this process.
napi_value PinView(napi_env env, napi_callback_info info) {
  Args args;
  uint8_t* raw = nullptr;
  size_t length = 0;
  if (!GetArgs(env, info, "pin", args) || !GetView(env, args, 0, "view", raw, length)) return nullptr;
  v8::Local<v8::ArrayBufferView> view = ToV8(args.argv[0]).As<v8::ArrayBufferView>();
  // Buffer() moves a small on-heap typed array off the heap, so its bytes stay where the pin says.
  std::shared_ptr<v8::BackingStore> store = view->Buffer()->GetBackingStore();
  if (store->IsResizableByUserJavaScript()) {
    return ThrowTypeArg(env, "pin: view is over a resizable buffer, whose memory may shrink under a copy");
  }
  uint8_t* data = static_cast<uint8_t*>(store->Data()) + view->ByteOffset();
  PinTable& table = ThePins();
  uint32_t id;
  uint32_t tag;
  {
    std::lock_guard<std::mutex> lock(table.mutex);
    if (table.pins.size() >= 0xffff0000u) return ThrowCoded(env, ErrorKind::kError, "EMFILE", EMFILE, "pin: too many pins held");
    id = NextFreeId(table.pins, table.next);
    tag = 1 + table.random() % 0x1fffffu;
    table.pins.emplace(id, Pin{std::move(store), data, length, static_cast<const AddonData*>(args.data), tag});
  }
  napi_value result;
  VMCOMM_NAPI(env, napi_create_double(env, static_cast<double>(tag) * kTagUnit + static_cast<double>(id), &result));
  return result;
}

// unpin(id): true when the pin was held (and is released now).
napi_value Unpin(napi_env env, napi_callback_info info) {
  Args args;
  uint32_t id = 0, tag = 0;
  if (!GetArgs(env, info, "unpin", args) || !GetPinId(env, args, 0, id, tag)) return nullptr;
  std::shared_ptr<v8::BackingStore> released;  // dropped after the lock: a deleter may take other locks
  bool held = false;
  {
    PinTable& table = ThePins();
    std::lock_guard<std::mutex> lock(table.mutex);
    auto it = table.pins.find(id);
    if (it != table.pins.end() && it->second.tag == tag) {
      released = std::move(it->second.store);
      table.pins.erase(it);
      held = true;
    }
  }
  released.reset();
  napi_value result;
  VMCOMM_NAPI(env, napi_get_boolean(env, held, &result));
  return result;
}

// copyFromPin(id, offset, into) / copyToPin(id, offset, from): bytes copied, at most what the pin has
// from `offset` on (0 at its end).
napi_value Copy(napi_env env, napi_callback_info info, bool to_pin) {
  const char* fn = to_pin ? "copyToPin" : "copyFromPin";
  Args args;
  uint32_t id = 0, tag = 0;
  double offset = 0;
  uint8_t* local = nullptr;
  size_t length = 0;
  if (!GetArgs(env, info, fn, args) || !GetPinId(env, args, 0, id, tag) || !GetInteger(env, args, 1, "offset", 0, 9007199254740991.0, offset) ||
      !GetView(env, args, 2, to_pin ? "from" : "into", local, length)) {
    return nullptr;
  }
  std::shared_ptr<v8::BackingStore> hold;
  uint8_t* data = nullptr;
  size_t pinned = 0;
  {
    PinTable& table = ThePins();
    std::lock_guard<std::mutex> lock(table.mutex);
    auto it = table.pins.find(id);
    if (it == table.pins.end() || it->second.tag != tag) {
      return ThrowCoded(env, ErrorKind::kError, "ESRCH", ESRCH,
                        std::string(fn) + ": no pin " + std::to_string(static_cast<uint64_t>(tag) << 32 | id) + " (released, or its thread ended)");
    }
    hold = it->second.store;
    data = it->second.data;
    pinned = it->second.length;
  }
  size_t at = static_cast<size_t>(offset);
  if (offset > static_cast<double>(pinned)) {
    return ThrowCoded(env, ErrorKind::kError, "EFAULT", EFAULT,
                      std::string(fn) + ": offset " + std::to_string(at) + " is beyond the " + std::to_string(pinned) + " bytes of its pin");
  }
  size_t n = pinned - at < length ? pinned - at : length;
  if (n > 0) {
    if (to_pin) std::memmove(data + at, local, n);
    else std::memmove(local, data + at, n);
  }
  napi_value result;
  VMCOMM_NAPI(env, napi_create_double(env, static_cast<double>(n), &result));
  return result;
}

napi_value CopyFromPin(napi_env env, napi_callback_info info) { return Copy(env, info, false); }
napi_value CopyToPin(napi_env env, napi_callback_info info) { return Copy(env, info, true); }

}  // namespace

void ReleasePinsOf(const AddonData* data) {
  std::unordered_map<uint32_t, Pin> released;  // freed after the lock
  {
    PinTable& table = ThePins();
    std::lock_guard<std::mutex> lock(table.mutex);
    released = TakeOwnedBy(table.pins, data);
  }
}

napi_value ExportPin(napi_env env, napi_value exports, AddonData* data) {
  static const Binding bindings[] = {
      {"pin", PinView},
      {"unpin", Unpin},
      {"copyFromPin", CopyFromPin},
      {"copyToPin", CopyToPin},
  };
  return DefineBindings(env, exports, data, bindings, sizeof bindings / sizeof bindings[0]);
}

}  // namespace vmcomm
