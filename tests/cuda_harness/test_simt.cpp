// Tests of the harness's SIMT execution: exact results under every schedule, races caught by it,
// barrier/warp/atomic semantics, bf16, dynamic shared memory, broken synchronisation reported.
#include "harness.h"
#include "test_kernels.h"
#include "test_util.h"

#include <math.h>

#include <vector>

namespace {

constexpr int kRows = 8;
constexpr int kRowLength = 1000;

std::vector<float> row_sum_input() {
    std::vector<float> in(static_cast<size_t>(kRows) * kRowLength);
    for (size_t i = 0; i < in.size(); ++i)
        in[i] = static_cast<float>(static_cast<int>(i % 13) - 6 + static_cast<int>(i / kRowLength));
    return in;
}

std::vector<float> row_sum_expected(const std::vector<float>& in) {
    std::vector<float> sums(kRows, 0.0f);
    for (int r = 0; r < kRows; ++r) {
        for (int i = 0; i < kRowLength; ++i) sums[r] += in[static_cast<size_t>(r) * kRowLength + i];
    }
    return sums;  // small integers: exact in any order
}

std::vector<float> run_row_sum(const std::vector<float>& in, bool with_barrier, uint64_t seed) {
    lethe_harness::set_schedule_seed(seed);
    DeviceBuffer<float> d_in(in);
    DeviceBuffer<float> d_out(kRows);
    CHECK_CUDA(launch_row_sum(d_in.get(), d_out.get(), kRows, kRowLength, 256, with_barrier));
    return d_out.download();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void test_block_reduction_is_exact_under_every_schedule() {
    const std::vector<float> in = row_sum_input();
    const std::vector<float> expected = row_sum_expected(in);
    for (uint64_t seed : {0ull, 1ull, 2ull, 3ull, 12345ull}) {
        CHECK(same_bits(run_row_sum(in, true, seed), expected));
    }
}

void test_missing_syncthreads_in_reduction_is_caught() {
    const std::vector<float> in = row_sum_input();
    const std::vector<float> expected = row_sum_expected(in);
    int caught = 0;
    for (uint64_t seed = 0; seed < 16; ++seed)
        caught += !same_bits(run_row_sum(in, false, seed), expected);
    printf("  reduction without __syncthreads: wrong under %d of 16 seeds\n", caught);
    CHECK(caught > 0);
}

std::vector<int> run_shift(bool with_barrier, uint64_t seed) {
    lethe_harness::set_schedule_seed(seed);
    constexpr int kBlocks = 4;
    std::vector<int> in(kBlocks * 256);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i) * 7 + 1;
    DeviceBuffer<int> d_in(in);
    DeviceBuffer<int> d_out(in.size());
    CHECK_CUDA(launch_shift(d_in.get(), d_out.get(), kBlocks, with_barrier));
    return d_out.download();
}

void test_race_hidden_by_index_order_is_caught_by_shuffled_order() {
    std::vector<int> expected(4 * 256);
    for (int i = 0; i < 4 * 256; ++i) expected[i] = i % 256 == 0 ? 0 : (i - 1) * 7 + 1;
    CHECK(run_shift(false, 0) == expected);  // in index order the writer always runs first
    int caught = 0;
    for (uint64_t seed = 1; seed <= 8; ++seed) caught += run_shift(false, seed) != expected;
    printf("  neighbour read without __syncthreads: wrong under %d of 8 shuffled seeds\n", caught);
    CHECK(caught > 0);
    for (uint64_t seed = 0; seed <= 3; ++seed) CHECK(run_shift(true, seed) == expected);
}

void test_results_do_not_depend_on_worker_threads() {
    const std::vector<float> in = row_sum_input();
    lethe_harness::set_worker_threads(2);
    const std::vector<float> two = run_row_sum(in, true, 7);
    lethe_harness::set_worker_threads(1);
    const std::vector<float> one = run_row_sum(in, true, 7);
    CHECK(same_bits(one, two));
    CHECK(same_bits(one, row_sum_expected(in)));
}

void test_votes_with_partial_masks() {
    lethe_harness::set_schedule_seed(3);
    constexpr int kThreads = 64;
    std::vector<int> pred(kThreads);
    for (int t = 0; t < kThreads; ++t) pred[t] = (t * 37 % 11) < 4;  // mixed
    for (int t = 1; t < 32; t += 2) pred[t] = 1;  // all true among the odd lanes of warp 0
    DeviceBuffer<int> d_pred(pred);
    DeviceBuffer<unsigned> ballots(kThreads), low(kThreads), active(kThreads);
    DeviceBuffer<int> anys(kThreads), alls(kThreads);
    CHECK_CUDA(cudaMemset(low.get(), 0, kThreads * sizeof(unsigned)));
    CHECK_CUDA(launch_votes(d_pred.get(), ballots.get(), anys.get(), alls.get(), low.get(),
                            active.get(), kThreads));
    const std::vector<unsigned> b = ballots.download(), l = low.download(), a = active.download();
    const std::vector<int> any = anys.download(), all = alls.download();
    for (int t = 0; t < kThreads; ++t) {
        const int warp = t / 32, lane = t % 32;
        const unsigned mask = lane % 2 == 0 ? 0x55555555u : 0xaaaaaaaau;
        unsigned expect = 0, expect_low = 0;
        for (int x = 0; x < 32; ++x) {
            const bool p = pred[warp * 32 + x] != 0;
            if ((mask >> x & 1u) && p) expect |= 1u << x;
            if (x < 16 && p) expect_low |= 1u << x;
        }
        CHECK(b[t] == expect);
        CHECK(any[t] == (expect != 0));
        CHECK(all[t] == (expect == mask));
        CHECK(l[t] == (lane < 16 ? expect_low : 0u));
        CHECK(a[t] == (lane < 8 ? 0x000000ffu : lane < 20 ? 0x000fff00u : 0u));
    }
    CHECK(all[1] == 1);  // odd lanes of warp 0 are all true
}

void test_shuffles_with_width_16() {
    lethe_harness::set_schedule_seed(5);
    constexpr int kThreads = 64;
    DeviceBuffer<int> idx(kThreads), up(kThreads), down(kThreads), xr(kThreads);
    DeviceBuffer<double> xd(kThreads);
    DeviceBuffer<__nv_bfloat16> xb(kThreads);
    CHECK_CUDA(
        launch_shuffles(idx.get(), up.get(), down.get(), xr.get(), xd.get(), xb.get(), kThreads));
    const std::vector<int> i = idx.download(), u = up.download(), d = down.download(),
                           x = xr.download();
    const std::vector<double> dd = xd.download();
    const std::vector<__nv_bfloat16> bb = xb.download();
    for (int t = 0; t < kThreads; ++t) {
        const int segment = t & ~15, in_segment = t & 15;
        CHECK(i[t] == 100 + segment + 3);
        CHECK(u[t] == 100 + (in_segment >= 2 ? t - 2 : t));
        CHECK(d[t] == 100 + (in_segment + 3 < 16 ? t + 3 : t));
        CHECK(x[t] == 100 + (t ^ 5));
        CHECK(dd[t] == 100.5 + (t ^ 1));
        CHECK(__bfloat162float(bb[t]) == static_cast<float>(100 + (t ^ 1)));
    }
}

void test_dynamic_shared_memory() {
    lethe_harness::set_schedule_seed(2);
    for (int n : {128, 20000}) {
        constexpr int kBlocks = 3;
        std::vector<float> in(static_cast<size_t>(kBlocks) * n);
        for (size_t k = 0; k < in.size(); ++k) in[k] = static_cast<float>(k);
        DeviceBuffer<float> d_in(in);
        DeviceBuffer<float> d_out(in.size());
        cudaError_t e = launch_reverse(d_in.get(), d_out.get(), kBlocks, n, 128);
        if (n * 4 > 48 * 1024) {
            // Over 48 KiB needs the opt-in, as on the GPU.
            CHECK(e == cudaErrorInvalidValue);
            CHECK_CUDA(allow_reverse_smem(n * 4));
            e = launch_reverse(d_in.get(), d_out.get(), kBlocks, n, 128);
        }
        CHECK_CUDA(e);
        const std::vector<float> out = d_out.download();
        bool ok = true;
        for (int blk = 0; blk < kBlocks; ++blk) {
            for (int k = 0; k < n; ++k) {
                ok &= out[static_cast<size_t>(blk) * n + k] ==
                      in[static_cast<size_t>(blk) * n + n - 1 - k];
            }
        }
        CHECK(ok);
    }
    CHECK(allow_reverse_smem(300 * 1024) == cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
}

void test_atomics() {
    lethe_harness::set_schedule_seed(11);
    constexpr int kBlocks = 4, kThreads = 64, kTotal = kBlocks * kThreads;
    AtomicCounters init;
    memset(&init, 0, sizeof init);
    init.i_max = -1;
    init.i_min = 1;
    init.exch = -1;
    init.bf16_sum = __float2bfloat16_rn(0.0f);
    DeviceBuffer<AtomicCounters> c(std::vector<AtomicCounters>{init});
    CHECK_CUDA(launch_atomics(c.get(), kBlocks, kThreads));
    const AtomicCounters r = c.download()[0];
    CHECK(r.i_sum == kTotal);
    CHECK(r.u_sum == 2u * kTotal);
    CHECK(r.f_sum == 0.5f * kTotal);
    CHECK(r.d_sum == 0.25 * kTotal);
    CHECK(r.ull_sum == 3ull * kTotal);
    CHECK(__bfloat162float(r.bf16_sum) == static_cast<float>(kTotal));
    CHECK(r.i_max == kTotal - 1);
    CHECK(r.i_min == -(kTotal - 1));
    CHECK(r.cas_sum == kTotal * (kTotal - 1) / 2);
    CHECK(r.exch >= 0 && r.exch < kTotal);
}

void test_spin_lock_on_atomics_terminates() {
    for (uint64_t seed : {0ull, 4ull}) {
        lethe_harness::set_schedule_seed(seed);
        DeviceBuffer<int> lock(std::vector<int>{0});
        DeviceBuffer<int> counter(std::vector<int>{0});
        CHECK_CUDA(launch_spinlock(lock.get(), counter.get(), 128));
        CHECK(counter.download()[0] == 128);
    }
}

// Round to nearest even, NaN to the canonical 0x7fff: what cvt.rn.bf16.f32 does on the GPU.
unsigned short reference_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    return static_cast<unsigned short>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float bf16_bits_to_float(unsigned short b) {
    const uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void test_bf16_conversions_round_like_the_gpu() {
    std::vector<float> in = {1.0f,
                             1.0f + 0x1p-8f,
                             1.0f + 3 * 0x1p-8f,
                             1.0f + 0x1p-8f + 0x1p-20f,
                             -2.5f,
                             3.14159265f,
                             65504.0f,
                             1e-40f,
                             -1e-45f,
                             0.0f,
                             -0.0f,
                             3.4028235e38f,
                             -3.4028235e38f,
                             INFINITY,
                             -INFINITY,
                             NAN,
                             1e30f,
                             0x1p-126f,
                             0x1.fffffep-127f,
                             255.5f,
                             256.5f};
    for (int k = 0; k < 200; ++k) in.push_back(static_cast<float>(k * k) * 0.0137f - 91.0f);
    const int n = static_cast<int>(in.size());
    DeviceBuffer<float> d_in(in), back(n), square(n);
    DeviceBuffer<unsigned short> bits(n);
    CHECK_CUDA(launch_bf16_round_trip(d_in.get(), bits.get(), back.get(), square.get(), n));
    const std::vector<unsigned short> b = bits.download();
    const std::vector<float> f = back.download(), sq = square.download();
    for (int k = 0; k < n; ++k) {
        const unsigned short expect = reference_bf16_bits(in[k]);
        if (isnan(in[k])) {
            CHECK(isnan(f[k]));  // any NaN is a NaN; the payload is not part of the contract
            continue;
        }
        if (b[k] != expect) {
            fprintf(stderr, "  bf16(%a) = 0x%04x, expected 0x%04x\n", static_cast<double>(in[k]),
                    b[k], expect);
        }
        CHECK(b[k] == expect);
        const float x = bf16_bits_to_float(expect);
        CHECK(memcmp(&f[k], &x, 4) == 0);
        const float exact_square = x * x;  // 8-bit by 8-bit mantissas: exact unless it overflows
        const float expect_square = bf16_bits_to_float(reference_bf16_bits(exact_square));
        CHECK(sq[k] == expect_square || (isnan(sq[k]) && isnan(expect_square)));
    }
}

void test_divergent_barrier_is_reported_not_hung() {
    lethe_harness::set_schedule_seed(1);
    alarm(30);  // a hang fails the test instead of the CI job's timeout
    DeviceBuffer<int> out(64);
    CHECK(launch_divergent_barrier(out.get()) == cudaErrorLaunchFailure);
    // A GPU reports a failed kernel at the next synchronisation too.
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure);
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    alarm(0);
}

void test_broken_warp_collectives_are_reported() {
    alarm(30);
    DeviceBuffer<int> out(32);
    for (uint64_t seed : {0ull, 1ull, 2ull}) {
        lethe_harness::set_schedule_seed(seed);
        CHECK(launch_shuffle_with_exited_lane(out.get()) == cudaErrorLaunchFailure);
        CHECK(launch_shuffle_waits_for_barrier(out.get()) == cudaErrorLaunchFailure);
        CHECK(launch_ballot_without_own_lane(out.get()) == cudaErrorLaunchFailure);
        CHECK(launch_trap() == cudaErrorLaunchFailure);
    }
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure);  // the pending failure, once
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
    CHECK(cudaGetLastError() == cudaSuccess);
    alarm(0);
}

void test_exited_threads_count_as_arrived_at_barriers() {
    lethe_harness::set_schedule_seed(9);
    DeviceBuffer<int> out(64);
    CHECK_CUDA(launch_early_exit_barrier(out.get(), 256));
    const std::vector<int> r = out.download();
    for (int t = 0; t < 64; ++t) CHECK(r[t] == 63 - t);
}

void test_barrier_reductions() {
    lethe_harness::set_schedule_seed(6);
    DeviceBuffer<int> out(4);
    CHECK_CUDA(launch_barrier_reductions(out.get(), 100));
    const std::vector<int> r = out.download();
    CHECK(r[0] == 34);  // 0, 3, ..., 99
    CHECK(r[1] == 0);
    CHECK(r[2] == 1);
    CHECK(r[3] == 1);
}

void test_bad_launch_configuration_is_an_error() {
    DeviceBuffer<int> out(1);
    CHECK(launch_too_many_threads(out.get()) == cudaErrorInvalidConfiguration);
    CHECK(cudaGetLastError() == cudaSuccess);  // cleared by the launcher's cudaGetLastError
}

void test_wmma_bf16_16x16x16() {
    lethe_harness::set_schedule_seed(8);
    std::vector<__nv_bfloat16> a(256), b(256);
    std::vector<float> c(256);
    for (int k = 0; k < 256; ++k) {
        a[k] = __float2bfloat16_rn(static_cast<float>((k * 7) % 13) * 0.25f - 1.0f);
        b[k] = __float2bfloat16_rn(static_cast<float>((k * 5) % 11) * 0.5f - 2.0f);
        c[k] = static_cast<float>(k % 9) - 4.0f;
    }
    DeviceBuffer<__nv_bfloat16> da(a), db(b);
    DeviceBuffer<float> dc(c), dd(256);
    CHECK_CUDA(launch_wmma_16x16x16(da.get(), db.get(), dc.get(), dd.get()));
    const std::vector<float> d = dd.download();
    for (int i = 0; i < 16; ++i) {
        for (int j = 0; j < 16; ++j) {
            double acc = c[i * 16 + j];
            for (int k = 0; k < 16; ++k) {
                // a is row-major (i, k); b is column-major (k, j) at b[j * 16 + k].
                acc += static_cast<double>(__bfloat162float(a[i * 16 + k])) *
                       __bfloat162float(b[j * 16 + k]);
            }
            CHECK(fabs(d[i * 16 + j] - 2.0 * acc) <= 1e-4);
        }
    }
}

void test_template_kernel_through_pointer() {
    std::vector<float> v(100, 1.5f);
    DeviceBuffer<float> d(v);
    CHECK_CUDA(launch_scale_template(d.get(), 100, 2.0f));
    for (float x : d.download()) CHECK(x == 3.0f);
}

}  // namespace

int main() {
    run_test("block_reduction_is_exact_under_every_schedule",
             test_block_reduction_is_exact_under_every_schedule);
    run_test("missing_syncthreads_in_reduction_is_caught",
             test_missing_syncthreads_in_reduction_is_caught);
    run_test("race_hidden_by_index_order_is_caught_by_shuffled_order",
             test_race_hidden_by_index_order_is_caught_by_shuffled_order);
    run_test("results_do_not_depend_on_worker_threads",
             test_results_do_not_depend_on_worker_threads);
    run_test("votes_with_partial_masks", test_votes_with_partial_masks);
    run_test("shuffles_with_width_16", test_shuffles_with_width_16);
    run_test("dynamic_shared_memory", test_dynamic_shared_memory);
    run_test("atomics", test_atomics);
    run_test("spin_lock_on_atomics_terminates", test_spin_lock_on_atomics_terminates);
    run_test("bf16_conversions_round_like_the_gpu", test_bf16_conversions_round_like_the_gpu);
    run_test("divergent_barrier_is_reported_not_hung", test_divergent_barrier_is_reported_not_hung);
    run_test("broken_warp_collectives_are_reported", test_broken_warp_collectives_are_reported);
    run_test("exited_threads_count_as_arrived_at_barriers",
             test_exited_threads_count_as_arrived_at_barriers);
    run_test("barrier_reductions", test_barrier_reductions);
    run_test("bad_launch_configuration_is_an_error", test_bad_launch_configuration_is_an_error);
    run_test("wmma_bf16_16x16x16", test_wmma_bf16_16x16x16);
    run_test("template_kernel_through_pointer", test_template_kernel_through_pointer);
    return test_exit_code();
}
