// Internals shared by the CPU harness's implementation files (not by kernels or tests): error
// recording, the device-memory registry and its page protection, and fibers.
#ifndef LETHE_CUDA_HARNESS_INTERNAL_H
#define LETHE_CUDA_HARNESS_INTERNAL_H

#include <cuda_runtime.h>

#include <stddef.h>
#include <stdint.h>

#include <initializer_list>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define LETHE_HARNESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LETHE_HARNESS_ASAN 1
#endif
#endif

namespace lethe_harness::detail {

// ---- errors -------------------------------------------------------------------------------------

// Records e for cudaGetLastError/cudaPeekAtLastError (per host thread, like CUDA) and returns it.
cudaError_t record_error(cudaError_t e);

// One "lethe harness: ..." line on stderr. Harness diagnostics always go there, because the code
// a real GPU would have run silently wrong is exactly what the harness exists to point at.
void report(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// A kernel that failed is also reported by the next synchronising call (cudaDeviceSynchronize,
// cudaStreamSynchronize, cudaEventSynchronize, cudaMemcpy), as a GPU's asynchronous error would
// be, so host code that only checks at synchronisation still sees it. Taking it clears it.
void record_async_failure(cudaError_t e);
cudaError_t take_async_failure();

// ---- device memory ------------------------------------------------------------------------------

// Where a byte range lies. A range that starts in a device allocation but runs past its end is
// `partial`: the copy or BLAS call that asked is rejected instead of faulting half-way.
enum class RangeKind { host, device, partial };

struct RangeInfo {
    RangeKind kind;
    const char* base;  // device allocation holding the range (device/partial)
    size_t size;       // its size in bytes
};

RangeInfo classify_range(const void* p, size_t bytes);
bool is_device_pointer(const void* p);

// While alive, the listed device allocations (or all of them) are readable and writable by the
// host; afterwards they are PROT_NONE again. Nests and is thread-safe (a count per allocation).
class DeviceAccess {
public:
    DeviceAccess();                                                      // every live allocation
    explicit DeviceAccess(std::initializer_list<const void*> pointers);  // those holding pointers
    ~DeviceAccess();
    DeviceAccess(const DeviceAccess&) = delete;
    DeviceAccess& operator=(const DeviceAccess&) = delete;

private:
    std::vector<const char*> opened_;  // allocation bases
    bool all_ = false;
};

// SIGSEGV diagnostics (device-memory guard pages, host access to device memory, fiber stack
// overflow). Installed on first use of device memory or of a launch.
void install_fault_handler();
// An alternate signal stack for this OS thread, so a fiber stack overflow can still be reported.
void ensure_signal_stack();

// Guarded regions that are not device allocations (fiber stacks, dynamic shared memory), so that
// the fault handler can say what a fault in them means.
enum class GuardedKind { fiber_stacks, dynamic_smem };
void register_guarded_region(const char* lo, size_t bytes, GuardedKind kind);
void unregister_guarded_region(const char* lo);

// Text for the fault handler: what the currently running CUDA thread is (empty outside kernels).
// Written by the scheduler; read from the signal handler, so plain thread-local storage.
size_t describe_current_thread(char* out, size_t capacity);

// ---- fibers -------------------------------------------------------------------------------------

// A CUDA thread's execution context. Stacks are mmap'd with a PROT_NONE guard page below, so an
// overflow faults (and is reported) instead of overwriting the neighbouring fiber's stack.
struct Fiber {
    void* saved_sp = nullptr;  // x86-64: stack pointer at the last suspension
    char* stack_lo = nullptr;  // usable stack [stack_lo, stack_lo + stack_size)
    size_t stack_size = 0;
    void* asan_fake_stack = nullptr;
    void* ucontext = nullptr;  // ucontext_t* when built with LETHE_HARNESS_UCONTEXT
};

// The scheduler's own context on an OS thread, to which fibers return when they block.
struct FiberHost {
    void* saved_sp = nullptr;
    void* ucontext = nullptr;
    const void* asan_stack_bottom = nullptr;
    size_t asan_stack_size = 0;
    void* asan_fake_stack = nullptr;
};

// Makes f start entry(arg) at its next resume. entry must never return (it suspends for good).
void fiber_prepare(Fiber* f, FiberHost* host, void (*entry)(void*), void* arg);
// Scheduler -> fiber; returns when the fiber suspends.
void fiber_resume(FiberHost* host, Fiber* f);
// Fiber -> scheduler. `finished` tells ASan the fiber's frames are gone.
void fiber_suspend(Fiber* f, FiberHost* host, bool finished);
// Called first thing on a fresh fiber (ASan bookkeeping for the switch that started it).
void fiber_started(Fiber* f, FiberHost* host);

// Fiber stacks, each with its guard page; grows on demand, never shrinks; owned by one OS thread
// and reused by every block it runs.
class FiberStacks {
public:
    FiberStacks() = default;
    ~FiberStacks();
    FiberStacks(const FiberStacks&) = delete;
    FiberStacks& operator=(const FiberStacks&) = delete;
    void reserve(unsigned count);
    char* stack_lo(unsigned i) const { return stacks_[i]; }

private:
    struct Region {
        char* base;
        size_t bytes;
    };
    std::vector<Region> regions_;
    std::vector<char*> stacks_;
};

size_t fiber_stack_bytes();  // LETHE_HARNESS_STACK_KIB, default 64 KiB (256 KiB under ASan)

// ---- launches -----------------------------------------------------------------------------------

bool stream_is_valid(cudaStream_t stream);
// The dynamic shared memory limit set with cudaFuncSetAttribute (default 48 KiB).
size_t max_dynamic_smem(const void* kernel);
constexpr size_t kDefaultDynamicSmem = 48 * 1024;
constexpr size_t kMaxDynamicSmemOptin = 227 * 1024;  // H100: sharedMemPerBlockOptin

}  // namespace lethe_harness::detail

#endif
