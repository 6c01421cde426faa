// Shared files as SharedArrayBuffers, and the flock that says a file is in use.
//
// A file is mapped once per process (keyed by st_dev/st_ino) and every SharedArrayBuffer over it, in
// any isolate of the process, is made from that mapping's one std::shared_ptr<v8::BackingStore>. V8
// allows several SharedArrayBuffer objects on one backing store (it is what postMessage of a SAB to a
// worker does). The registry holds only a weak_ptr, so the backing store dies with the last SAB that
// uses it; its deleter, and nothing else, munmaps. A view therefore can never outlive its memory.
//
// A request for more bytes than an existing mapping covers makes a new, longer mapping that replaces
// the registry entry; the old one lives until its SABs are gone. Both map the same pages, so every view
// stays coherent.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <utility>

#include "addon.h"
#include "args.h"
#include "errors.h"

namespace vmcomm {
namespace {

// The largest mapping we accept: a JS safe integer (V8's SharedArrayBuffer limit on 64-bit).
constexpr double kMaxBytes = 9007199254740991.0;

struct Mapping {
  dev_t dev;
  ino_t ino;
  void* address;
  size_t length;
};

struct Entry {
  Mapping* mapping;
  std::weak_ptr<v8::BackingStore> store;
};

struct Registry {
  std::mutex mutex;
  std::map<std::pair<dev_t, ino_t>, Entry> entries;
};

// Leaked on purpose: deleters may run during process teardown, after static destructors.
Registry& TheRegistry() {
  static Registry* registry = new Registry();
  return *registry;
}

// The BackingStore deleter: the last SharedArrayBuffer over `mapping` is gone (any thread).
void Unmap(void* data, size_t length, void* deleter_data) {
  Mapping* mapping = static_cast<Mapping*>(deleter_data);
  {
    Registry& registry = TheRegistry();
    std::lock_guard<std::mutex> lock(registry.mutex);
    auto it = registry.entries.find({mapping->dev, mapping->ino});
    if (it != registry.entries.end() && it->second.mapping == mapping) registry.entries.erase(it);
  }
  munmap(mapping->address, mapping->length);
  delete mapping;
}

napi_value NewSab(napi_env env, const std::shared_ptr<v8::BackingStore>& store) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::Local<v8::SharedArrayBuffer> sab = v8::SharedArrayBuffer::New(isolate, store);
  return FromV8(sab);
}

// The store of the live mapping of (dev, ino) that covers `length` bytes, or maps `fd` afresh and
// registers it. Returns an empty pointer with `err` set when mmap fails.
std::shared_ptr<v8::BackingStore> MapOnce(int fd, const struct stat& st, size_t length, int& err) {
  // Both declared before the lock, so both are released after it: dropping the last reference runs
  // the deleter, which takes the lock (a std::mutex, not recursive: released under it, it deadlocks
  // when a view over the cached mapping died meanwhile).
  std::shared_ptr<v8::BackingStore> store;
  std::shared_ptr<v8::BackingStore> unsuitable;
  Registry& registry = TheRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  auto key = std::make_pair(st.st_dev, st.st_ino);
  auto it = registry.entries.find(key);
  if (it != registry.entries.end()) {
    store = it->second.store.lock();
    size_t cached = it->second.mapping->length;
    // Reused when it covers the request, and, for a regular file, no more than the file has now: a
    // file another process shrank would leave bytes of the cached mapping past its end (SIGBUS).
    bool within_file = !S_ISREG(st.st_mode) || static_cast<off_t>(cached) <= st.st_size;
    if (store && cached >= length && within_file) return store;
    unsuitable = std::move(store);
  }
  void* address = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (address == MAP_FAILED) {
    err = errno;
    return store;
  }
  Mapping* mapping = new Mapping{st.st_dev, st.st_ino, address, length};
  std::unique_ptr<v8::BackingStore> unique = v8::SharedArrayBuffer::NewBackingStore(address, length, Unmap, mapping);
  store = std::move(unique);
  registry.entries[key] = Entry{mapping, store};
  return store;
}

// The fds lockFile handed out, each with the environment that took it. Process-wide, so a worker may
// unlock what the main thread locked, and unlockFile never closes an fd it does not own (such as 0);
// whatever an environment still holds when it ends (a worker exits or is terminated) is released then.
struct LockedFds {
  std::mutex mutex;
  std::map<int, const AddonData*> fds;
};

LockedFds& TheLockedFds() {
  static LockedFds* locked = new LockedFds();
  return *locked;
}

// The memory of a file already removed stays allocated while a mapping of it lives, and a mapping
// lives until the last SharedArrayBuffer over it is collected — which nothing prompts: V8 counts shared
// memory as none of its own. A process that starts and finalizes worlds one after another can so fill
// a tmpfs (ENOSPC) or its address space (ENOMEM) with memory nobody uses. On those errors, collect
// once (a full, synchronous GC of the calling isolate: its unreachable SharedArrayBuffers go, and a
// mapping no other isolate still uses is unmapped) and try again.
bool WorthCollecting(int err) { return err == ENOSPC || err == ENOMEM; }

void CollectUnreachableMappings() { v8::Isolate::GetCurrent()->LowMemoryNotification(); }

// MapOnce, and once more after collecting when the address space ran out. (Not inside MapOnce: the
// collection runs deleters, which take the registry lock MapOnce holds.)
std::shared_ptr<v8::BackingStore> MapCollecting(int fd, const struct stat& st, size_t length, int& err) {
  std::shared_ptr<v8::BackingStore> store = MapOnce(fd, st, length, err);
  if (store || !WorthCollecting(err)) return store;
  CollectUnreachableMappings();
  return MapOnce(fd, st, length, err);
}

int Allocate(int fd, double bytes) {
  int err;
  do {
    err = posix_fallocate(fd, 0, static_cast<off_t>(bytes));  // returns the error; EINTR on a signal
  } while (err == EINTR);
  return err;
}

bool GetBytes(napi_env env, const Args& args, size_t i, double& bytes) {
  return GetInteger(env, args, i, "bytes", 1, kMaxBytes, bytes);
}

// createSharedFile(path, bytes): O_CREAT|O_EXCL 0600, posix_fallocate (so a full tmpfs fails here and
// not with SIGBUS on first touch), map MAP_SHARED. On any failure the new file is removed.
napi_value CreateSharedFile(napi_env env, napi_callback_info info) {
  Args args;
  std::string path;
  double bytes = 0;
  if (!GetArgs(env, info, "createSharedFile", args) || !GetPath(env, args, 0, "path", path) || !GetBytes(env, args, 1, bytes)) return nullptr;
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ThrowErrno(env, errno, "open", path);
  auto fail = [&](int err, const char* syscall, const std::string& detail = std::string()) {
    unlink(path.c_str());
    close(fd);
    return ThrowErrno(env, err, syscall, path, detail);
  };
  if (fchmod(fd, 0600) != 0) return fail(errno, "fchmod");  // exactly 0600 whatever the umask
  int err = Allocate(fd, bytes);
  if (WorthCollecting(err)) {
    CollectUnreachableMappings();
    err = Allocate(fd, bytes);
  }
  if (err != 0) return fail(err, "posix_fallocate", err == ENOSPC ? "the file system cannot hold the requested bytes" : "");
  struct stat st;
  if (fstat(fd, &st) != 0) return fail(errno, "fstat");
  err = 0;
  std::shared_ptr<v8::BackingStore> store = MapCollecting(fd, st, static_cast<size_t>(bytes), err);
  if (!store) return fail(err, "mmap");
  close(fd);  // the mapping keeps the file
  return NewSab(env, store);
}

// openSharedFile(path, bytes?): maps an existing file read-write. Length: `bytes` when given (at most
// the size of a regular file; required for a device whose size reads as 0), else the file size. An
// existing mapping of the same inode that is long enough is reused, so the SAB may be longer than
// `bytes`.
napi_value OpenSharedFile(napi_env env, napi_callback_info info) {
  Args args;
  std::string path;
  if (!GetArgs(env, info, "openSharedFile", args) || !GetPath(env, args, 0, "path", path)) return nullptr;
  bool has_bytes = !IsUndefined(env, args.argv[1]);
  double bytes = 0;
  if (has_bytes && !GetBytes(env, args, 1, bytes)) return nullptr;
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, errno, "open", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "fstat", path);
  }
  double size = static_cast<double>(st.st_size);
  if (S_ISREG(st.st_mode) && has_bytes && bytes > size) {
    close(fd);
    char text[128];
    std::snprintf(text, sizeof text, " (%.17g) exceeds the size of the file (%.17g): '", bytes, size);
    return ThrowRangeArg(env, Where(args, "bytes") + text + path + "'");
  }
  if (!has_bytes) {
    if (st.st_size <= 0) {
      close(fd);
      return ThrowErrno(env, EINVAL, "mmap", path, S_ISREG(st.st_mode) ? "the file is empty" : "give `bytes` for a file whose size is unknown");
    }
    bytes = size;
  }
  int err = 0;
  std::shared_ptr<v8::BackingStore> store = MapCollecting(fd, st, static_cast<size_t>(bytes), err);
  close(fd);
  if (!store) return ThrowErrno(env, err, "mmap", path);
  return NewSab(env, store);
}

// lockFile(path, { exclusive, wait, create }): flock on a file of its own; the fd, or -1 when it is
// held elsewhere and `wait` is false. With `wait` the calling thread blocks until the lock is free.
napi_value LockFile(napi_env env, napi_callback_info info) {
  Args args;
  std::string path;
  if (!GetArgs(env, info, "lockFile", args) || !GetPath(env, args, 0, "path", path)) return nullptr;
  if (TypeOf(env, args.argv[1]) != napi_object) return ThrowTypeArg(env, Where(args, "options") + " must be an object, got " + Got(env, args.argv[1]));
  bool exclusive = false, wait = false, create = false;
  if (!GetBoolOption(env, args, args.argv[1], "exclusive", exclusive) || !GetBoolOption(env, args, args.argv[1], "wait", wait) ||
      !GetBoolOption(env, args, args.argv[1], "create", create)) {
    return nullptr;
  }
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  if (fd < 0) return ThrowErrno(env, errno, "open", path);
  int operation = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
  int rc;
  do {
    rc = flock(fd, operation);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      napi_value held;
      VMCOMM_NAPI(env, napi_create_int32(env, -1, &held));
      return held;
    }
    return ThrowErrno(env, err, "flock", path);
  }
  napi_value result;
  if (napi_create_int32(env, fd, &result) != napi_ok) {
    close(fd);
    return ThrowInternal(env, "napi_create_int32");
  }
  LockedFds& locked = TheLockedFds();
  std::lock_guard<std::mutex> lock(locked.mutex);
  locked.fds[fd] = static_cast<const AddonData*>(args.data);
  return result;
}

// unlockFile(fd): LOCK_UN and close; EBADF for an fd lockFile did not hand out.
napi_value UnlockFile(napi_env env, napi_callback_info info) {
  Args args;
  double fd = 0;
  if (!GetArgs(env, info, "unlockFile", args) || !GetInteger(env, args, 0, "fd", 0, 2147483647.0, fd)) return nullptr;
  {
    LockedFds& locked = TheLockedFds();
    std::lock_guard<std::mutex> lock(locked.mutex);
    if (locked.fds.erase(static_cast<int>(fd)) == 0) return ThrowErrno(env, EBADF, "flock", "", "not an fd from lockFile, or already unlocked");
  }
  // close releases the lock with the last fd of its open file description; LOCK_UN first makes the
  // release explicit even if the fd was duplicated.
  flock(static_cast<int>(fd), LOCK_UN);
  if (close(static_cast<int>(fd)) != 0) return ThrowErrno(env, errno, "close");
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

}  // namespace

void ReleaseLocksOf(const AddonData* data) {
  LockedFds& locked = TheLockedFds();
  std::lock_guard<std::mutex> lock(locked.mutex);
  for (auto it = locked.fds.begin(); it != locked.fds.end();) {
    if (it->second != data) {
      ++it;
      continue;
    }
    close(it->first);  // the last fd of its open file description: the lock goes with it
    it = locked.fds.erase(it);
  }
}

napi_value ExportMapping(napi_env env, napi_value exports, AddonData* data) {
  static const Binding bindings[] = {
      {"createSharedFile", CreateSharedFile},
      {"openSharedFile", OpenSharedFile},
      {"lockFile", LockFile},
      {"unlockFile", UnlockFile},
  };
  return DefineBindings(env, exports, data, bindings, sizeof bindings / sizeof bindings[0]);
}

}  // namespace vmcomm
