// SIMT execution for the CPU harness: a block's CUDA threads run as fibers with barrier and warp
// semantics, resumed in seeded random order so races show up; misuse is reported, not hung.
#include "harness.h"
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace lethe_harness::detail {

namespace {

constexpr unsigned kMaxBlockThreads = 1024;
constexpr unsigned kWarpSize = 32;

uint64_t env_u64(const char* name, uint64_t fallback) {
    const char* v = getenv(name);
    if (v == nullptr || *v == '\0') return fallback;
    char* end = nullptr;
    const unsigned long long parsed = strtoull(v, &end, 0);
    if (end == v || *end != '\0') fatal("%s=%s is not an unsigned integer", name, v);
    return parsed;
}

std::atomic<uint64_t>& seed_setting() {
    static std::atomic<uint64_t> seed{env_u64("LETHE_HARNESS_SEED", 1)};
    return seed;
}

std::atomic<unsigned>& worker_setting() {
    static std::atomic<unsigned> workers{
        static_cast<unsigned>(env_u64("LETHE_HARNESS_THREADS", 1))};
    return workers;
}

std::atomic<uint64_t> g_launches{0};
std::atomic<uint64_t> g_blocks{0};
std::atomic<uint64_t> g_cuda_threads{0};
std::atomic<uint64_t> g_switches{0};

// splitmix64: one 64-bit state, good enough to shuffle threads and blocks.
struct Rng {
    uint64_t state = 0;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    uint64_t below(uint64_t n) {
        return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
    }
};

uint64_t mix(uint64_t a, uint64_t b, uint64_t c) {
    Rng r{a * 0x9e3779b97f4a7c15ull ^ b};
    r.state ^= r.next() + c;
    return r.next();
}

enum class ThreadState : uint8_t { runnable, at_barrier, at_warp_op, at_activemask, exited };
enum class WarpOp : uint8_t { shuffle, ballot, sync };

struct Block;

// One CUDA thread of the running block.
struct SimtThread {
    Fiber fiber;
    Block* block = nullptr;
    uint3 thread_idx{};
    unsigned linear = 0, lane = 0, warp = 0;
    ThreadState state = ThreadState::exited;
    // Where it waits, for diagnostics and barrier matching.
    const char* what = "";
    const char* file = "";
    int line = 0;
    // Its part of a warp collective.
    WarpOp op = WarpOp::sync;
    unsigned mask = 0;
    uint64_t value = 0;
    ShuffleMode mode = ShuffleMode::idx;
    int lane_operand = 0;
    int width = 32;
    int predicate = 0;
    BarrierReduce reduce = BarrierReduce::none;
    uint64_t result = 0;
};

struct WarpState {
    unsigned exited;              // lanes that returned, or do not exist in a partial last warp
    unsigned waiting;             // lanes blocked in a warp collective
    unsigned activemask_waiting;  // lanes blocked in __activemask
    unsigned runnable;            // lanes running or queued to run
};

// The threads that may run next: FIFO under seed 0, otherwise a seeded random pick.
class RunQueue {
public:
    void clear() { head_ = count_ = 0; }
    bool empty() const { return count_ == 0; }
    void push(SimtThread* t) { slots_[(head_ + count_++) % kMaxBlockThreads] = t; }
    SimtThread* pop_front() {
        SimtThread* t = slots_[head_];
        head_ = (head_ + 1) % kMaxBlockThreads;
        --count_;
        return t;
    }
    SimtThread* pop_random(Rng& rng) {
        const unsigned pick = (head_ + static_cast<unsigned>(rng.below(count_))) % kMaxBlockThreads;
        SimtThread* t = slots_[pick];
        slots_[pick] = slots_[head_];
        slots_[head_] = t;
        return pop_front();
    }

private:
    SimtThread* slots_[kMaxBlockThreads];
    unsigned head_ = 0, count_ = 0;
};

// What the OS threads running one launch share.
struct LaunchRun {
    const LaunchSpec* spec;
    uint64_t seed;
    uint64_t serial;
    unsigned threads_per_block;
    uint64_t blocks;
    uint64_t order_stride;  // blocks run in the order (k * stride + offset) mod blocks
    uint64_t order_offset;
    std::atomic<uint64_t> next_block{0};
    std::atomic<bool> failed{false};
};

struct Block {
    LaunchRun* launch = nullptr;
    uint3 block_idx{};
    unsigned n = 0;
    SimtThread* threads = nullptr;
    WarpState warps[kMaxBlockThreads / kWarpSize];
    unsigned n_exited = 0;
    unsigned n_at_barrier = 0;
    unsigned barrier_arrived = 0;  // of the barrier completed last, for __syncthreads_count/and/or
    unsigned barrier_true = 0;
    RunQueue queue;
    Rng rng;
    bool seeded = false;
    bool failed = false;
};

// Everything one OS thread needs to run blocks; reused from launch to launch.
struct Worker {
    FiberHost host;
    FiberStacks stacks;
    std::unique_ptr<SimtThread[]> threads{new SimtThread[kMaxBlockThreads]};
    Block block;
    SimtThread* current = nullptr;
    char* smem_map = nullptr;  // dynamic shared memory, ending at a guard page
    size_t smem_map_bytes = 0;
    char* smem_end = nullptr;  // the guard page
    char* smem = nullptr;
    uint64_t switches = 0, blocks = 0, cuda_threads = 0;

    Worker() {
        const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
        const size_t usable = (kMaxDynamicSmemOptin + page - 1) / page * page;
        smem_map_bytes = usable + page;
        void* mem = mmap(nullptr, smem_map_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) fatal("cannot map dynamic shared memory");
        smem_map = static_cast<char*>(mem);
        if (mprotect(smem_map + usable, page, PROT_NONE) != 0) fatal("mprotect failed");
        register_guarded_region(smem_map, smem_map_bytes, GuardedKind::dynamic_smem);
        smem_end = smem_map + usable;
        smem = smem_map;
    }
    ~Worker() {
        unregister_guarded_region(smem_map);
        munmap(smem_map, smem_map_bytes);
    }
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;
};

thread_local std::unique_ptr<Worker> tls_worker_owner;
thread_local Worker* tls_worker = nullptr;

Worker& this_worker() {
    if (tls_worker == nullptr) {
        tls_worker_owner.reset(new Worker);
        tls_worker = tls_worker_owner.get();
    }
    return *tls_worker;
}

SimtThread* current_thread(const char* intrinsic) {
    if (tls_worker == nullptr || tls_worker->current == nullptr) {
        fatal("%s called outside a kernel launched through LETHE_LAUNCH", intrinsic);
    }
    return tls_worker->current;
}

SimtThread& thread_at(Block& b, unsigned warp, unsigned lane) {
    return b.threads[warp * kWarpSize + lane];
}

void suspend(SimtThread* t) { fiber_suspend(&t->fiber, &tls_worker->host, false); }

void make_runnable(Block& b, SimtThread* t) {
    t->state = ThreadState::runnable;
    ++b.warps[t->warp].runnable;
    b.queue.push(t);
}

bool same_site(const SimtThread& a, const SimtThread& b) {
    return a.line == b.line && (a.file == b.file || strcmp(a.file, b.file) == 0);
}

// ---- diagnostics ----

size_t describe_thread(char* out, size_t cap, const Block& b, const SimtThread* t) {
    const LaunchRun& L = *b.launch;
    int n = snprintf(out, cap, "kernel %s, block (%u,%u,%u)", L.spec->kernel_name, b.block_idx.x,
                     b.block_idx.y, b.block_idx.z);
    if (t != nullptr && n >= 0 && static_cast<size_t>(n) < cap) {
        n +=
            snprintf(out + n, cap - static_cast<size_t>(n), ", thread (%u,%u,%u) (warp %u lane %u)",
                     t->thread_idx.x, t->thread_idx.y, t->thread_idx.z, t->warp, t->lane);
    }
    return n < 0 ? 0 : (static_cast<size_t>(n) < cap ? static_cast<size_t>(n) : cap - 1);
}

void vreport_failure(Block& b, const SimtThread* subject, const char* fmt, va_list ap) {
    char where[256];
    describe_thread(where, sizeof where, b, subject);
    char what[1024];
    vsnprintf(what, sizeof what, fmt, ap);
    report("%s: %s [schedule seed %llu, launch %llu of this process]", where, what,
           static_cast<unsigned long long>(b.launch->seed),
           static_cast<unsigned long long>(b.launch->serial));
    b.failed = true;
    b.launch->failed.store(true);
}

// A failure found by a running fiber: report it and never run this fiber (or block) again.
[[noreturn]] void fail(Block& b, const SimtThread* subject, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
[[noreturn]] void fail(Block& b, const SimtThread* subject, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport_failure(b, subject, fmt, ap);
    va_end(ap);
    suspend(tls_worker->current);
    fatal("a failed CUDA thread was resumed");
}

// A failure found by the scheduler between fibers (deadlock).
void fail_block(Block& b, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void fail_block(Block& b, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport_failure(b, nullptr, fmt, ap);
    va_end(ap);
}

int describe_wait(char* out, size_t cap, const Block& b, const SimtThread& t) {
    switch (t.state) {
        case ThreadState::runnable: return snprintf(out, cap, "runnable");
        case ThreadState::exited: return snprintf(out, cap, "exited");
        case ThreadState::at_barrier:
            return snprintf(out, cap, "wait in %s at %s:%d", t.what, t.file, t.line);
        case ThreadState::at_activemask:
            return snprintf(out, cap, "wait in __activemask at %s:%d", t.file, t.line);
        case ThreadState::at_warp_op: {
            const WarpState& w = b.warps[t.warp];
            return snprintf(out, cap, "wait in %s at %s:%d for lanes 0x%08x of mask 0x%08x", t.what,
                            t.file, t.line, t.mask & ~w.waiting, t.mask);
        }
    }
    return 0;
}

// Names every group of consecutive threads that wait alike, so the reader sees who waits for whom.
void report_deadlock(Block& b) {
    char text[2048];
    size_t used = 0;
    unsigned groups = 0;
    for (unsigned i = 0; i < b.n;) {
        char desc[256];
        describe_wait(desc, sizeof desc, b, b.threads[i]);
        unsigned j = i + 1;
        for (; j < b.n; ++j) {
            char next[256];
            describe_wait(next, sizeof next, b, b.threads[j]);
            if (strcmp(next, desc) != 0) break;
        }
        if (b.threads[i].state != ThreadState::exited && used < sizeof text) {
            if (groups++ == 8) {
                used += static_cast<size_t>(snprintf(text + used, sizeof text - used, "; ..."));
                break;
            }
            char range[32];
            if (j - i == 1) {
                snprintf(range, sizeof range, "thread %u", i);
            } else {
                snprintf(range, sizeof range, "threads %u-%u", i, j - 1);
            }
            used += static_cast<size_t>(snprintf(text + used, sizeof text - used, "%s%s %s",
                                                 groups > 1 ? "; " : "", range, desc));
        }
        i = j;
    }
    fail_block(b, "deadlock: no thread of the block can proceed (linear thread ids): %s", text);
}

// ---- barriers ----

void try_complete_barrier(Block& b) {
    if (b.n_at_barrier == 0 || b.n_at_barrier + b.n_exited != b.n) return;
    // Every live thread waits at a barrier; exited threads count as arrived (Volta and later).
    const SimtThread* first = nullptr;
    unsigned at_first = 0, predicates = 0;
    for (unsigned i = 0; i < b.n; ++i) {
        const SimtThread& t = b.threads[i];
        if (t.state != ThreadState::at_barrier) continue;
        if (first == nullptr) first = &t;
        if (!same_site(*first, t)) {
            fail(b, &t,
                 "barrier divergence: this thread waits in %s at %s:%d, but %u thread(s) starting "
                 "with (%u,%u,%u) wait in %s at %s:%d; every live thread of a block must reach "
                 "the same barrier",
                 t.what, t.file, t.line, at_first, first->thread_idx.x, first->thread_idx.y,
                 first->thread_idx.z, first->what, first->file, first->line);
        }
        ++at_first;
        predicates += t.predicate != 0;
    }
    b.barrier_arrived = b.n_at_barrier;
    b.barrier_true = predicates;
    b.n_at_barrier = 0;
    for (unsigned i = 0; i < b.n; ++i) {
        if (b.threads[i].state == ThreadState::at_barrier) make_runnable(b, &b.threads[i]);
    }
}

// ---- warp collectives ----

// The lane a shuffle reads from, per the PTX ISA's shfl.sync pseudo-code (c = clamp | segment).
unsigned shuffle_source(const SimtThread& t) {
    const int lane = static_cast<int>(t.lane);
    const int segment = (kWarpSize - t.width) & 0x1f;  // c[12:8]
    const int clamp = t.mode == ShuffleMode::up ? 0 : 0x1f;
    const int b = t.lane_operand & 0x1f;
    const int min_lane = lane & segment;
    const int max_lane = min_lane | (clamp & ~segment);
    int j = lane;
    bool in_range = false;
    switch (t.mode) {
        case ShuffleMode::up:
            j = lane - b;
            in_range = j >= max_lane;
            break;
        case ShuffleMode::down:
            j = lane + b;
            in_range = j <= max_lane;
            break;
        case ShuffleMode::bfly:
            j = lane ^ b;
            in_range = j <= max_lane;
            break;
        case ShuffleMode::idx:
            j = min_lane | (b & ~segment);
            in_range = j <= max_lane;
            break;
    }
    return static_cast<unsigned>(in_range ? j : lane);
}

void complete_warp_group(Block& b, unsigned warp, unsigned mask) {
    WarpState& w = b.warps[warp];
    const SimtThread& leader = thread_at(b, warp, static_cast<unsigned>(__builtin_ctz(mask)));
    uint64_t ballot = 0;
    for (unsigned m = mask; m != 0; m &= m - 1) {
        const SimtThread& t = thread_at(b, warp, static_cast<unsigned>(__builtin_ctz(m)));
        if (t.mask != mask) {
            fail(b, &t,
                 "%s at %s:%d with mask 0x%08x meets lane %u's %s at %s:%d with mask 0x%08x: all "
                 "lanes named in a mask must pass the same mask",
                 t.what, t.file, t.line, t.mask, leader.lane, leader.what, leader.file, leader.line,
                 mask);
        }
        if (t.op != leader.op) {
            fail(b, &t,
                 "%s at %s:%d meets lane %u's %s at %s:%d: lanes of a mask must execute the "
                 "same warp collective",
                 t.what, t.file, t.line, leader.lane, leader.what, leader.file, leader.line);
        }
        ballot |= static_cast<uint64_t>(t.predicate != 0) << t.lane;
    }
    for (unsigned m = mask; m != 0; m &= m - 1) {
        SimtThread& t = thread_at(b, warp, static_cast<unsigned>(__builtin_ctz(m)));
        if (leader.op == WarpOp::shuffle) {
            const unsigned src = shuffle_source(t);
            // A lane outside the mask has no defined value on the GPU: an all-ones pattern (NaN
            // for floats) makes any use of it visible.
            t.result = (mask >> src & 1u) ? thread_at(b, warp, src).value : ~uint64_t{0};
        } else {
            t.result = ballot;
        }
    }
    w.waiting &= ~mask;
    for (unsigned m = mask; m != 0; m &= m - 1) {
        make_runnable(b, &thread_at(b, warp, static_cast<unsigned>(__builtin_ctz(m))));
    }
}

// After `lane` arrived: complete every group whose mask names it and has now fully arrived.
void complete_ready_warp_groups(Block& b, unsigned warp, unsigned lane) {
    WarpState& w = b.warps[warp];
    unsigned candidates = w.waiting;
    while (candidates != 0) {
        const unsigned x = static_cast<unsigned>(__builtin_ctz(candidates));
        const unsigned mask = thread_at(b, warp, x).mask;
        candidates &= ~(1u << x);
        if ((mask >> lane & 1u) && (w.waiting & mask) == mask) {
            complete_warp_group(b, warp, mask);
            candidates &= w.waiting;
        }
    }
}

// __activemask returns the lanes that reach the same __activemask together: it waits until no
// lane of the warp can run any more, then groups the waiting lanes by call site.
void try_resolve_activemask(Block& b, unsigned warp) {
    WarpState& w = b.warps[warp];
    if (w.runnable != 0 || w.activemask_waiting == 0) return;
    unsigned pending = w.activemask_waiting;
    w.activemask_waiting = 0;
    while (pending != 0) {
        const SimtThread& first = thread_at(b, warp, static_cast<unsigned>(__builtin_ctz(pending)));
        unsigned group = 0;
        for (unsigned m = pending; m != 0; m &= m - 1) {
            const unsigned lane = static_cast<unsigned>(__builtin_ctz(m));
            if (same_site(first, thread_at(b, warp, lane))) group |= 1u << lane;
        }
        for (unsigned m = group; m != 0; m &= m - 1) {
            SimtThread& t = thread_at(b, warp, static_cast<unsigned>(__builtin_ctz(m)));
            t.result = group;
            make_runnable(b, &t);
        }
        pending &= ~group;
    }
}

// The current thread stops running: account for it, then let whatever it unblocks proceed.
void block_current(Block& b, SimtThread* t, ThreadState state) {
    t->state = state;
    --b.warps[t->warp].runnable;
}

void thread_finished(SimtThread* t) {
    Block& b = *t->block;
    WarpState& w = b.warps[t->warp];
    block_current(b, t, ThreadState::exited);
    ++b.n_exited;
    w.exited |= 1u << t->lane;
    for (unsigned m = w.waiting; m != 0; m &= m - 1) {
        const SimtThread& waiter = thread_at(b, t->warp, static_cast<unsigned>(__builtin_ctz(m)));
        if (waiter.mask >> t->lane & 1u) {
            fail(b, &waiter, "%s at %s:%d with mask 0x%08x waits for lane %u, which has exited",
                 waiter.what, waiter.file, waiter.line, waiter.mask, t->lane);
        }
    }
    try_complete_barrier(b);
    try_resolve_activemask(b, t->warp);
    fiber_suspend(&t->fiber, &tls_worker->host, true);
    fatal("an exited CUDA thread was resumed");
}

void thread_main(void* arg) {
    SimtThread* t = static_cast<SimtThread*>(arg);
    fiber_started(&t->fiber, &tls_worker->host);
    const LaunchSpec& spec = *t->block->launch->spec;
    spec.run_thread(spec.bound);
    thread_finished(t);
}

uint64_t warp_collective(SimtThread* t, WarpOp op, unsigned mask, const char* what,
                         const char* file, int line) {
    Block& b = *t->block;
    WarpState& w = b.warps[t->warp];
    t->op = op;
    t->mask = mask;
    t->what = what;
    t->file = file;
    t->line = line;
    if (!(mask >> t->lane & 1u)) {
        fail(b, t, "%s at %s:%d with mask 0x%08x, which does not name the calling lane %u", what,
             file, line, mask, t->lane);
    }
    if (mask & w.exited) {
        fail(b, t,
             "%s at %s:%d with mask 0x%08x names lanes 0x%08x, which have exited or do not "
             "exist (the block has %u threads)",
             what, file, line, mask, mask & w.exited, b.n);
    }
    block_current(b, t, ThreadState::at_warp_op);
    w.waiting |= 1u << t->lane;
    complete_ready_warp_groups(b, t->warp, t->lane);
    try_resolve_activemask(b, t->warp);
    suspend(t);
    return t->result;
}

// ---- running blocks ----

void run_block(Worker& wk, LaunchRun& L, uint64_t block_linear) {
    const LaunchSpec& s = *L.spec;
    Block& b = wk.block;
    b.launch = &L;
    b.n = L.threads_per_block;
    b.threads = wk.threads.get();
    b.block_idx = {static_cast<unsigned>(block_linear % s.grid.x),
                   static_cast<unsigned>(block_linear / s.grid.x % s.grid.y),
                   static_cast<unsigned>(block_linear / (uint64_t{s.grid.x} * s.grid.y))};
    b.seeded = L.seed != 0;
    b.rng.state = mix(L.seed, L.serial, block_linear);
    b.queue.clear();
    b.n_exited = b.n_at_barrier = 0;
    b.failed = false;
    tls_block_idx = b.block_idx;
    tls_block_dim = {s.block.x, s.block.y, s.block.z};
    tls_grid_dim = {s.grid.x, s.grid.y, s.grid.z};

    const unsigned warps = (b.n + kWarpSize - 1) / kWarpSize;
    for (unsigned w = 0; w < warps; ++w) {
        const unsigned lanes = b.n - w * kWarpSize < kWarpSize ? b.n - w * kWarpSize : kWarpSize;
        const unsigned present = lanes == kWarpSize ? 0xffffffffu : (1u << lanes) - 1u;
        b.warps[w] = {~present, 0, 0, lanes};
    }
    wk.stacks.reserve(b.n);
    for (unsigned i = 0; i < b.n; ++i) {
        SimtThread& t = b.threads[i];
        t.block = &b;
        t.linear = i;
        t.lane = i % kWarpSize;
        t.warp = i / kWarpSize;
        t.thread_idx = {i % s.block.x, i / s.block.x % s.block.y, i / (s.block.x * s.block.y)};
        t.state = ThreadState::runnable;
        t.fiber.stack_lo = wk.stacks.stack_lo(i);
        t.fiber.stack_size = fiber_stack_bytes();
        fiber_prepare(&t.fiber, &wk.host, &thread_main, &t);
        b.queue.push(&t);
    }
    // Dynamic shared memory ends at a guard page, and starts as NaN bytes: reading it before
    // writing it shows, as does running past the size given at launch.
    const size_t smem = (s.dynamic_smem + 15) & ~size_t{15};
    wk.smem = wk.smem_end - smem;
    memset(wk.smem, 0xff, smem);

    uint64_t switches = 0;
    while (!b.failed && !b.queue.empty()) {
        SimtThread* t = b.seeded ? b.queue.pop_random(b.rng) : b.queue.pop_front();
        wk.current = t;
        tls_thread_idx = t->thread_idx;
        fiber_resume(&wk.host, &t->fiber);
        wk.current = nullptr;
        switches += 2;
    }
    if (!b.failed && b.n_exited != b.n) report_deadlock(b);
    wk.switches += switches;
    wk.blocks += 1;
    wk.cuda_threads += b.n;
}

void run_blocks(LaunchRun& L) {
    Worker& wk = this_worker();
    ensure_signal_stack();
    while (!L.failed.load(std::memory_order_relaxed)) {
        const uint64_t k = L.next_block.fetch_add(1);
        if (k >= L.blocks) break;
        const uint64_t block = static_cast<uint64_t>(
            (static_cast<unsigned __int128>(k) * L.order_stride + L.order_offset) % L.blocks);
        run_block(wk, L, block);
    }
    g_switches += wk.switches;
    g_blocks += wk.blocks;
    g_cuda_threads += wk.cuda_threads;
    wk.switches = wk.blocks = wk.cuda_threads = 0;
}

// OS threads that help the launching thread run blocks; created on first need, never joined
// (they sleep on the condition variable when idle).
class WorkerPool {
public:
    void run(LaunchRun& L, unsigned workers) {
        std::lock_guard<std::mutex> one_launch_at_a_time(run_mutex_);  // host threads may race
        std::unique_lock<std::mutex> lock(mutex_);
        while (threads_.size() + 1 < workers) {
            const unsigned index = static_cast<unsigned>(threads_.size());
            threads_.emplace_back([this, index] { loop(index); });
            threads_.back().detach();
        }
        job_ = &L;
        helpers_wanted_ = workers - 1;
        helpers_running_ = workers - 1;
        ++generation_;
        lock.unlock();
        wake_.notify_all();
        run_blocks(L);
        lock.lock();
        done_.wait(lock, [this] { return helpers_running_ == 0; });
        job_ = nullptr;
    }

private:
    void loop(unsigned index) {
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return generation_ != seen; });
            seen = generation_;
            if (index >= helpers_wanted_) continue;
            LaunchRun* job = job_;
            lock.unlock();
            run_blocks(*job);
            lock.lock();
            if (--helpers_running_ == 0) done_.notify_all();
        }
    }

    std::mutex run_mutex_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    std::vector<std::thread> threads_;
    LaunchRun* job_ = nullptr;
    unsigned helpers_wanted_ = 0, helpers_running_ = 0;
    uint64_t generation_ = 0;
};

WorkerPool& pool() {
    static WorkerPool* p = new WorkerPool;  // outlives static destructors; threads never exit
    return *p;
}

std::atomic<uint64_t> g_launch_serial{0};

const char* block_or_grid_error(const LaunchSpec& s) {
    const dim3& b = s.block;
    const dim3& g = s.grid;
    if (b.x == 0 || b.y == 0 || b.z == 0) return "a block dimension is 0";
    if (b.x > 1024 || b.y > 1024 || b.z > 64) return "block dimensions exceed (1024, 1024, 64)";
    if (uint64_t{b.x} * b.y * b.z > kMaxBlockThreads) return "more than 1024 threads per block";
    if (g.x == 0 || g.y == 0 || g.z == 0) return "a grid dimension is 0";
    if (g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        return "grid dimensions exceed (2^31-1, 65535, 65535)";
    }
    return nullptr;
}

uint64_t gcd(uint64_t a, uint64_t b) {
    while (b != 0) {
        const uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

}  // namespace

// ---- the intrinsics' library side ----

int block_barrier(BarrierReduce reduce, int predicate, const char* file, int line) {
    static const char* const names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and",
                                        "__syncthreads_or"};
    const char* what = names[static_cast<int>(reduce)];
    SimtThread* t = current_thread(what);
    Block& b = *t->block;
    t->what = what;
    t->file = file;
    t->line = line;
    t->predicate = predicate != 0;
    t->reduce = reduce;
    block_current(b, t, ThreadState::at_barrier);
    ++b.n_at_barrier;
    try_complete_barrier(b);
    try_resolve_activemask(b, t->warp);
    suspend(t);
    switch (reduce) {
        case BarrierReduce::none: return 0;
        case BarrierReduce::count: return static_cast<int>(b.barrier_true);
        case BarrierReduce::all: return b.barrier_true == b.barrier_arrived;
        case BarrierReduce::any: return b.barrier_true != 0;
    }
    return 0;
}

uint64_t warp_shuffle(unsigned mask, uint64_t value, ShuffleMode mode, int lane_operand, int width,
                      const char* intrinsic, const char* file, int line) {
    SimtThread* t = current_thread(intrinsic);
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        fail(*t->block, t, "%s at %s:%d with width %d: the width must be a power of 2 up to 32",
             intrinsic, file, line, width);
    }
    t->value = value;
    t->mode = mode;
    t->lane_operand = lane_operand;
    t->width = width;
    return warp_collective(t, WarpOp::shuffle, mask, intrinsic, file, line);
}

unsigned warp_ballot(unsigned mask, int predicate, const char* intrinsic, const char* file,
                     int line) {
    SimtThread* t = current_thread(intrinsic);
    t->predicate = predicate != 0;
    return static_cast<unsigned>(warp_collective(t, WarpOp::ballot, mask, intrinsic, file, line));
}

void warp_sync(unsigned mask, const char* file, int line) {
    SimtThread* t = current_thread("__syncwarp");
    warp_collective(t, WarpOp::sync, mask, "__syncwarp", file, line);
}

unsigned active_mask(const char* file, int line) {
    SimtThread* t = current_thread("__activemask");
    Block& b = *t->block;
    t->what = "__activemask";
    t->file = file;
    t->line = line;
    block_current(b, t, ThreadState::at_activemask);
    b.warps[t->warp].activemask_waiting |= 1u << t->lane;
    try_resolve_activemask(b, t->warp);
    suspend(t);
    return static_cast<unsigned>(t->result);
}

void yield_point() {
    if (tls_worker == nullptr || tls_worker->current == nullptr) return;  // host code
    SimtThread* t = tls_worker->current;
    t->block->queue.push(t);  // stays runnable; the schedule decides who goes next
    suspend(t);
}

void trap(const char* file, int line) {
    SimtThread* t = current_thread("__trap");
    fail(*t->block, t, "__trap() at %s:%d", file, line);
}

void* dynamic_smem() {
    current_thread("dynamic shared memory");
    return tls_worker->smem;
}

size_t describe_current_thread(char* out, size_t capacity) {
    if (tls_worker == nullptr || tls_worker->current == nullptr || capacity == 0) return 0;
    return describe_thread(out, capacity, tls_worker->block, tls_worker->current);
}

void run_launch(const LaunchSpec& spec) {
    if (tls_worker != nullptr && tls_worker->current != nullptr) {
        fatal("kernel %s launched from inside a kernel: dynamic parallelism is not emulated",
              spec.kernel_name);
    }
    if (const char* why = block_or_grid_error(spec)) {
        report("launch of %s with grid (%u,%u,%u), block (%u,%u,%u): %s", spec.kernel_name,
               spec.grid.x, spec.grid.y, spec.grid.z, spec.block.x, spec.block.y, spec.block.z,
               why);
        record_error(cudaErrorInvalidConfiguration);
        return;
    }
    const size_t smem_limit = max_dynamic_smem(spec.kernel_id);
    if (spec.dynamic_smem > smem_limit) {
        report(
            "launch of %s with %zu bytes of dynamic shared memory: the limit is %zu (raise it "
            "with cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, "
            "bytes), up to %zu)",
            spec.kernel_name, spec.dynamic_smem, smem_limit, kMaxDynamicSmemOptin);
        record_error(cudaErrorInvalidValue);
        return;
    }
    if (!stream_is_valid(spec.stream)) {
        report("launch of %s on a stream that does not exist", spec.kernel_name);
        record_error(cudaErrorInvalidResourceHandle);
        return;
    }
    install_fault_handler();

    LaunchRun L;
    L.spec = &spec;
    L.seed = seed_setting().load();
    L.serial = g_launch_serial.fetch_add(1);
    L.threads_per_block = spec.block.x * spec.block.y * spec.block.z;
    L.blocks = uint64_t{spec.grid.x} * spec.grid.y * spec.grid.z;
    L.order_stride = 1;
    L.order_offset = 0;
    if (L.seed != 0 && L.blocks > 1) {
        // Blocks also run in a seeded order: a kernel whose blocks depend on each other's order
        // (which CUDA never promises) gives different results under different seeds.
        Rng r{mix(L.seed, L.serial, ~uint64_t{0})};
        do {
            L.order_stride = 1 + r.below(L.blocks - 1);
        } while (gcd(L.order_stride, L.blocks) != 1);
        L.order_offset = r.below(L.blocks);
    }

    {
        DeviceAccess kernels_see_device_memory;
        const unsigned configured = worker_setting().load();
        const unsigned workers =
            static_cast<unsigned>(L.blocks < configured ? L.blocks : configured);
        if (workers <= 1) {
            run_blocks(L);
        } else {
            pool().run(L, workers);
        }
    }
    g_launches += 1;
    if (L.failed.load()) {
        record_error(cudaErrorLaunchFailure);
        record_async_failure(cudaErrorLaunchFailure);
    }
}

}  // namespace lethe_harness::detail

namespace lethe_harness {

void set_schedule_seed(uint64_t seed) { detail::seed_setting().store(seed); }
uint64_t schedule_seed() { return detail::seed_setting().load(); }

void set_worker_threads(unsigned count) {
    detail::worker_setting().store(count < 1 ? 1 : (count > 64 ? 64 : count));
}
unsigned worker_threads() { return detail::worker_setting().load(); }

Stats stats() {
    return {detail::g_launches.load(), detail::g_blocks.load(), detail::g_cuda_threads.load(),
            detail::g_switches.load()};
}

}  // namespace lethe_harness
