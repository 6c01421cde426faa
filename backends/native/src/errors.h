// Errors leave C++ as plain JS errors with a string `code` and a numeric `errno` (positive, as in
// errno.h; Node's own fs errors carry the negative libuv form instead). TypeScript (native.ts and the
// transports) wraps them in VmcommError with the original as `cause`. Every helper here throws and
// returns nullptr, so a binding can `return ThrowErrno(...)`.
#pragma once

#include <node_api.h>
#include <uv.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace vmcomm {

// "ENOSPC" for ENOSPC. libuv's table (linked into node) knows every errno Node reports; on Unix its
// codes are the negated errno values.
inline std::string ErrnoName(int err) {
  char name[64];
  uv_err_name_r(-err, name, sizeof name);
  if (std::strncmp(name, "Unknown", 7) == 0) std::snprintf(name, sizeof name, "ERRNO_%d", err);
  return name;
}

inline void SetNumber(napi_env env, napi_value object, const char* key, double value) {
  napi_value v;
  if (napi_create_double(env, value, &v) == napi_ok) napi_set_named_property(env, object, key, v);
}

inline void SetString(napi_env env, napi_value object, const char* key, const std::string& value) {
  napi_value v;
  if (napi_create_string_utf8(env, value.c_str(), value.size(), &v) == napi_ok) napi_set_named_property(env, object, key, v);
}

enum class ErrorKind { kError, kTypeError, kRangeError };

// Throws `kind` with `code`, `errno` and `message`; returns nullptr.
inline napi_value ThrowCoded(napi_env env, ErrorKind kind, const std::string& code, int err, const std::string& message) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return nullptr;
  napi_value js_code, js_message, error;
  if (napi_create_string_utf8(env, code.c_str(), code.size(), &js_code) != napi_ok ||
      napi_create_string_utf8(env, message.c_str(), message.size(), &js_message) != napi_ok) {
    return nullptr;
  }
  napi_status status = kind == ErrorKind::kTypeError    ? napi_create_type_error(env, js_code, js_message, &error)
                       : kind == ErrorKind::kRangeError ? napi_create_range_error(env, js_code, js_message, &error)
                                                        : napi_create_error(env, js_code, js_message, &error);
  if (status != napi_ok) return nullptr;
  SetNumber(env, error, "errno", err);
  napi_throw(env, error);
  return nullptr;
}

// A failed system call: "ENOSPC: no space left on device, posix_fallocate '/dev/shm/x'" with `code`,
// `errno`, `syscall` and, when given, `path`. `detail` is appended after the path (what it means here).
inline napi_value ThrowErrno(napi_env env, int err, const char* syscall, const std::string& path = std::string(),
                             const std::string& detail = std::string()) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return nullptr;
  // libuv's wording, as in Node's own errors ("no space left on device"); the C library's otherwise.
  char buffer[256];
  uv_strerror_r(-err, buffer, sizeof buffer);
  const char* text = std::strncmp(buffer, "Unknown", 7) == 0 ? strerror_r(err, buffer, sizeof buffer) : buffer;
  std::string code = ErrnoName(err);
  std::string message = code + ": " + text + ", " + syscall;
  if (!path.empty()) message += " '" + path + "'";
  if (!detail.empty()) message += ": " + detail;
  napi_value js_code, js_message, error;
  if (napi_create_string_utf8(env, code.c_str(), code.size(), &js_code) != napi_ok ||
      napi_create_string_utf8(env, message.c_str(), message.size(), &js_message) != napi_ok ||
      napi_create_error(env, js_code, js_message, &error) != napi_ok) {
    return nullptr;
  }
  SetNumber(env, error, "errno", err);
  SetString(env, error, "syscall", syscall);
  if (!path.empty()) SetString(env, error, "path", path);
  napi_throw(env, error);
  return nullptr;
}

// An argument of the wrong type: TypeError, code ERR_INVALID_ARG_TYPE, errno EINVAL.
inline napi_value ThrowTypeArg(napi_env env, const std::string& message) {
  return ThrowCoded(env, ErrorKind::kTypeError, "ERR_INVALID_ARG_TYPE", EINVAL, message);
}

// An argument of the right type but out of range: RangeError, code ERR_OUT_OF_RANGE, errno EINVAL.
inline napi_value ThrowRangeArg(napi_env env, const std::string& message) {
  return ThrowCoded(env, ErrorKind::kRangeError, "ERR_OUT_OF_RANGE", EINVAL, message);
}

// A Node-API call failed where it should not (out of memory, a pending exception): make sure something
// is thrown so JS never sees a silent `undefined`.
inline napi_value ThrowInternal(napi_env env, const char* what) {
  const napi_extended_error_info* info = nullptr;
  napi_get_last_error_info(env, &info);
  std::string message = std::string("vmcomm native: ") + what + " failed";
  if (info != nullptr && info->error_message != nullptr) message += std::string(": ") + info->error_message;
  return ThrowCoded(env, ErrorKind::kError, "ERR_VMCOMM_NATIVE", EFAULT, message);
}

}  // namespace vmcomm

// Runs a Node-API call; on failure throws (unless an exception is already pending) and returns nullptr
// from the enclosing binding.
#define VMCOMM_NAPI(env, call)                      \
  do {                                              \
    if ((call) != napi_ok) {                        \
      return ::vmcomm::ThrowInternal((env), #call); \
    }                                               \
  } while (0)
