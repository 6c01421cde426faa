// vmcomm's native addon: registers the bindings and `capability`. Everything with behaviour (options,
// retries, fallbacks, error classes) lives in TypeScript; backends/native/native.ts declares exactly
// what this exports.
//
// Context-aware (NAPI_MODULE_INIT): each Node environment — the main thread and every worker thread —
// runs this init and gets its own AddonData. Process-wide state (the mapping registry, the fds of
// lockFile) is guarded by mutexes in its own file.

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "addon.h"
#include "errors.h"

namespace vmcomm {

napi_value DefineBindings(napi_env env, napi_value exports, AddonData* data, const Binding* bindings, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    napi_value fn;
    VMCOMM_NAPI(env, napi_create_function(env, bindings[i].name, NAPI_AUTO_LENGTH, bindings[i].callback, data, &fn));
    VMCOMM_NAPI(env, napi_set_named_property(env, exports, bindings[i].name, fn));
  }
  return exports;
}

namespace {

// process.env[name] of this environment, or "" when unset.
std::string EnvOf(napi_env env, const char* name) {
  napi_value global, process, vars, value;
  napi_valuetype type;
  if (napi_get_global(env, &global) != napi_ok || napi_get_named_property(env, global, "process", &process) != napi_ok ||
      napi_typeof(env, process, &type) != napi_ok || type != napi_object || napi_get_named_property(env, process, "env", &vars) != napi_ok ||
      napi_typeof(env, vars, &type) != napi_ok || type != napi_object || napi_get_named_property(env, vars, name, &value) != napi_ok ||
      napi_typeof(env, value, &type) != napi_ok || type != napi_string) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    return "";
  }
  char text[64];
  size_t length = 0;
  napi_get_value_string_utf8(env, value, text, sizeof text, &length);
  return std::string(text, length);
}

bool ProbeMemfd() {
  int fd = static_cast<int>(syscall(SYS_memfd_create, "vmcomm-probe", 1U /* MFD_CLOEXEC */));
  if (fd < 0) return false;
  close(fd);
  return true;
}

// Huge pages are reserved (HugePages_Total > 0), so MAP_HUGETLB mappings can succeed.
bool ProbeHugepages() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("HugePages_Total:", 0) == 0) return std::strtol(line.c_str() + 16, nullptr, 10) > 0;
  }
  return false;
}

napi_value Capability(napi_env env, const AddonData* data) {
  struct {
    const char* name;
    bool value;
  } features[] = {
      {"mmap", true},
      {"futex", ProbeFutex()},
      {"cma", !data->cma_disabled && ProbeCma()},
      {"memfd", ProbeMemfd()},
      {"hugepages", ProbeHugepages()},
      {"ivshmemDoorbell", false},  // no doorbell (ivshmem-doorbell eventfd) support yet
  };
  napi_value capability;
  VMCOMM_NAPI(env, napi_create_object(env, &capability));
  for (const auto& feature : features) {
    napi_value value;
    VMCOMM_NAPI(env, napi_get_boolean(env, feature.value, &value));
    VMCOMM_NAPI(env, napi_set_named_property(env, capability, feature.name, value));
  }
  VMCOMM_NAPI(env, napi_object_freeze(env, capability));
  return capability;
}

void FreeAddonData(napi_env env, void* raw, void* hint) {
  AddonData* data = static_cast<AddonData*>(raw);
  RunThreadEndStores(data);
  ReleaseLocksOf(data);
  ReleasePinsOf(data);
  if (data->waiter_class != nullptr) napi_delete_reference(env, data->waiter_class);
  delete data;
}

}  // namespace
}  // namespace vmcomm

NAPI_MODULE_INIT() {
  using namespace vmcomm;
  AddonData* data = new AddonData();
  data->cma_disabled = EnvOf(env, "VMCOMM_CMA") == "0";
  data->futex_waitv_disabled = EnvOf(env, "VMCOMM_FUTEX_WAITV") == "0";
  if (napi_set_instance_data(env, data, FreeAddonData, nullptr) != napi_ok) {
    delete data;
    return ThrowInternal(env, "napi_set_instance_data");
  }
  if (ExportMapping(env, exports, data) == nullptr || ExportFutex(env, exports, data) == nullptr || ExportCma(env, exports, data) == nullptr ||
      ExportSched(env, exports, data) == nullptr || ExportPin(env, exports, data) == nullptr ||
      ExportThreadEnd(env, exports, data) == nullptr) {
    return nullptr;
  }
  napi_value capability = Capability(env, data);
  if (capability == nullptr) return nullptr;
  VMCOMM_NAPI(env, napi_set_named_property(env, exports, "capability", capability));
  return exports;
}
