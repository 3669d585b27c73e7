// The CUDA twins of KV-cache decoding (kernels/cuda/decode.cu: RoPE at absolute positions, the
// row scatter that appends to a cache, decoding attention; matmul.cu: the float32 logits product)
// against their CPU twins (kernels/cpu/decode.c, matmul.c) under the CPU execution harness:
// float32 and bfloat16, odd head dimensions and group sizes, rows of different lengths at
// arbitrary cache rows, and the same bits under other schedules.
#include "cuda_test_util.h"

#include <cublas_v2.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace cuda_test;

namespace {

constexpr LetheDtype kDtypes[] = {LETHE_F32, LETHE_BF16};

// n distinct values of [0, range) in random order.
std::vector<int64_t> distinct_rows(size_t n, int64_t range, uint64_t seed) {
    std::vector<int64_t> all(range);
    for (int64_t i = 0; i < range; i++) all[i] = i;
    Rng rng(seed);
    for (int64_t i = range - 1; i > 0; i--) std::swap(all[i], all[rng.below((int)i + 1)]);
    all.resize(n);
    return all;
}

// ---- RoPE at absolute positions -----------------------------------------------------------------

std::vector<float> rope_at_on_device(LetheDtype dtype, const std::vector<float>& x,
                                     const std::vector<int32_t>& pos, int heads, int hd,
                                     float theta) {
    DeviceTensor d_x(x, dtype);
    DeviceBuffer<int32_t> d_pos(pos);
    CHECK(cuda_rope_forward_at(d_x.get(), d_pos.get(), pos.size(), heads, hd, theta, dtype,
                               nullptr) == 0);
    return d_x.download();
}

void rope_at_case(LetheDtype dtype, size_t N, int heads, int hd, float theta, int max_pos,
                  uint64_t seed) {
    const std::string what = std::string("x ") + dtype_name(dtype) + " N=" + std::to_string(N) +
                             " heads=" + std::to_string(heads) + " hd=" + std::to_string(hd);
    const std::vector<float> x = as_stored(random_floats(N * heads * hd, seed), dtype);
    std::vector<int32_t> pos(N);
    Rng rng(seed + 1);
    for (int32_t& p : pos) p = rng.below(max_pos + 1);
    if (N > 1) pos[1] = max_pos;
    const std::vector<float> got = rope_at_on_device(dtype, x, pos, heads, hd, theta);
    std::vector<float> ref = x;
    for (size_t t = 0; t < N; t++)
        rope_forward_at(ref.data() + t * heads * hd, pos[t], heads, hd, theta);
    expect_close("rope_forward_at", what, dtype, got, ref);
}

void test_rope_forward_at_matches_cpu_twin() {
    uint64_t seed = 100;
    for (const LetheDtype dtype : kDtypes) {
        for (const size_t N : {1ul, 7ul, 33ul}) {
            for (const int hd : {2, 8, 24, 64, 128}) {
                for (const int heads : {1, 3, 8}) {
                    rope_at_case(dtype, N, heads, hd, 10000.0f, 2047, seed += 10);
                }
            }
        }
        // Positions up to 5000 with Llama 3's theta, and 65 heads of hd 8 (several per thread).
        rope_at_case(dtype, 40, 2, 128, 500000.0f, 5000, seed += 10);
        rope_at_case(dtype, 5, 65, 8, 10000.0f, 2000, seed += 10);
    }
}

// ---- row scatter --------------------------------------------------------------------------------

// Scatters n random-bit rows into a cache of `rows` random-bit rows; returns the cache's bytes
// after, and in *expected the bytes it must hold (computed on the host from the bytes before).
std::vector<uint8_t> rows_scatter_on_device(LetheDtype dtype, size_t n, int64_t rows, int width,
                                            uint64_t seed, std::vector<uint8_t>* expected) {
    const size_t es = dtype_size(dtype), row_bytes = width * es;
    // Raw random bits (NaNs with payloads, signed zeros, subnormals): a copy must keep them all.
    auto random_bytes = [](size_t count, uint64_t s) {
        Rng rng(s);
        std::vector<uint8_t> b(count);
        for (uint8_t& x : b) x = static_cast<uint8_t>(rng.next() >> 56);
        return b;
    };
    const std::vector<uint8_t> dst0 = random_bytes(rows * row_bytes, seed);
    const std::vector<uint8_t> src = random_bytes(n * row_bytes, seed + 1);
    const std::vector<int64_t> dst_row = distinct_rows(n, rows, seed + 2);
    DeviceBuffer<uint8_t> d_dst(dst0), d_src(src);
    DeviceBuffer<int64_t> d_rows(dst_row);
    CHECK(cuda_rows_scatter(d_dst.get(), d_rows.get(), d_src.get(), n, width, dtype, nullptr) ==
          0);
    if (expected != nullptr) {
        *expected = dst0;
        for (size_t r = 0; r < n; r++)
            memcpy(expected->data() + dst_row[r] * row_bytes, src.data() + r * row_bytes,
                   row_bytes);
    }
    return d_dst.download();
}

void test_rows_scatter_copies_bits_into_listed_rows_only() {
    // (rows scattered, cache rows): a full cache, and a few rows into a large one.
    const std::pair<size_t, int64_t> kScatterShapes[] = {{1, 1}, {1, 9}, {7, 30}, {100, 100},
                                                         {100, 513}};
    uint64_t seed = 300;
    for (const LetheDtype dtype : kDtypes) {
        for (const int width : {1, 8, 24, 257, 512, 1000}) {
            for (const auto& [n, rows] : kScatterShapes) {
                std::vector<uint8_t> expected;
                const std::vector<uint8_t> got =
                    rows_scatter_on_device(dtype, n, rows, width, seed += 10, &expected);
                if (got != expected) {
                    fprintf(stderr, "  rows_scatter %s width=%d n=%zu rows=%lld: cache differs\n",
                            dtype_name(dtype), width, n, static_cast<long long>(rows));
                    ++g_test_failures;
                }
            }
        }
    }
}

// ---- decoding attention -------------------------------------------------------------------------

struct DecodeCase {
    int H, KV, hd;
    std::vector<int32_t> lens;  // one query row per entry
};

struct DecodeInputs {
    std::vector<int64_t> cache_row;
    std::vector<int32_t> len;
    int64_t rows;  // cache rows
    std::vector<float> q, k, v;
};

// The rows' caches are disjoint runs of the cache, in an order unrelated to the rows', with
// unused rows between them.
DecodeInputs decode_inputs(const DecodeCase& c, LetheDtype dtype, uint64_t seed) {
    DecodeInputs in;
    const size_t n = c.lens.size();
    const std::vector<int64_t> order = distinct_rows(n, static_cast<int64_t>(n), seed);
    in.cache_row.assign(n, 0);
    in.len = c.lens;
    int64_t next = 3;
    for (size_t i = 0; i < n; i++) {
        const size_t r = static_cast<size_t>(order[i]);
        in.cache_row[r] = next;
        next += c.lens[r] + 5;
    }
    in.rows = next;
    const size_t kv = static_cast<size_t>(in.rows) * c.KV * c.hd;
    // Scores of standard deviation about 1 (hd 128) to 3 (hd 8): neither flat nor one-hot.
    in.q = as_stored(random_floats(n * c.H * c.hd, seed + 1, -3.0f, 3.0f), dtype);
    in.k = as_stored(random_floats(kv, seed + 2, -2.0f, 2.0f), dtype);
    in.v = as_stored(random_floats(kv, seed + 3), dtype);
    return in;
}

std::vector<float> decode_on_cpu(const DecodeCase& c, const DecodeInputs& in) {
    const size_t n = c.lens.size(), qrow = static_cast<size_t>(c.H) * c.hd;
    const size_t kvrow = static_cast<size_t>(c.KV) * c.hd;
    std::vector<float> out(n * qrow), scratch(*std::max_element(c.lens.begin(), c.lens.end()));
    for (size_t r = 0; r < n; r++) {
        const size_t first = static_cast<size_t>(in.cache_row[r]) * kvrow;
        attention_decode(out.data() + r * qrow, scratch.data(), in.q.data() + r * qrow,
                         in.k.data() + first, in.v.data() + first, in.len[r], c.H, c.KV, c.hd);
    }
    return out;
}

std::vector<float> decode_on_device(const DecodeCase& c, const DecodeInputs& in,
                                    LetheDtype dtype) {
    const size_t n = c.lens.size();
    DeviceTensor d_q(in.q, dtype), d_k(in.k, dtype), d_v(in.v, dtype);
    DeviceTensor d_out(n * c.H * c.hd, dtype);
    DeviceBuffer<int64_t> d_rows(in.cache_row);
    DeviceBuffer<int32_t> d_len(in.len);
    CHECK(cuda_attention_decode(d_out.get(), d_q.get(), d_k.get(), d_v.get(), d_rows.get(),
                                d_len.get(), n, c.H, c.KV, c.hd, dtype, nullptr) == 0);
    return d_out.download();
}

std::string describe(const DecodeCase& c, LetheDtype dtype) {
    std::string s = std::string("out ") + dtype_name(dtype) + " H=" + std::to_string(c.H) +
                    " KV=" + std::to_string(c.KV) + " hd=" + std::to_string(c.hd) + " lens {";
    for (size_t i = 0; i < c.lens.size(); i++) s += (i ? ", " : "") + std::to_string(c.lens[i]);
    return s + "}";
}

void test_attention_decode_matches_cpu_twin() {
    uint64_t seed = 500;
    const std::vector<std::pair<int, int>> groups = {{8, 4}, {6, 2}, {3, 3}};
    for (const LetheDtype dtype : kDtypes) {
        // hd 1, 5, 8, 24 (lanes per key 1, 8, 8, 32), 33, 64 (2 per lane), 96, 128 (4 per lane).
        for (const int hd : {1, 5, 8, 24, 33, 64, 96, 128}) {
            for (const auto& [H, KV] : groups) {
                const DecodeCase c{H, KV, hd, {7, 1, 513, 100, 64, 2}};
                const DecodeInputs in = decode_inputs(c, dtype, seed += 10);
                expect_close("attention_decode", describe(c, dtype), dtype,
                             decode_on_device(c, in, dtype), decode_on_cpu(c, in));
            }
        }
        // A long cache (several thousand positions), and one row of one position.
        for (const DecodeCase& c : {DecodeCase{8, 2, 64, {2100, 3}}, DecodeCase{4, 1, 128, {1}},
                                    DecodeCase{32, 8, 64, {1500}}}) {
            const DecodeInputs in = decode_inputs(c, dtype, seed += 10);
            expect_close("attention_decode", describe(c, dtype), dtype,
                         decode_on_device(c, in, dtype), decode_on_cpu(c, in));
        }
    }
}

void test_attention_decode_rejects_bad_arguments() {
    DeviceBuffer<float> a(64), b(64), c(64), d(64);
    DeviceBuffer<int64_t> rows(1);
    DeviceBuffer<int32_t> len(1);
    auto decode = [&](int H, int KV, int hd) {
        return cuda_attention_decode(a.get(), b.get(), c.get(), d.get(), rows.get(), len.get(), 1,
                                     H, KV, hd, LETHE_F32, nullptr);
    };
    CHECK(decode(4, 4, 0) == cudaErrorInvalidValue);
    CHECK(decode(4, 4, 129) == cudaErrorInvalidValue);  // hd over 128
    CHECK(decode(6, 4, 8) == cudaErrorInvalidValue);    // H not a multiple of KV
    CHECK(decode(4, 0, 8) == cudaErrorInvalidValue);
    CHECK(cuda_rope_forward_at(a.get(), len.get(), 1, 1, 7, 1e4f, LETHE_F32, nullptr) ==
          cudaErrorInvalidValue);  // odd hd
    CHECK(cuda_matmul_forward_f32out(a.get(), b.get(), c.get(), 1, 8, 8, LETHE_F32, nullptr,
                                     nullptr) == cudaErrorInvalidValue);  // no handle
}

// ---- float32 logits ------------------------------------------------------------------------------

std::vector<float> logits_on_device(LetheDtype dtype, const std::vector<float>& inp,
                                    const std::vector<float>& w, size_t N, int C, int OC,
                                    cublasHandle_t handle) {
    DeviceTensor d_inp(inp, dtype), d_w(w, dtype), d_out(N * OC, LETHE_F32);
    CHECK(cuda_matmul_forward_f32out(static_cast<float*>(d_out.get()), d_inp.get(), d_w.get(), N,
                                     C, OC, dtype, handle, nullptr) == 0);
    return d_out.download();
}

void test_matmul_forward_f32out_matches_cpu_twin() {
    cublasHandle_t handle = nullptr;
    CHECK(cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS);
    uint64_t seed = 700;
    for (const LetheDtype dtype : kDtypes) {
        for (const size_t N : {1ul, 7ul, 33ul}) {
            for (const int C : {8, 64, 257}) {
                for (const int OC : {8, 96, 257, 1000}) {
                    const std::vector<float> inp = as_stored(random_floats(N * C, seed += 10),
                                                             dtype);
                    const std::vector<float> w =
                        as_stored(random_floats(static_cast<size_t>(OC) * C, seed + 1), dtype);
                    const std::vector<float> got = logits_on_device(dtype, inp, w, N, C, OC,
                                                                    handle);
                    std::vector<float> ref(N * OC);
                    matmul_forward(ref.data(), inp.data(), w.data(), nullptr, N, C, OC);
                    const std::string what = std::string("out ") + dtype_name(dtype) + " N=" +
                                             std::to_string(N) + " C=" + std::to_string(C) +
                                             " OC=" + std::to_string(OC);
                    expect_close("matmul_forward_f32out", what, dtype, got, ref);
                    // The output is float32 in both modes: the bf16 inputs' products summed in
                    // fp32, unrounded, so also within the float32 tolerance (a bf16 rounding of
                    // the result would be ~4e-3 off).
                    if (dtype == LETHE_BF16)
                        expect_close("matmul_forward_f32out", what, LETHE_F32, got, ref);
                }
            }
        }
    }
    CHECK(cublasDestroy(handle) == CUBLAS_STATUS_SUCCESS);
}

// ---- determinism --------------------------------------------------------------------------------

void test_decoding_ops_are_deterministic() {
    cublasHandle_t handle = nullptr;
    CHECK(cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS);
    for (const LetheDtype dtype : kDtypes) {
        const DecodeCase c{6, 2, 96, {700, 1, 33, 260}};
        const DecodeInputs in = decode_inputs(c, dtype, 11);
        const DecodeCase small{8, 4, 8, {300, 5}};
        const DecodeInputs in_small = decode_inputs(small, dtype, 12);
        const std::vector<float> x = random_floats(9 * 4 * 64, 13);
        std::vector<int32_t> pos(9);
        for (size_t t = 0; t < pos.size(); t++) pos[t] = static_cast<int32_t>(t * 211 % 2000);
        const std::vector<float> inp = random_floats(7 * 96, 14), w = random_floats(257 * 96, 15);
        expect_deterministic(std::string("decoding ") + dtype_name(dtype), [&] {
            // bf16 values widen to float exactly: the floats' bytes carry the outputs' bits.
            const std::vector<float> a = decode_on_device(c, in, dtype);
            const std::vector<float> b = decode_on_device(small, in_small, dtype);
            const std::vector<float> r = rope_at_on_device(dtype, x, pos, 4, 64, 5e5f);
            const std::vector<float> l = logits_on_device(dtype, inp, w, 7, 96, 257, handle);
            std::vector<uint8_t> bytes;
            for (const std::vector<float>* v : {&a, &b, &r, &l}) {
                const uint8_t* p = reinterpret_cast<const uint8_t*>(v->data());
                bytes.insert(bytes.end(), p, p + v->size() * 4);
            }
            append_bytes(bytes, rows_scatter_on_device(dtype, 40, 90, 72, 16, nullptr));
            return bytes;
        });
    }
    CHECK(cublasDestroy(handle) == CUBLAS_STATUS_SUCCESS);
}

}  // namespace

int main() {
    skip_without_device();
    run_test("rope_forward_at_matches_cpu_twin", test_rope_forward_at_matches_cpu_twin);
    run_test("rows_scatter_copies_bits_into_listed_rows_only",
             test_rows_scatter_copies_bits_into_listed_rows_only);
    run_test("attention_decode_matches_cpu_twin", test_attention_decode_matches_cpu_twin);
    run_test("attention_decode_rejects_bad_arguments",
             test_attention_decode_rejects_bad_arguments);
    run_test("matmul_forward_f32out_matches_cpu_twin", test_matmul_forward_f32out_matches_cpu_twin);
    run_test("decoding_ops_are_deterministic", test_decoding_ops_are_deterministic);
    print_worst_errors();
    return test_exit_code();
}
