// Single copy between processes (Linux cross-memory attach): process_vm_readv/writev, the address of a
// view to publish, Yama's ptracer opt-in, and the PID namespace id the transport compares before using
// any of it (a pid means the same process only inside one PID namespace).
//
// The kernel allows CMA when the caller may ptrace the target (same uid and a dumpable target, or
// CAP_SYS_PTRACE; under Yama ptrace_scope 1 also the target's PR_SET_PTRACER). When it refuses, the
// error (EPERM, ESRCH, EFAULT…) is thrown with its code and the transport falls back to copying
// through shared memory. VMCOMM_CMA=0 turns it off: capability.cma is false and both calls throw ENOTSUP.

#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fstream>

#include "addon.h"
#include "args.h"
#include "errors.h"

#ifndef PR_SET_PTRACER
#define PR_SET_PTRACER 0x59616d61
#endif
#ifndef PR_SET_PTRACER_ANY
#define PR_SET_PTRACER_ANY (static_cast<unsigned long>(-1))
#endif

namespace vmcomm {
namespace {

napi_value Transfer(napi_env env, napi_callback_info info, bool write) {
  const char* fn = write ? "cmaWrite" : "cmaRead";
  const char* syscall_name = write ? "process_vm_writev" : "process_vm_readv";
  Args args;
  if (!GetArgs(env, info, fn, args)) return nullptr;
  double pid = 0;
  uint64_t remote = 0;
  uint8_t* data = nullptr;
  size_t length = 0;
  if (!GetInteger(env, args, 0, "pid", 1, 2147483647.0, pid) || !GetAddress(env, args, 1, "remote", remote) ||
      !GetView(env, args, 2, write ? "from" : "into", data, length)) {
    return nullptr;
  }
  if (static_cast<AddonData*>(args.data)->cma_disabled) {
    return ThrowCoded(env, ErrorKind::kError, "ENOTSUP", ENOTSUP, std::string(fn) + ": single copy is turned off (VMCOMM_CMA=0)");
  }
  ssize_t moved = 0;
  if (length > 0) {
    struct iovec local = {data, length};
    struct iovec far = {reinterpret_cast<void*>(static_cast<uintptr_t>(remote)), length};
    moved = write ? process_vm_writev(static_cast<pid_t>(pid), &local, 1, &far, 1, 0)
                  : process_vm_readv(static_cast<pid_t>(pid), &local, 1, &far, 1, 0);
    if (moved < 0) {
      int err = errno;
      return ThrowErrno(env, err, syscall_name, "", err == EPERM ? "the kernel refused (not the same user, or ptrace is restricted)" : "");
    }
  }
  napi_value result;
  VMCOMM_NAPI(env, napi_create_double(env, static_cast<double>(moved), &result));
  return result;
}

// cmaRead(pid, remote, into): bytes read (fewer than asked when the remote range ends early; the
// kernel also caps one call at about 2 GiB).
napi_value CmaRead(napi_env env, napi_callback_info info) { return Transfer(env, info, false); }

// cmaWrite(pid, remote, from): bytes written.
napi_value CmaWrite(napi_env env, napi_callback_info info) { return Transfer(env, info, true); }

// addressOf(view): the process-virtual address of the view's first byte, as a bigint.
napi_value AddressOf(napi_env env, napi_callback_info info) {
  Args args;
  uint8_t* data = nullptr;
  size_t length = 0;
  if (!GetArgs(env, info, "addressOf", args) || !GetView(env, args, 0, "view", data, length)) return nullptr;
  napi_value result;
  VMCOMM_NAPI(env, napi_create_bigint_uint64(env, reinterpret_cast<uintptr_t>(data), &result));
  return result;
}

// allowPtrace(): where Yama is loaded, lets any process of this user ptrace (and so CMA) this one.
// True when set or not needed; false when Yama's scope (2: admin only, 3: none) makes it useless or
// the call fails.
napi_value AllowPtrace(napi_env env, napi_callback_info info) {
  bool allowed = true;
  std::ifstream scope_file("/proc/sys/kernel/yama/ptrace_scope");
  int scope = 0;
  if (scope_file >> scope) {
    allowed = scope < 2 && prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0) == 0;
  }
  napi_value result;
  VMCOMM_NAPI(env, napi_get_boolean(env, allowed, &result));
  return result;
}

// pidNamespaceId(): readlink /proc/self/ns/pid, e.g. "pid:[4026531836]".
napi_value PidNamespaceId(napi_env env, napi_callback_info info) {
  char link[128];
  ssize_t n = readlink("/proc/self/ns/pid", link, sizeof link - 1);
  if (n < 0) return ThrowErrno(env, errno, "readlink", "/proc/self/ns/pid");
  napi_value result;
  VMCOMM_NAPI(env, napi_create_string_utf8(env, link, static_cast<size_t>(n), &result));
  return result;
}

}  // namespace

// The system calls exist and are allowed: read one byte of our own memory.
bool ProbeCma() {
  char from = 1, into = 0;
  struct iovec local = {&into, 1};
  struct iovec far = {&from, 1};
  return process_vm_readv(getpid(), &local, 1, &far, 1, 0) == 1 && into == 1;
}

napi_value ExportCma(napi_env env, napi_value exports, AddonData* data) {
  static const Binding bindings[] = {
      {"cmaRead", CmaRead},
      {"cmaWrite", CmaWrite},
      {"addressOf", AddressOf},
      {"allowPtrace", AllowPtrace},
      {"pidNamespaceId", PidNamespaceId},
  };
  return DefineBindings(env, exports, data, bindings, sizeof bindings / sizeof bindings[0]);
}

}  // namespace vmcomm
