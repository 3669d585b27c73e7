// Fibers for the CPU harness: one per CUDA thread, switched cooperatively at synchronisation
// points, on guard-paged stacks reused from block to block.
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(LETHE_HARNESS_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// x86-64 switches with a few instructions (callee-saved registers, no syscall); elsewhere, or with
// -DLETHE_HARNESS_UCONTEXT, swapcontext, which also saves the signal mask: ~6x slower (README.md).
#if !defined(__x86_64__) && !defined(LETHE_HARNESS_UCONTEXT)
#define LETHE_HARNESS_UCONTEXT 1
#endif

#if defined(LETHE_HARNESS_UCONTEXT)
#include <ucontext.h>
#endif

namespace lethe_harness::detail {

#if !defined(LETHE_HARNESS_UCONTEXT)

// void lethe_harness_switch(void** save_sp, void* load_sp): saves the callee-saved registers and
// the SSE/x87 control words on the current stack, stores the stack pointer in *save_sp, and
// resumes the context whose stack pointer is load_sp. lethe_harness_fiber_start is where a fresh
// fiber's first switch lands: it calls entry(arg) from r13(r12) and never returns.
extern "C" void lethe_harness_switch(void** save_sp, void* load_sp);
extern "C" void lethe_harness_fiber_start();
asm(R"(
    .text
    .globl lethe_harness_switch
    .type lethe_harness_switch, @function
lethe_harness_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size lethe_harness_switch, .-lethe_harness_switch

    .globl lethe_harness_fiber_start
    .type lethe_harness_fiber_start, @function
lethe_harness_fiber_start:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    callq *%r13
    ud2
    .cfi_endproc
    .size lethe_harness_fiber_start, .-lethe_harness_fiber_start
)");

#else

// makecontext passes only ints: the starting fiber's entry travels through this thread's storage.
struct UcontextStart {
    void (*entry)(void*);
    void* arg;
};
static thread_local UcontextStart tls_ucontext_start;

static void ucontext_trampoline() {
    const UcontextStart start = tls_ucontext_start;
    start.entry(start.arg);
    abort();  // entries suspend for good instead of returning
}

#endif

void fiber_prepare(Fiber* f, FiberHost* host, void (*entry)(void*), void* arg) {
#if defined(LETHE_HARNESS_ASAN)
    // A fiber abandoned mid-kernel (after a reported error) left its frames' redzones poisoned.
    __asan_unpoison_memory_region(f->stack_lo, f->stack_size);
#endif
    f->asan_fake_stack = nullptr;
#if !defined(LETHE_HARNESS_UCONTEXT)
    (void)host;
    // Frame popped by lethe_harness_switch: control words, r15..r12, rbx, rbp, return address.
    // The top is 16-byte aligned, so after the final ret the trampoline's call sees the ABI's
    // alignment.
    uintptr_t top = reinterpret_cast<uintptr_t>(f->stack_lo + f->stack_size) & ~uintptr_t{15};
    uint64_t* sp = reinterpret_cast<uint64_t*>(top) - 8;
    uint32_t mxcsr;
    uint16_t fpu_control;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpu_control));
    sp[0] = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fpu_control) << 32);
    sp[1] = 0;                                  // r15
    sp[2] = 0;                                  // r14
    sp[3] = reinterpret_cast<uint64_t>(entry);  // r13
    sp[4] = reinterpret_cast<uint64_t>(arg);    // r12
    sp[5] = 0;                                  // rbx
    sp[6] = 0;                                  // rbp
    sp[7] = reinterpret_cast<uint64_t>(&lethe_harness_fiber_start);
    f->saved_sp = sp;
#else
    if (f->ucontext == nullptr) f->ucontext = calloc(1, sizeof(ucontext_t));
    if (host->ucontext == nullptr) host->ucontext = calloc(1, sizeof(ucontext_t));
    ucontext_t* uc = static_cast<ucontext_t*>(f->ucontext);
    getcontext(uc);
    uc->uc_stack.ss_sp = f->stack_lo;
    uc->uc_stack.ss_size = f->stack_size;
    uc->uc_link = nullptr;
    makecontext(uc, &ucontext_trampoline, 0);
    f->saved_sp = reinterpret_cast<void*>(entry);  // read back at the first resume
    f->asan_fake_stack = arg;
#endif
}

void fiber_resume(FiberHost* host, Fiber* f) {
#if defined(LETHE_HARNESS_UCONTEXT)
    if (f->saved_sp != nullptr) {  // first resume: hand the entry to the trampoline
        tls_ucontext_start = {reinterpret_cast<void (*)(void*)>(f->saved_sp), f->asan_fake_stack};
        f->saved_sp = nullptr;
        f->asan_fake_stack = nullptr;
    }
#endif
#if defined(LETHE_HARNESS_ASAN)
    __sanitizer_start_switch_fiber(&host->asan_fake_stack, f->stack_lo, f->stack_size);
#endif
#if !defined(LETHE_HARNESS_UCONTEXT)
    lethe_harness_switch(&host->saved_sp, f->saved_sp);
#else
    swapcontext(static_cast<ucontext_t*>(host->ucontext), static_cast<ucontext_t*>(f->ucontext));
#endif
#if defined(LETHE_HARNESS_ASAN)
    __sanitizer_finish_switch_fiber(host->asan_fake_stack, nullptr, nullptr);
#endif
}

void fiber_suspend(Fiber* f, FiberHost* host, bool finished) {
#if defined(LETHE_HARNESS_ASAN)
    __sanitizer_start_switch_fiber(finished ? nullptr : &f->asan_fake_stack,
                                   host->asan_stack_bottom, host->asan_stack_size);
#else
    (void)finished;
#endif
#if !defined(LETHE_HARNESS_UCONTEXT)
    lethe_harness_switch(&f->saved_sp, host->saved_sp);
#else
    swapcontext(static_cast<ucontext_t*>(f->ucontext), static_cast<ucontext_t*>(host->ucontext));
#endif
#if defined(LETHE_HARNESS_ASAN)
    __sanitizer_finish_switch_fiber(f->asan_fake_stack, &host->asan_stack_bottom,
                                    &host->asan_stack_size);
#endif
}

void fiber_started(Fiber* f, FiberHost* host) {
#if defined(LETHE_HARNESS_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &host->asan_stack_bottom, &host->asan_stack_size);
    f->asan_fake_stack = nullptr;
#else
    (void)f;
    (void)host;
#endif
}

size_t fiber_stack_bytes() {
    static const size_t bytes = [] {
#if defined(LETHE_HARNESS_ASAN)
        size_t kib = 256;  // ASan's redzones roughly triple frame sizes
#else
        size_t kib = 64;
#endif
        if (const char* env = getenv("LETHE_HARNESS_STACK_KIB")) {
            const long v = strtol(env, nullptr, 10);
            if (v >= 16 && v <= 65536) kib = static_cast<size_t>(v);
        }
        // Whole pages: the guard-page layout in FiberStacks::reserve relies on it.
        const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
        return (kib * 1024 + page - 1) / page * page;
    }();
    return bytes;
}

FiberStacks::~FiberStacks() {
    for (const Region& r : regions_) {
        unregister_guarded_region(r.base);
        munmap(r.base, r.bytes);
    }
}

void FiberStacks::reserve(unsigned count) {
    if (stacks_.size() >= count) return;
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t stack = fiber_stack_bytes();
    // One mapping per growth step, [guard][stack][guard][stack]...: stacks grow down, so each
    // guard sits below its stack.
    const size_t missing = count - stacks_.size();
    const size_t bytes = missing * (page + stack);
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) fatal("cannot map %zu fiber stacks of %zu KiB", missing, stack / 1024);
    char* base = static_cast<char*>(mem);
    for (size_t i = 0; i < missing; ++i) {
        char* guard = base + i * (page + stack);
        if (mprotect(guard, page, PROT_NONE) != 0) fatal("mprotect of a fiber stack guard failed");
        stacks_.push_back(guard + page);
    }
    regions_.push_back({base, bytes});
    register_guarded_region(base, bytes, GuardedKind::fiber_stacks);
}

}  // namespace lethe_harness::detail
