// Argument checks shared by every binding. Each getter returns false after throwing a TypeError
// (ERR_INVALID_ARG_TYPE) or RangeError (ERR_OUT_OF_RANGE) that names the function and the argument,
// so a binding reads `if (!GetX(...)) return nullptr;`. Nothing reaches a system call unchecked.
#pragma once

#include <node_api.h>
#include <v8.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "errors.h"

namespace vmcomm {

// --- napi_value <-> v8::Local ------------------------------------------------------------------------
// Node-API cannot make a SharedArrayBuffer over foreign memory or read one's backing store in Node 20,
// so those two places use V8 directly. In Node a napi_value *is* a v8::Local's slot pointer (see
// JsValueFromV8LocalValue in node/src/js_native_api_v8.h); these are the same conversions.
static_assert(sizeof(v8::Local<v8::Value>) == sizeof(napi_value), "v8::Local and napi_value differ in size");

inline v8::Local<v8::Value> ToV8(napi_value value) {
  v8::Local<v8::Value> local;
  std::memcpy(static_cast<void*>(&local), &value, sizeof value);
  return local;
}

inline napi_value FromV8(v8::Local<v8::Value> local) { return reinterpret_cast<napi_value>(*local); }

// --- arguments --------------------------------------------------------------------------------------
constexpr size_t kMaxArgs = 6;

struct Args {
  napi_value argv[kMaxArgs];
  size_t argc = kMaxArgs;
  napi_value self = nullptr;
  void* data = nullptr;
  // `fn.argName`, e.g. "createSharedFile(bytes)", for messages.
  const char* fn = "";
};

// Fills `args`; missing arguments read as undefined (and then fail their own type check).
inline bool GetArgs(napi_env env, napi_callback_info info, const char* fn, Args& args) {
  args.fn = fn;
  args.argc = kMaxArgs;
  if (napi_get_cb_info(env, info, &args.argc, args.argv, &args.self, &args.data) != napi_ok) {
    ThrowInternal(env, "napi_get_cb_info");
    return false;
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  for (size_t i = args.argc; i < kMaxArgs; ++i) args.argv[i] = undefined;
  return true;
}

inline std::string Where(const Args& args, const char* name) { return std::string(args.fn) + ": " + name; }

inline napi_valuetype TypeOf(napi_env env, napi_value value) {
  napi_valuetype type = napi_undefined;
  napi_typeof(env, value, &type);
  return type;
}

inline const char* TypeName(napi_valuetype type) {
  switch (type) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_object: return "an object";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_bigint: return "a bigint";
  }
  return "an unknown value";
}

inline std::string Got(napi_env env, napi_value value) {
  napi_valuetype type = TypeOf(env, value);
  if (type == napi_number) {
    double d = 0;
    napi_get_value_double(env, value, &d);
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    char text[64];
    std::snprintf(text, sizeof text, "%.17g", d);
    return text;
  }
  return TypeName(type);
}

inline bool IsUndefined(napi_env env, napi_value value) { return TypeOf(env, value) == napi_undefined; }

// A string.
inline bool GetString(napi_env env, const Args& args, size_t i, const char* name, std::string& out) {
  napi_value value = args.argv[i];
  if (TypeOf(env, value) != napi_string) {
    ThrowTypeArg(env, Where(args, name) + " must be a string, got " + Got(env, value));
    return false;
  }
  size_t length = 0;
  napi_get_value_string_utf8(env, value, nullptr, 0, &length);
  out.assign(length, '\0');
  if (length > 0) napi_get_value_string_utf8(env, value, &out[0], length + 1, &length);
  return true;
}

// A non-empty string without NUL bytes (it becomes a C path).
inline bool GetPath(napi_env env, const Args& args, size_t i, const char* name, std::string& out) {
  if (!GetString(env, args, i, name, out)) return false;
  if (out.empty() || out.find('\0') != std::string::npos) {
    ThrowTypeArg(env, Where(args, name) + " must be a non-empty path without NUL bytes");
    return false;
  }
  return true;
}

// An integral number in [min, max] (max at most 2^53 - 1, so the double is exact).
inline bool GetInteger(napi_env env, const Args& args, size_t i, const char* name, double min, double max, double& out) {
  napi_value value = args.argv[i];
  if (TypeOf(env, value) != napi_number) {
    ThrowTypeArg(env, Where(args, name) + " must be a number, got " + Got(env, value));
    return false;
  }
  napi_get_value_double(env, value, &out);
  if (!std::isfinite(out) || std::floor(out) != out || out < min || out > max) {
    char range[96];
    std::snprintf(range, sizeof range, "an integer in [%.17g, %.17g]", min, max);
    ThrowRangeArg(env, Where(args, name) + " must be " + range + ", got " + Got(env, value));
    return false;
  }
  return true;
}

inline bool GetBool(napi_env env, const Args& args, size_t i, const char* name, bool& out) {
  napi_value value = args.argv[i];
  if (TypeOf(env, value) != napi_boolean) {
    ThrowTypeArg(env, Where(args, name) + " must be a boolean, got " + Got(env, value));
    return false;
  }
  napi_get_value_bool(env, value, &out);
  return true;
}

// A boolean property of an options object (required).
inline bool GetBoolOption(napi_env env, const Args& args, napi_value options, const char* name, bool& out) {
  napi_value value;
  if (napi_get_named_property(env, options, name, &value) != napi_ok) return false;  // a throwing getter
  if (TypeOf(env, value) != napi_boolean) {
    ThrowTypeArg(env, Where(args, "options.") + name + " must be a boolean, got " + Got(env, value));
    return false;
  }
  napi_get_value_bool(env, value, &out);
  return true;
}

// A bigint that fits in 64 bits unsigned (a process-virtual address).
inline bool GetAddress(napi_env env, const Args& args, size_t i, const char* name, uint64_t& out) {
  napi_value value = args.argv[i];
  if (TypeOf(env, value) != napi_bigint) {
    ThrowTypeArg(env, Where(args, name) + " must be a bigint, got " + Got(env, value));
    return false;
  }
  bool lossless = false;
  napi_get_value_bigint_uint64(env, value, &out, &lossless);
  if (!lossless) {
    ThrowRangeArg(env, Where(args, name) + " must be a bigint in [0, 2^64 - 1]");
    return false;
  }
  return true;
}

// Any ArrayBufferView (TypedArray, DataView, Buffer): its first byte and length. A detached buffer has
// no memory and is refused.
inline bool GetView(napi_env env, const Args& args, size_t i, const char* name, uint8_t*& data, size_t& length) {
  napi_value value = args.argv[i];
  bool is_typed = false, is_view = false;
  napi_is_typedarray(env, value, &is_typed);
  if (!is_typed) napi_is_dataview(env, value, &is_view);
  void* raw = nullptr;
  length = 0;
  if (is_typed) {
    napi_typedarray_type type;
    size_t count = 0, offset = 0;
    napi_value buffer;
    if (napi_get_typedarray_info(env, value, &type, &count, &raw, &buffer, &offset) != napi_ok) {
      ThrowInternal(env, "napi_get_typedarray_info");
      return false;
    }
    length = ToV8(value).As<v8::ArrayBufferView>()->ByteLength();
  } else if (is_view) {
    napi_value buffer;
    size_t offset = 0;
    if (napi_get_dataview_info(env, value, &length, &raw, &buffer, &offset) != napi_ok) {
      ThrowInternal(env, "napi_get_dataview_info");
      return false;
    }
  } else {
    ThrowTypeArg(env, Where(args, name) + " must be an ArrayBufferView (TypedArray, DataView or Buffer), got " + Got(env, value));
    return false;
  }
  v8::Local<v8::ArrayBufferView> view = ToV8(value).As<v8::ArrayBufferView>();
  if (view->Buffer()->WasDetached()) {
    ThrowTypeArg(env, Where(args, name) + " is over a detached ArrayBuffer");
    return false;
  }
  data = static_cast<uint8_t*>(raw);
  return true;
}

// A SharedArrayBuffer: its backing store (held by the caller for as long as it uses the memory) and
// current length.
inline bool GetShared(napi_env env, const Args& args, size_t i, const char* name, std::shared_ptr<v8::BackingStore>& store,
                      size_t& length) {
  v8::Local<v8::Value> value = ToV8(args.argv[i]);
  if (value.IsEmpty() || !value->IsSharedArrayBuffer()) {
    ThrowTypeArg(env, Where(args, name) + " must be a SharedArrayBuffer, got " + Got(env, args.argv[i]));
    return false;
  }
  v8::Local<v8::SharedArrayBuffer> sab = value.As<v8::SharedArrayBuffer>();
  store = sab->GetBackingStore();
  length = sab->ByteLength();
  return true;
}

// A 32-bit futex word inside a SharedArrayBuffer: offset aligned to 4 and the whole word in range.
inline bool GetWord(napi_env env, const Args& args, size_t sab_index, size_t offset_index, std::shared_ptr<v8::BackingStore>& store,
                    uint32_t*& word) {
  size_t length = 0;
  if (!GetShared(env, args, sab_index, "sab", store, length)) return false;
  double offset = 0;
  if (!GetInteger(env, args, offset_index, "byteOffset", 0, 9007199254740991.0, offset)) return false;
  if (static_cast<uint64_t>(offset) % 4 != 0 || length < 4 || static_cast<uint64_t>(offset) > length - 4) {
    char text[160];
    std::snprintf(text, sizeof text, " must be a multiple of 4 with 4 bytes in the buffer (byteLength %zu), got %.17g", length, offset);
    ThrowRangeArg(env, Where(args, "byteOffset") + text);
    return false;
  }
  word = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(store->Data()) + static_cast<size_t>(offset));
  return true;
}

}  // namespace vmcomm
