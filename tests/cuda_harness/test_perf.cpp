// Speed of the harness against the CI budget (all backend kernel tests in 5 minutes): fiber
// switches per second and a 512 x 256 launch with 4 barriers; fails only on wrong results or a > 30
// s launch.
#include "harness.h"
#include "test_kernels.h"
#include "test_util.h"

#include <time.h>

#include <vector>

namespace {

double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void test_fiber_switch_rate() {
    lethe_harness::set_schedule_seed(1);
    constexpr int kBlocks = 64, kThreads = 256, kRounds = 64;
    DeviceBuffer<int> out(kBlocks);
    const lethe_harness::Stats before = lethe_harness::stats();
    const double t0 = now_s();
    CHECK_CUDA(launch_sync_rounds(out.get(), kBlocks, kThreads, kRounds));
    const double dt = now_s() - t0;
    const lethe_harness::Stats after = lethe_harness::stats();
    const double switches = static_cast<double>(after.fiber_switches - before.fiber_switches);
    printf("  %d blocks x %d threads x %d __syncwarp: %.0f fiber switches in %.3f s = %.1f M/s\n",
           kBlocks, kThreads, kRounds, switches, dt, switches / dt * 1e-6);
    for (int v : out.download()) CHECK(v == kRounds * (kRounds - 1) / 2);
}

void test_four_barrier_launch_time() {
    constexpr int kBlocks = 512;
    std::vector<float> in(static_cast<size_t>(kBlocks) * 256);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 1000);
    DeviceBuffer<float> d_in(in), d_out(in.size());
    for (uint64_t seed : {0ull, 1ull}) {
        lethe_harness::set_schedule_seed(seed);
        const lethe_harness::Stats before = lethe_harness::stats();
        const double t0 = now_s();
        CHECK_CUDA(launch_four_barriers(d_in.get(), d_out.get(), kBlocks));
        const double dt = now_s() - t0;
        const lethe_harness::Stats after = lethe_harness::stats();
        printf(
            "  512 x 256 threads, 4 barriers, seed %llu: %.3f s (%.0f thread runs/s, %.1f M "
            "fiber switches/s)\n",
            static_cast<unsigned long long>(seed), dt,
            static_cast<double>(after.cuda_threads - before.cuda_threads) / dt,
            static_cast<double>(after.fiber_switches - before.fiber_switches) / dt * 1e-6);
        CHECK(dt < 30.0);
        const std::vector<float> out = d_out.download();
        bool ok = true;
        for (int b = 0; b < kBlocks; ++b) {
            for (int t = 0; t < 256; ++t) {
                // out[t] = 2 * s0[(255 - t + 1) % 256] with s0 the block's input
                ok &= out[b * 256 + t] == 2.0f * in[b * 256 + (256 - t) % 256];
            }
        }
        CHECK(ok);
    }
}

}  // namespace

int main() {
    run_test("fiber_switch_rate", test_fiber_switch_rate);
    run_test("four_barrier_launch_time", test_four_barrier_launch_time);
    return test_exit_code();
}
