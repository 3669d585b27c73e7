// Device memory for the CPU harness: each cudaMalloc ends exactly at a guard page and is PROT_NONE
// except inside kernels, BLAS/NCCL calls and copies, so misuse faults; plus the fault diagnostics.
#include "internal.h"

#include <execinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <set>

namespace lethe_harness::detail {

namespace {

constexpr size_t kDeviceMemoryBytes = size_t{80} << 30;  // an H100's 80 GiB, for cudaMemGetInfo
constexpr size_t kQuarantineBytes = size_t{64} << 30;    // address space kept PROT_NONE after free

size_t page_size() {
    static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return page;
}

struct Allocation {
    char* map_base;  // [guard page][data pages][guard page]
    size_t map_bytes;
    char* data_lo;  // the data pages, protected as one unit
    size_t data_bytes;
    char* ptr;  // what cudaMalloc returned: data_lo + data_bytes - size
    size_t size;
    unsigned open_count;
    bool freed;  // quarantined: PROT_NONE, pages released, address not reused
};

// Guarded by g_mutex. Keyed by map_base.
std::mutex g_mutex;
std::map<uintptr_t, Allocation> g_allocations;
std::deque<uintptr_t> g_quarantine;
size_t g_quarantine_bytes = 0;
size_t g_live_bytes = 0;
unsigned g_all_open_depth = 0;
std::set<void*> g_host_allocations;

bool poison_new_allocations() {
    static const bool poison = [] {
        const char* v = getenv("LETHE_HARNESS_POISON");
        return v == nullptr || strcmp(v, "0") != 0;
    }();
    return poison;
}

Allocation* find_locked(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = g_allocations.upper_bound(a);
    if (it == g_allocations.begin()) return nullptr;
    --it;
    Allocation& alloc = it->second;
    return a < it->first + alloc.map_bytes ? &alloc : nullptr;
}

void protect_locked(Allocation& a, bool open) {
    if (mprotect(a.data_lo, a.data_bytes, open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0) {
        fatal("mprotect of a device allocation failed");
    }
}

void open_locked(Allocation& a) {
    if (a.open_count++ == 0) protect_locked(a, true);
}

void close_locked(Allocation& a) {
    if (a.open_count == 0) fatal("device allocation closed more often than opened");
    if (--a.open_count == 0) protect_locked(a, false);
}

// ---- fault diagnostics ----

struct GuardedRegion {
    std::atomic<const char*> lo{nullptr};
    size_t bytes = 0;
    GuardedKind kind = GuardedKind::fiber_stacks;
};
constexpr int kMaxGuardedRegions = 256;
GuardedRegion g_guarded[kMaxGuardedRegions];
std::mutex g_guarded_mutex;

size_t append(char* out, size_t cap, size_t used, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
size_t append(char* out, size_t cap, size_t used, const char* fmt, ...) {
    if (used >= cap) return used;
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(out + used, cap - used, fmt, ap);
    va_end(ap);
    if (n < 0) return used;
    return used + static_cast<size_t>(n) < cap ? used + static_cast<size_t>(n) : cap - 1;
}

size_t describe_device_address(char* out, size_t cap, size_t used, const char* addr,
                               bool in_kernel) {
    if (!g_mutex.try_lock()) return used;  // faulted while the registry was busy: say less
    const Allocation* a = find_locked(addr);
    if (a != nullptr) {
        if (a->freed) {
            used = append(out, cap, used,
                          ": inside a device allocation of %zu bytes at %p that was "
                          "released by cudaFree (use after free)",
                          a->size, static_cast<void*>(a->ptr));
        } else if (addr >= a->ptr + a->size) {
            used = append(out, cap, used,
                          ": %zu bytes past the end of the device allocation of "
                          "%zu bytes at %p",
                          static_cast<size_t>(addr - (a->ptr + a->size)), a->size,
                          static_cast<void*>(a->ptr));
        } else if (addr < a->ptr) {
            used = append(out, cap, used,
                          ": %zu bytes before the start of the device allocation "
                          "of %zu bytes at %p",
                          static_cast<size_t>(a->ptr - addr), a->size, static_cast<void*>(a->ptr));
        } else if (!in_kernel) {
            used = append(out, cap, used,
                          ": byte %zu of the device allocation of %zu bytes at %p; "
                          "host code may touch device memory only through cudaMemcpy/cudaMemset "
                          "(the harness keeps it PROT_NONE elsewhere, as a GPU's memory is out of "
                          "the host's reach)",
                          static_cast<size_t>(addr - a->ptr), a->size, static_cast<void*>(a->ptr));
        }
    }
    g_mutex.unlock();
    return used;
}

size_t describe_guarded_address(char* out, size_t cap, size_t used, const char* addr) {
    for (const GuardedRegion& r : g_guarded) {
        const char* lo = r.lo.load(std::memory_order_acquire);
        if (lo == nullptr || addr < lo || addr >= lo + r.bytes) continue;
        if (r.kind == GuardedKind::fiber_stacks) {
            const size_t stride = page_size() + fiber_stack_bytes();
            if (static_cast<size_t>(addr - lo) % stride < page_size()) {
                return append(out, cap, used,
                              ": fiber stack overflow, the CUDA thread used more "
                              "than its %zu KiB stack (set LETHE_HARNESS_STACK_KIB)",
                              fiber_stack_bytes() / 1024);
            }
        } else {
            return append(out, cap, used,
                          ": past the end of the dynamic shared memory given at "
                          "launch");
        }
    }
    return used;
}

struct sigaction g_previous_action;  // ASan's, a debugger's, or SIG_DFL

void on_fault(int sig, siginfo_t* info, void*) {
    char text[1536];
    const char* addr = static_cast<const char*>(info->si_addr);
    size_t used =
        append(text, sizeof text, 0, "lethe harness: SIGSEGV at address %p", info->si_addr);
    char who[256];
    const size_t who_len = describe_current_thread(who, sizeof who);
    used = append(text, sizeof text, used, " in %s", who_len != 0 ? who : "host code");
    const size_t located = used;
    if (info->si_code == SI_KERNEL && addr == nullptr) {
        used = append(text, sizeof text, used,
                      ": a general-protection fault, e.g. a 16-byte "
                      "vector access at an address that is not 16-byte aligned");
    } else {
        used = describe_device_address(text, sizeof text, used, addr, who_len != 0);
        if (used == located) used = describe_guarded_address(text, sizeof text, used, addr);
    }
    const bool harness_fault = used != located || who_len != 0;
    if (harness_fault) {
        used = append(text, sizeof text, used, "\n");
        ssize_t ignored = write(STDERR_FILENO, text, used);
        static const char hint[] =
            "lethe harness: backtrace (resolve with addr2line -f -C -e "
            "<binary> <+offset>):\n";
        ignored = write(STDERR_FILENO, hint, sizeof hint - 1);
        void* frames[32];
        backtrace_symbols_fd(frames, backtrace(frames, 32), STDERR_FILENO);
        (void)ignored;
        // Returning re-executes the access under the default action: the process dies of
        // SIGSEGV, as the death tests expect and as a debugger wants.
        signal(sig, SIG_DFL);
    } else {
        // An ordinary host bug: let the handler that was there before (ASan's report) have it.
        sigaction(sig, &g_previous_action, nullptr);
    }
}

}  // namespace

void register_guarded_region(const char* lo, size_t bytes, GuardedKind kind) {
    std::lock_guard<std::mutex> lock(g_guarded_mutex);
    for (GuardedRegion& r : g_guarded) {
        if (r.lo.load() == nullptr) {
            r.bytes = bytes;
            r.kind = kind;
            r.lo.store(lo, std::memory_order_release);
            return;
        }
    }
    // Only diagnostics are lost: the guard pages still fault.
}

void unregister_guarded_region(const char* lo) {
    std::lock_guard<std::mutex> lock(g_guarded_mutex);
    for (GuardedRegion& r : g_guarded) {
        if (r.lo.load() == lo) r.lo.store(nullptr);
    }
}

void install_fault_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = &on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        void* warm_up[1];
        backtrace(warm_up, 1);  // loads libgcc now, not inside the signal handler
        sigaction(SIGSEGV, &sa, &g_previous_action);
    });
    ensure_signal_stack();
}

void ensure_signal_stack() {
    static thread_local bool done = false;
    if (done) return;
    done = true;
    stack_t current;
    if (sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return;  // ASan's
    const size_t bytes = 64 * 1024;
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return;  // only stack-overflow reports are lost
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = mem;
    ss.ss_size = bytes;
    sigaltstack(&ss, nullptr);  // lives as long as the thread; not worth unmapping
}

RangeInfo classify_range(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(g_mutex);
    const Allocation* a = find_locked(p);
    if (a == nullptr) return {RangeKind::host, nullptr, 0};
    const char* c = static_cast<const char*>(p);
    if (a->freed || c < a->ptr || bytes > a->size || c + bytes > a->ptr + a->size) {
        return {RangeKind::partial, a->ptr, a->size};
    }
    return {RangeKind::device, a->ptr, a->size};
}

bool is_device_pointer(const void* p) {
    std::lock_guard<std::mutex> lock(g_mutex);
    const Allocation* a = find_locked(p);
    return a != nullptr && !a->freed;
}

DeviceAccess::DeviceAccess() : all_(true) {
    std::lock_guard<std::mutex> lock(g_mutex);
    ++g_all_open_depth;
    for (auto& entry : g_allocations) {
        if (!entry.second.freed) open_locked(entry.second);
    }
}

DeviceAccess::DeviceAccess(std::initializer_list<const void*> pointers) {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (const void* p : pointers) {
        Allocation* a = find_locked(p);
        if (a == nullptr || a->freed) continue;
        open_locked(*a);
        opened_.push_back(a->map_base);
    }
}

DeviceAccess::~DeviceAccess() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (all_) {
        --g_all_open_depth;
        for (auto& entry : g_allocations) {
            if (!entry.second.freed) close_locked(entry.second);
        }
        return;
    }
    for (const char* base : opened_) {
        auto it = g_allocations.find(reinterpret_cast<uintptr_t>(base));
        if (it != g_allocations.end() && !it->second.freed) close_locked(it->second);
    }
}

}  // namespace lethe_harness::detail

using namespace lethe_harness::detail;

namespace {

cudaError_t copy_error(const char* api, const char* role, const void* p, size_t count,
                       const RangeInfo& r) {
    report(
        "%s: the %s range [%p, +%zu bytes) runs outside the device allocation of %zu bytes at "
        "%p",
        api, role, p, count, r.size, static_cast<const void*>(r.base));
    return record_error(cudaErrorInvalidValue);
}

// Checks that the pointers of a copy lie where `kind` says, as CUDA leaves a mismatch undefined.
cudaError_t check_copy(const char* api, void* dst, const void* src, size_t count,
                       cudaMemcpyKind kind) {
    const RangeInfo d = classify_range(dst, count);
    const RangeInfo s = classify_range(src, count);
    if (d.kind == RangeKind::partial) return copy_error(api, "destination", dst, count, d);
    if (s.kind == RangeKind::partial) return copy_error(api, "source", src, count, s);
    bool dst_device, src_device;
    switch (kind) {
        case cudaMemcpyHostToHost:
            dst_device = false;
            src_device = false;
            break;
        case cudaMemcpyHostToDevice:
            dst_device = true;
            src_device = false;
            break;
        case cudaMemcpyDeviceToHost:
            dst_device = false;
            src_device = true;
            break;
        case cudaMemcpyDeviceToDevice:
            dst_device = true;
            src_device = true;
            break;
        case cudaMemcpyDefault: return cudaSuccess;
        default:
            report("%s: copy kind %d does not exist", api, static_cast<int>(kind));
            return record_error(cudaErrorInvalidMemcpyDirection);
    }
    if ((d.kind == RangeKind::device) != dst_device) {
        report("%s: the destination %p is %s memory, but the copy kind says %s", api, dst,
               d.kind == RangeKind::device ? "device" : "host", dst_device ? "device" : "host");
        return record_error(cudaErrorInvalidValue);
    }
    if ((s.kind == RangeKind::device) != src_device) {
        report("%s: the source %p is %s memory, but the copy kind says %s", api, src,
               s.kind == RangeKind::device ? "device" : "host", src_device ? "device" : "host");
        return record_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t copy(const char* api, void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
    if (count == 0) return cudaSuccess;
    if (dst == nullptr || src == nullptr) return record_error(cudaErrorInvalidValue);
    const cudaError_t e = check_copy(api, dst, src, count, kind);
    if (e != cudaSuccess) return e;
    DeviceAccess access{dst, src};
    memmove(dst, src, count);
    return cudaSuccess;
}

cudaError_t fill(const char* api, void* dst, int value, size_t count) {
    if (count == 0) return cudaSuccess;
    const RangeInfo d = classify_range(dst, count);
    if (d.kind == RangeKind::partial) return copy_error(api, "destination", dst, count, d);
    if (d.kind != RangeKind::device) {
        report("%s: %p is not device memory", api, dst);
        return record_error(cudaErrorInvalidValue);
    }
    DeviceAccess access{dst};
    memset(dst, value, count);
    return cudaSuccess;
}

}  // namespace

extern "C" {

cudaError_t CUDARTAPI cudaMalloc(void** devPtr, size_t size) {
    if (devPtr == nullptr) return record_error(cudaErrorInvalidValue);
    *devPtr = nullptr;
    if (size == 0) return cudaSuccess;
    install_fault_handler();
    const size_t page = page_size();
    const size_t data_bytes = (size + page - 1) / page * page;
    const size_t map_bytes = data_bytes + 2 * page;
    std::lock_guard<std::mutex> lock(g_mutex);
    if (size > kDeviceMemoryBytes - g_live_bytes) return record_error(cudaErrorMemoryAllocation);
    void* mem =
        mmap(nullptr, map_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return record_error(cudaErrorMemoryAllocation);
    Allocation a;
    a.map_base = static_cast<char*>(mem);
    a.map_bytes = map_bytes;
    a.data_lo = a.map_base + page;
    a.data_bytes = data_bytes;
    // Ending exactly at the guard page makes a one-element overrun fault. The start is therefore
    // aligned to the largest power of two dividing the size (256 and more when the size is a
    // multiple of 256, as cudaMalloc promises; less for odd sizes).
    a.ptr = a.data_lo + data_bytes - size;
    a.size = size;
    a.open_count = 0;
    a.freed = false;
    if (poison_new_allocations()) {
        // cudaMalloc does not clear memory; NaN bytes make reads of never-written data visible.
        protect_locked(a, true);
        memset(a.ptr, 0xff, size);
        protect_locked(a, false);
    }
    for (unsigned i = 0; i < g_all_open_depth; ++i) open_locked(a);  // a kernel is running
    g_allocations.emplace(reinterpret_cast<uintptr_t>(a.map_base), a);
    g_live_bytes += size;
    *devPtr = a.ptr;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaFree(void* devPtr) {
    if (devPtr == nullptr) return cudaSuccess;
    std::lock_guard<std::mutex> lock(g_mutex);
    Allocation* a = find_locked(devPtr);
    if (a == nullptr || a->ptr != devPtr || a->freed) {
        report("cudaFree(%p): %s", devPtr,
               a == nullptr ? "not a pointer returned by cudaMalloc"
               : a->freed   ? "already freed (double cudaFree)"
                            : "points inside an allocation, not at its start");
        return record_error(cudaErrorInvalidValue);
    }
    // Keep the address range reserved (PROT_NONE, pages released) so that a later use of the
    // pointer faults as a use after free instead of landing in a new allocation.
    if (mmap(a->map_base, a->map_bytes, PROT_NONE,
             MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) == MAP_FAILED) {
        fatal("cannot release a device allocation");
    }
    a->freed = true;
    a->open_count = 0;
    g_live_bytes -= a->size;
    g_quarantine.push_back(reinterpret_cast<uintptr_t>(a->map_base));
    g_quarantine_bytes += a->map_bytes;
    while (g_quarantine_bytes > kQuarantineBytes) {
        auto it = g_allocations.find(g_quarantine.front());
        g_quarantine.pop_front();
        g_quarantine_bytes -= it->second.map_bytes;
        munmap(it->second.map_base, it->second.map_bytes);
        g_allocations.erase(it);
    }
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
    (void)flags;  // portable/mapped/write-combined: all host memory is the same here
    if (pHost == nullptr) return record_error(cudaErrorInvalidValue);
    *pHost = nullptr;
    if (size == 0) return cudaSuccess;
    void* p = nullptr;
    if (posix_memalign(&p, page_size(), size) != 0) return record_error(cudaErrorMemoryAllocation);
    std::lock_guard<std::mutex> lock(g_mutex);
    g_host_allocations.insert(p);
    *pHost = p;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMallocHost(void** ptr, size_t size) {
    return cudaHostAlloc(ptr, size, cudaHostAllocDefault);
}

cudaError_t CUDARTAPI cudaFreeHost(void* ptr) {
    if (ptr == nullptr) return cudaSuccess;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        if (g_host_allocations.erase(ptr) == 0) {
            report("cudaFreeHost(%p): not a pointer returned by cudaMallocHost/cudaHostAlloc", ptr);
            return record_error(cudaErrorInvalidValue);
        }
    }
    free(ptr);
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
    const cudaError_t e = copy("cudaMemcpy", dst, src, count, kind);
    if (e != cudaSuccess) return e;
    const cudaError_t pending = take_async_failure();  // cudaMemcpy synchronises
    return pending == cudaSuccess ? cudaSuccess : record_error(pending);
}

cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                                      cudaStream_t stream) {
    if (!stream_is_valid(stream)) return record_error(cudaErrorInvalidResourceHandle);
    return copy("cudaMemcpyAsync", dst, src, count, kind);
}

cudaError_t CUDARTAPI cudaMemset(void* devPtr, int value, size_t count) {
    return fill("cudaMemset", devPtr, value, count);
}

cudaError_t CUDARTAPI cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
    if (!stream_is_valid(stream)) return record_error(cudaErrorInvalidResourceHandle);
    return fill("cudaMemsetAsync", devPtr, value, count);
}

cudaError_t CUDARTAPI cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
    if (free_bytes == nullptr || total_bytes == nullptr) return record_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(g_mutex);
    *total_bytes = kDeviceMemoryBytes;
    *free_bytes = kDeviceMemoryBytes - g_live_bytes;
    return cudaSuccess;
}

}  // extern "C"
