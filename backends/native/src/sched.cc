// Scheduling primitives for ranks: sched_yield in spin loops, and CPU affinity for `--bind-to core`.

#include <dirent.h>
#include <sched.h>

#include <cstdlib>
#include <vector>

#include "addon.h"
#include "args.h"
#include "errors.h"

namespace vmcomm {
namespace {

napi_value SchedYield(napi_env env, napi_callback_info info) {
  sched_yield();
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

// sched_setaffinity on every thread of this process (Node's own threads included); threads created
// later inherit the mask of the thread that creates them. ESRCH (a thread that just ended) is skipped.
int SetProcessAffinity(const cpu_set_t& set) {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return errno;
  int err = 0;
  while (struct dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    pid_t tid = static_cast<pid_t>(std::atoi(entry->d_name));
    if (sched_setaffinity(tid, sizeof set, &set) != 0 && errno != ESRCH) {
      err = errno;
      break;
    }
  }
  closedir(tasks);
  return err;
}

// setAffinity(cpus, scope = 'thread'): 'thread' is sched_setaffinity(0, …), the calling thread;
// 'process' is every thread of the process.
napi_value SetAffinity(napi_env env, napi_callback_info info) {
  Args args;
  if (!GetArgs(env, info, "setAffinity", args)) return nullptr;
  bool is_array = false;
  napi_is_array(env, args.argv[0], &is_array);
  if (!is_array) return ThrowTypeArg(env, Where(args, "cpus") + " must be an array of CPU numbers, got " + Got(env, args.argv[0]));
  bool whole_process = false;
  if (!IsUndefined(env, args.argv[1])) {
    std::string scope;
    if (!GetString(env, args, 1, "scope", scope)) return nullptr;
    if (scope != "thread" && scope != "process") return ThrowRangeArg(env, Where(args, "scope") + " must be 'thread' or 'process', got '" + scope + "'");
    whole_process = scope == "process";
  }
  uint32_t count = 0;
  napi_get_array_length(env, args.argv[0], &count);
  if (count == 0) return ThrowRangeArg(env, Where(args, "cpus") + " must name at least one CPU");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t i = 0; i < count; ++i) {
    Args element = args;
    VMCOMM_NAPI(env, napi_get_element(env, args.argv[0], i, &element.argv[0]));
    double cpu = 0;
    if (!GetInteger(env, element, 0, "cpus[i]", 0, CPU_SETSIZE - 1, cpu)) return nullptr;
    CPU_SET(static_cast<int>(cpu), &set);
  }
  int err = whole_process ? SetProcessAffinity(set) : (sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno);
  if (err != 0) return ThrowErrno(env, err, "sched_setaffinity", "", err == EINVAL ? "none of the CPUs is online and allowed" : "");
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

// getAffinity(): the calling thread's CPUs, ascending.
napi_value GetAffinity(napi_env env, napi_callback_info info) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return ThrowErrno(env, errno, "sched_getaffinity");
  napi_value result;
  VMCOMM_NAPI(env, napi_create_array(env, &result));
  uint32_t n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    napi_value value;
    VMCOMM_NAPI(env, napi_create_int32(env, cpu, &value));
    VMCOMM_NAPI(env, napi_set_element(env, result, n++, value));
  }
  return result;
}

}  // namespace

napi_value ExportSched(napi_env env, napi_value exports, AddonData* data) {
  static const Binding bindings[] = {
      {"schedYield", SchedYield},
      {"setAffinity", SetAffinity},
      {"getAffinity", GetAffinity},
  };
  return DefineBindings(env, exports, data, bindings, sizeof bindings / sizeof bindings[0]);
}

}  // namespace vmcomm
