// Futex waits off the event loop, and futexWake.
//
// A NativeWaiter owns one native thread that sleeps in the kernel on behalf of its event loop: JS arms
// one wait (word, expected value, timeout, callback); the thread sleeps in a *shared* futex wait (not
// FUTEX_PRIVATE: the word lives in a MAP_SHARED file and the waker is another process), then hands the
// result to the loop. Neither the event loop nor a libuv pool thread ever blocks.
//
// Waking the loop: a Node-API threadsafe function, which owns a uv_async_t; the thread's call is a
// uv_async_send, and napi_ref/unref_threadsafe_function are uv_ref/uv_unref on that handle. It is used
// instead of a bare uv_async_t because it also drains microtasks after the callback, routes an
// exception in the callback to 'uncaughtException', and closes its handle at environment teardown in a
// way a worker's loop shutdown waits for. The handle is unref'd except while a wait is armed (and
// `ref(false)` unrefs that too), so an idle waiter never keeps a finished program alive.
//
// Cancelling: flag + wake. With futex_waitv (Linux >= 5.16) the thread waits on the shared word and on
// a private cancel word of its own at once; cancel() sets the cancel word and wakes only it, so nothing
// is lost in the window before the thread enters the kernel and no other process sees a wake. Without
// futex_waitv the thread uses FUTEX_WAIT in slices of at most kSliceMs and cancel() wakes every waiter
// on the word (they see a spurious wake, which futex users must tolerate anyway); a cancel that lands
// just before the thread enters the kernel is seen at the end of that slice, at most kSliceMs late.
//
// Teardown: an env cleanup hook, registered after the threadsafe function so it runs before Node
// closes it, stops and joins the thread. close() does the same at once; the wrapper's finalizer too.

#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <condition_variable>
#include <mutex>

#include "addon.h"
#include "args.h"
#include "errors.h"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449  // the same number on every architecture (asm-generic table)
#endif

namespace vmcomm {
namespace {

constexpr long kSliceMs = 100;
constexpr uint32_t kFutex2SizeU32 = 0x02;   // FUTEX2_SIZE_U32 / FUTEX_32
constexpr uint32_t kFutex2Private = 128;    // FUTEX2_PRIVATE / FUTEX_PRIVATE_FLAG

// struct futex_waitv, spelled out so older kernel headers compile.
struct WaitvEntry {
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t reserved;
};

long Futex(void* word, int op, uint32_t value, const struct timespec* timeout) {
  return syscall(SYS_futex, word, op, value, timeout, nullptr, 0);
}

long FutexWaitv(WaitvEntry* entries, unsigned count, const struct timespec* deadline) {
  return syscall(SYS_futex_waitv, entries, count, 0, deadline, CLOCK_MONOTONIC);
}

// futex_waitv exists and is allowed (a seccomp filter may refuse it with ENOSYS or EPERM).
bool HasFutexWaitv() {
  static const bool available = [] {
    uint32_t word = 1;
    WaitvEntry entry{0, reinterpret_cast<uintptr_t>(&word), kFutex2SizeU32 | kFutex2Private, 0};
    long rc = FutexWaitv(&entry, 1, nullptr);  // value differs: returns EAGAIN at once where supported
    return rc == -1 && errno == EAGAIN;
  }();
  return available;
}

timespec Now() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now;
}

bool Before(const timespec& a, const timespec& b) { return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec); }

timespec AddMs(timespec t, double ms) {
  double whole = 0;
  double frac = std::modf(ms / 1000.0, &whole);
  t.tv_sec += static_cast<time_t>(whole);
  t.tv_nsec += static_cast<long>(frac * 1e9);
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec += 1;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

enum class State { kIdle, kArmed, kWaiting, kDone };
// kFailed: the kernel refused the wait for a reason that would recur on every retry (EFAULT: the word's
// page is gone, as past the end of a file another process shrank, or memory a shared futex cannot key,
// such as a PCI BAR; EINVAL, ENOSYS, EPERM). Reported as such, with the errno, so the caller stops
// re-arming: reported as a spurious wake it would re-arm and fail again at once, a busy loop through
// the event loop.
enum class Result { kWoken, kNotEqual, kTimedOut, kCancelled, kFailed };

const char* ResultName(Result r) {
  switch (r) {
    case Result::kWoken: return "woken";
    case Result::kNotEqual: return "not-equal";
    case Result::kTimedOut: return "timed-out";
    case Result::kCancelled: return "cancelled";
    case Result::kFailed: return "failed";
  }
  return "woken";
}

class Waiter {
 public:
  explicit Waiter(napi_env env, bool use_waitv) : env_(env), use_waitv_(use_waitv) {}
  // Deleted by Release once the wrapper and the threadsafe function are both gone (or before Start).
  ~Waiter() = default;

  // Creates the threadsafe function, the cleanup hook and the thread. False after throwing.
  bool Start() {
    napi_value name;
    if (napi_create_string_utf8(env_, "vmcomm:native:waiter", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_threadsafe_function(env_, nullptr, nullptr, name, 0, 1, this, OnTsfnFinalize, this, Deliver, &tsfn_) != napi_ok) {
      ThrowInternal(env_, "napi_create_threadsafe_function");
      return false;
    }
    owners_ = 2;  // the JS wrapper and the threadsafe function
    napi_unref_threadsafe_function(env_, tsfn_);
    napi_add_env_cleanup_hook(env_, OnEnvCleanup, this);
    hook_registered_ = true;
    int err = pthread_create(&thread_, nullptr, ThreadMain, this);
    if (err != 0) {
      Close();
      ThrowErrno(env_, err, "pthread_create");
      return false;
    }
    thread_started_ = true;
    return true;
  }

  const char* Mechanism() const { return use_waitv_ ? "futex_waitv" : "futex"; }
  bool closed() const { return closed_; }

  // Arms one wait; the caller has validated the arguments. Returns undefined, or nullptr after throwing
  // EBUSY when a wait is already armed.
  napi_value Arm(std::shared_ptr<v8::BackingStore> store, uint32_t* word, uint32_t expected, bool forever, timespec deadline,
                 napi_value callback, napi_value wrapper) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (state_ != State::kIdle) {
        return ThrowCoded(env_, ErrorKind::kError, "EBUSY", EBUSY,
                          "NativeWaiter.wait: a wait is already armed (one at a time; its callback has not run yet)");
      }
    }
    napi_ref callback_ref = nullptr, self_ref = nullptr;
    if (napi_create_reference(env_, callback, 1, &callback_ref) != napi_ok) return ThrowInternal(env_, "napi_create_reference");
    if (napi_create_reference(env_, wrapper, 1, &self_ref) != napi_ok) {
      napi_delete_reference(env_, callback_ref);
      return ThrowInternal(env_, "napi_create_reference");
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      callback_ = callback_ref;
      self_ = self_ref;  // an armed waiter is not collected, so its callback always runs
      store_ = std::move(store);
      word_ = word;
      expected_ = expected;
      forever_ = forever;
      deadline_ = deadline;
      cancel_word_.store(0);
      state_ = State::kArmed;
    }
    if (keep_alive_) napi_ref_threadsafe_function(env_, tsfn_);
    wake_.notify_one();
    napi_value undefined;
    napi_get_undefined(env_, &undefined);
    return undefined;
  }

  // Flag + wake; a no-op when idle or when the result is already on its way.
  void Cancel() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ == State::kArmed || state_ == State::kWaiting) WakeThreadLocked();
  }

  void SetKeepAlive(bool keep_alive) {
    keep_alive_ = keep_alive;
    bool armed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      armed = state_ != State::kIdle;
    }
    if (closed_ || tsfn_ == nullptr || !armed) return;
    if (keep_alive) {
      napi_ref_threadsafe_function(env_, tsfn_);
    } else {
      napi_unref_threadsafe_function(env_, tsfn_);
    }
  }

  // Stops the thread (joined), releases the threadsafe function and drops an armed wait without calling
  // its callback. Idempotent; JS thread only.
  void Close() {
    if (closed_) return;
    closed_ = true;
    StopThread();
    if (hook_registered_) {
      hook_registered_ = false;
      napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
    }
    DropArmed();
    if (tsfn_ != nullptr) {
      napi_unref_threadsafe_function(env_, tsfn_);
      napi_release_threadsafe_function(tsfn_, napi_tsfn_abort);  // OnTsfnFinalize follows on the loop
    }
  }

  // The JS wrapper was collected (or the environment is going away).
  static void OnWrapperFinalize(napi_env env, void* data, void* hint) {
    Waiter* self = static_cast<Waiter*>(data);
    self->Close();
    self->Release();
  }

 private:
  void Release() {
    if (--owners_ == 0) delete this;
  }

  static void OnTsfnFinalize(napi_env env, void* data, void* hint) {
    Waiter* self = static_cast<Waiter*>(data);
    self->StopThread();  // normally already stopped; at teardown this is the last chance
    self->tsfn_ = nullptr;
    self->Release();
  }

  static void OnEnvCleanup(void* data) {
    Waiter* self = static_cast<Waiter*>(data);
    self->hook_registered_ = false;  // running now; Close must not remove it
    self->Close();
  }

  // Drops the references of an armed (or finished, undelivered) wait. JS thread.
  void DropArmed() {
    napi_ref callback, self;
    std::shared_ptr<v8::BackingStore> store;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      callback = callback_;
      self = self_;
      callback_ = self_ = nullptr;
      store = std::move(store_);
      state_ = State::kIdle;
    }
    if (callback != nullptr) napi_delete_reference(env_, callback);
    if (self != nullptr) napi_delete_reference(env_, self);
  }

  // Wakes the thread out of its current or next futex wait. Caller holds mutex_.
  void WakeThreadLocked() {
    cancel_word_.store(1);
    if (use_waitv_) {
      Futex(&cancel_word_, FUTEX_WAKE_PRIVATE, 1, nullptr);
    } else if (state_ == State::kWaiting && word_ != nullptr) {
      Futex(word_, FUTEX_WAKE, INT_MAX, nullptr);
    }
  }

  void StopThread() {
    if (!thread_started_) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
      WakeThreadLocked();
    }
    wake_.notify_all();
    pthread_join(thread_, nullptr);
    thread_started_ = false;
  }

  static void* ThreadMain(void* data) {
    // Signals are for the JS threads (Node's handlers); none interrupts this one's sleep.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    static_cast<Waiter*>(data)->Run();
    return nullptr;
  }

  void Run() {
    for (;;) {
      uint32_t* word;
      uint32_t expected;
      bool forever;
      timespec deadline;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return quit_ || state_ == State::kArmed; });
        if (quit_) return;
        state_ = State::kWaiting;
        word = word_;
        expected = expected_;
        forever = forever_;
        deadline = deadline_;
      }
      int error = 0;
      Result result = use_waitv_ ? WaitVector(word, expected, forever, deadline, error) : WaitSliced(word, expected, forever, deadline, error);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (quit_) return;
        result_ = result;
        result_errno_ = error;
        state_ = State::kDone;
      }
      // napi_closing only while the environment tears down; then nobody waits for the result.
      napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking);
    }
  }

  // `error`: the errno of a kFailed result.
  Result WaitVector(uint32_t* word, uint32_t expected, bool forever, const timespec& deadline, int& error) {
    WaitvEntry entries[2] = {
        {expected, reinterpret_cast<uintptr_t>(word), kFutex2SizeU32, 0},  // shared: other processes wake it
        {0, reinterpret_cast<uintptr_t>(&cancel_word_), kFutex2SizeU32 | kFutex2Private, 0},
    };
    for (;;) {
      if (cancel_word_.load() != 0) return Result::kCancelled;
      long rc = FutexWaitv(entries, 2, forever ? nullptr : &deadline);
      if (rc == 0) return Result::kWoken;
      if (rc == 1) continue;  // the cancel word: the check above decides
      switch (errno) {
        case EAGAIN: return cancel_word_.load() != 0 ? Result::kCancelled : Result::kNotEqual;
        case ETIMEDOUT: return Result::kTimedOut;
        case EINTR: continue;
        default:
          error = errno;
          return Result::kFailed;
      }
    }
  }

  Result WaitSliced(uint32_t* word, uint32_t expected, bool forever, const timespec& deadline, int& error) {
    for (;;) {
      if (cancel_word_.load() != 0) return Result::kCancelled;
      timespec now = Now();
      if (!forever && !Before(now, deadline)) {
        // Compared by the kernel, not read here: a word whose page is gone (a shrunk file) is EFAULT
        // there and SIGBUS here.
        timespec zero{0, 0};
        if (Futex(word, FUTEX_WAIT, expected, &zero) == 0) return cancel_word_.load() != 0 ? Result::kCancelled : Result::kWoken;
        switch (errno) {
          case ETIMEDOUT:
          case EINTR: return Result::kTimedOut;
          case EAGAIN: return Result::kNotEqual;
          default:
            error = errno;
            return Result::kFailed;
        }
      }
      timespec end = AddMs(now, kSliceMs);
      if (!forever && Before(deadline, end)) end = deadline;
      timespec relative{end.tv_sec - now.tv_sec, end.tv_nsec - now.tv_nsec};
      if (relative.tv_nsec < 0) {
        relative.tv_sec -= 1;
        relative.tv_nsec += 1000000000L;
      }
      long rc = Futex(word, FUTEX_WAIT, expected, &relative);
      if (rc == 0) return cancel_word_.load() != 0 ? Result::kCancelled : Result::kWoken;
      switch (errno) {
        case EAGAIN: return cancel_word_.load() != 0 ? Result::kCancelled : Result::kNotEqual;
        case ETIMEDOUT:
        case EINTR: continue;
        default:
          error = errno;
          return Result::kFailed;
      }
    }
  }

  // On the loop thread: the result of the armed wait.
  static void Deliver(napi_env env, napi_value js_callback, void* context, void* data) {
    Waiter* self = static_cast<Waiter*>(context);
    if (env == nullptr) return;  // the environment is going away
    Result result;
    int result_errno;
    napi_ref callback, wrapper;
    std::shared_ptr<v8::BackingStore> store;
    {
      std::lock_guard<std::mutex> lock(self->mutex_);
      if (self->state_ != State::kDone) return;  // closed meanwhile
      result = self->result_;
      result_errno = self->result_errno_;
      callback = self->callback_;
      wrapper = self->self_;
      self->callback_ = self->self_ = nullptr;
      store = std::move(self->store_);
      self->state_ = State::kIdle;
    }
    store.reset();
    napi_unref_threadsafe_function(env, self->tsfn_);
    napi_value fn = nullptr, argv[2], undefined;
    napi_get_reference_value(env, callback, &fn);
    napi_delete_reference(env, callback);
    napi_delete_reference(env, wrapper);
    if (fn == nullptr) return;
    napi_get_undefined(env, &undefined);
    napi_create_string_utf8(env, ResultName(result), NAPI_AUTO_LENGTH, &argv[0]);
    napi_create_int32(env, result_errno, &argv[1]);
    // The callback may arm the next wait. A throw is an uncaught exception, as from any event-loop
    // callback (Node 20 would otherwise only warn, DEP0168, unless run with
    // --force-node-api-uncaught-exceptions-policy).
    // (While a worker terminates, JS cannot run: nothing is pending then, and nothing is reported.)
    bool pending = false;
    if (napi_call_function(env, undefined, fn, 2, argv, nullptr) != napi_ok && napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value error;
      if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
    }
  }

  napi_env env_;
  const bool use_waitv_;
  napi_threadsafe_function tsfn_ = nullptr;
  pthread_t thread_{};
  bool thread_started_ = false;
  bool hook_registered_ = false;
  bool closed_ = false;
  bool keep_alive_ = true;
  int owners_ = 1;

  std::mutex mutex_;
  std::condition_variable wake_;
  // Guarded by mutex_:
  State state_ = State::kIdle;
  bool quit_ = false;
  Result result_ = Result::kWoken;
  int result_errno_ = 0;  // of a kFailed result_
  std::shared_ptr<v8::BackingStore> store_;  // keeps the word's memory mapped while the thread sleeps on it
  uint32_t* word_ = nullptr;
  uint32_t expected_ = 0;
  bool forever_ = true;
  timespec deadline_{};
  napi_ref callback_ = nullptr;
  napi_ref self_ = nullptr;
  // The private futex cancel() sets and wakes (read by the thread without the lock).
  std::atomic<uint32_t> cancel_word_{0};
};

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "the cancel word must be a plain 32-bit futex word");

// --- the NativeWaiter class ---------------------------------------------------------------------------

// The constructor only runs from createWaiter, which passes this token; `new waiter.constructor()`
// from JS is refused.
int construct_token = 0;

Waiter* Unwrap(napi_env env, const Args& args) {
  Waiter* waiter = nullptr;
  if (napi_unwrap(env, args.self, reinterpret_cast<void**>(&waiter)) != napi_ok || waiter == nullptr) {
    ThrowTypeArg(env, std::string(args.fn) + ": `this` is not a NativeWaiter");
    return nullptr;
  }
  return waiter;
}

napi_value WaiterConstructor(napi_env env, napi_callback_info info) {
  Args args;
  if (!GetArgs(env, info, "NativeWaiter", args)) return nullptr;
  void* token = nullptr;
  if (TypeOf(env, args.argv[0]) != napi_external || napi_get_value_external(env, args.argv[0], &token) != napi_ok || token != &construct_token) {
    return ThrowTypeArg(env, "NativeWaiter: use createWaiter()");
  }
  AddonData* data = static_cast<AddonData*>(args.data);
  Waiter* waiter = new Waiter(env, !data->futex_waitv_disabled && HasFutexWaitv());
  if (napi_wrap(env, args.self, waiter, Waiter::OnWrapperFinalize, nullptr, nullptr) != napi_ok) {
    delete waiter;
    return ThrowInternal(env, "napi_wrap");
  }
  // From here the wrapper owns the waiter: a failed Start leaves it closed, and its finalizer frees it.
  if (!waiter->Start()) return nullptr;
  napi_value mechanism;
  VMCOMM_NAPI(env, napi_create_string_utf8(env, waiter->Mechanism(), NAPI_AUTO_LENGTH, &mechanism));
  napi_property_descriptor property{"mechanism", nullptr, nullptr, nullptr, nullptr, mechanism, napi_enumerable, nullptr};
  VMCOMM_NAPI(env, napi_define_properties(env, args.self, 1, &property));
  return args.self;
}

// wait(sab, byteOffset, expected, timeoutMs, callback)
napi_value WaiterWait(napi_env env, napi_callback_info info) {
  Args args;
  if (!GetArgs(env, info, "NativeWaiter.wait", args)) return nullptr;
  Waiter* waiter = Unwrap(env, args);
  if (waiter == nullptr) return nullptr;
  if (waiter->closed()) return ThrowCoded(env, ErrorKind::kError, "EBADF", EBADF, "NativeWaiter.wait: the waiter is closed");
  std::shared_ptr<v8::BackingStore> store;
  uint32_t* word = nullptr;
  if (!GetWord(env, args, 0, 1, store, word)) return nullptr;
  double expected = 0;
  if (!GetInteger(env, args, 2, "expected", -2147483648.0, 4294967295.0, expected)) return nullptr;
  if (TypeOf(env, args.argv[3]) != napi_number) return ThrowTypeArg(env, Where(args, "timeoutMs") + " must be a number, got " + Got(env, args.argv[3]));
  double timeout = 0;
  napi_get_value_double(env, args.argv[3], &timeout);
  // A timeout beyond ~31 years is forever in practice, and keeps the timespec arithmetic far from overflow.
  bool forever = timeout == -1 || timeout == INFINITY || (std::isfinite(timeout) && timeout > 1e12);
  if (!forever && !(timeout >= 0 && std::isfinite(timeout))) {
    return ThrowRangeArg(env, Where(args, "timeoutMs") + " must be >= 0, -1 or Infinity (forever), got " + Got(env, args.argv[3]));
  }
  if (TypeOf(env, args.argv[4]) != napi_function) return ThrowTypeArg(env, Where(args, "callback") + " must be a function, got " + Got(env, args.argv[4]));
  timespec deadline = forever ? timespec{} : AddMs(Now(), timeout);
  uint32_t value = static_cast<uint32_t>(static_cast<int64_t>(expected));  // -1 and 0xffffffff are the same word
  return waiter->Arm(std::move(store), word, value, forever, deadline, args.argv[4], args.self);
}

napi_value Undefined(napi_env env) {
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

napi_value WaiterCancel(napi_env env, napi_callback_info info) {
  Args args;
  if (!GetArgs(env, info, "NativeWaiter.cancel", args)) return nullptr;
  Waiter* waiter = Unwrap(env, args);
  if (waiter == nullptr) return nullptr;
  if (!waiter->closed()) waiter->Cancel();
  return Undefined(env);
}

napi_value WaiterRef(napi_env env, napi_callback_info info) {
  Args args;
  bool keep_alive = true;
  if (!GetArgs(env, info, "NativeWaiter.ref", args)) return nullptr;
  Waiter* waiter = Unwrap(env, args);
  if (waiter == nullptr || !GetBool(env, args, 0, "keepAlive", keep_alive)) return nullptr;
  waiter->SetKeepAlive(keep_alive);
  return Undefined(env);
}

napi_value WaiterClose(napi_env env, napi_callback_info info) {
  Args args;
  if (!GetArgs(env, info, "NativeWaiter.close", args)) return nullptr;
  Waiter* waiter = Unwrap(env, args);
  if (waiter == nullptr) return nullptr;
  waiter->Close();
  return Undefined(env);
}

napi_value CreateWaiter(napi_env env, napi_callback_info info) {
  Args args;
  if (!GetArgs(env, info, "createWaiter", args)) return nullptr;
  AddonData* data = static_cast<AddonData*>(args.data);
  napi_value constructor, token, waiter;
  VMCOMM_NAPI(env, napi_get_reference_value(env, data->waiter_class, &constructor));
  VMCOMM_NAPI(env, napi_create_external(env, &construct_token, nullptr, nullptr, &token));
  if (napi_new_instance(env, constructor, 1, &token, &waiter) != napi_ok) return nullptr;  // it threw
  return waiter;
}

// futexWake(sab, byteOffset, count): FUTEX_WAKE, shared.
napi_value FutexWake(napi_env env, napi_callback_info info) {
  Args args;
  if (!GetArgs(env, info, "futexWake", args)) return nullptr;
  std::shared_ptr<v8::BackingStore> store;
  uint32_t* word = nullptr;
  double count = 0;
  if (!GetWord(env, args, 0, 1, store, word)) return nullptr;
  if (TypeOf(env, args.argv[2]) != napi_number) return ThrowTypeArg(env, Where(args, "count") + " must be a number, got " + Got(env, args.argv[2]));
  napi_get_value_double(env, args.argv[2], &count);
  if (!(count >= 0) || (std::isfinite(count) && std::floor(count) != count)) {
    return ThrowRangeArg(env, Where(args, "count") + " must be an integer >= 0 or Infinity, got " + Got(env, args.argv[2]));
  }
  uint32_t n = count >= INT_MAX ? INT_MAX : static_cast<uint32_t>(count);
  long woken = Futex(word, FUTEX_WAKE, n, nullptr);
  if (woken < 0) return ThrowErrno(env, errno, "futex");
  napi_value result;
  VMCOMM_NAPI(env, napi_create_int32(env, static_cast<int32_t>(woken), &result));
  return result;
}

}  // namespace

bool ProbeFutex() {
  uint32_t word = 0;
  return Futex(&word, FUTEX_WAKE_PRIVATE, 1, nullptr) >= 0;
}

napi_value ExportFutex(napi_env env, napi_value exports, AddonData* data) {
  napi_property_descriptor methods[] = {
      {"wait", nullptr, WaiterWait, nullptr, nullptr, nullptr, napi_default_method, data},
      {"cancel", nullptr, WaiterCancel, nullptr, nullptr, nullptr, napi_default_method, data},
      {"ref", nullptr, WaiterRef, nullptr, nullptr, nullptr, napi_default_method, data},
      {"close", nullptr, WaiterClose, nullptr, nullptr, nullptr, napi_default_method, data},
  };
  napi_value waiter_class;
  VMCOMM_NAPI(env, napi_define_class(env, "NativeWaiter", NAPI_AUTO_LENGTH, WaiterConstructor, data, sizeof methods / sizeof methods[0],
                                     methods, &waiter_class));
  VMCOMM_NAPI(env, napi_create_reference(env, waiter_class, 1, &data->waiter_class));
  static const Binding bindings[] = {
      {"createWaiter", CreateWaiter},
      {"futexWake", FutexWake},
  };
  return DefineBindings(env, exports, data, bindings, sizeof bindings / sizeof bindings[0]);
}

}  // namespace vmcomm
