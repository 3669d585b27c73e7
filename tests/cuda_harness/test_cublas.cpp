// Tests of the harness's cuBLAS over OpenBLAS: every transpose combination at odd sizes with padded
// leading dimensions, fp32 and bf16 storage, strided batches, against a naive triple loop.
#include "harness.h"
#include "test_util.h"

#include <cublas_v2.h>

#include <math.h>

#include <vector>

namespace {

constexpr int kM = 17, kN = 13, kK = 19;

// A column-major matrix in host memory, values exactly representable in bf16.
struct HostMatrix {
    int rows, cols, ld;
    std::vector<float> v;
    HostMatrix(int r, int c, int pad, int seed)
        : rows(r), cols(c), ld(r + pad), v(static_cast<size_t>(ld) * c) {
        for (size_t i = 0; i < v.size(); ++i) {
            v[i] = __bfloat162float(__float2bfloat16_rn(
                static_cast<float>((i * 31 + seed * 7) % 23) * 0.125f - 1.375f));
        }
    }
    float at(int r, int c) const { return v[static_cast<size_t>(c) * ld + r]; }
};

std::vector<__nv_bfloat16> to_bf16(const std::vector<float>& f) {
    std::vector<__nv_bfloat16> b(f.size());
    for (size_t i = 0; i < f.size(); ++i) b[i] = __float2bfloat16_rn(f[i]);
    return b;
}

// C = alpha op(A) op(B) + beta C in double, column-major, as cuBLAS defines it.
std::vector<double> naive_gemm(bool ta, bool tb, const HostMatrix& A, const HostMatrix& B,
                               const HostMatrix& C, double alpha, double beta) {
    std::vector<double> out(static_cast<size_t>(kM) * kN);
    for (int i = 0; i < kM; ++i) {
        for (int j = 0; j < kN; ++j) {
            double acc = 0.0;
            for (int p = 0; p < kK; ++p) {
                const double a = ta ? A.at(p, i) : A.at(i, p);
                const double b = tb ? B.at(j, p) : B.at(p, j);
                acc += a * b;
            }
            out[static_cast<size_t>(j) * kM + i] =
                alpha * acc + (beta != 0.0 ? beta * C.at(i, j) : 0.0);
        }
    }
    return out;
}

bool close_f32(float got, double want) { return fabs(got - want) <= 1e-5 * (1.0 + fabs(want)); }

// The bf16 result is the fp32 result rounded once: within half a bf16 ulp of the exact value,
// plus fp32 summation error.
bool close_bf16(__nv_bfloat16 got, double want) {
    return fabs(__bfloat162float(got) - want) <= fabs(want) * 0x1p-8 + 1e-5;
}

struct Case {
    bool ta, tb;
    cudaDataType ab, c;
    float beta;
    cublasComputeType_t compute;
};

void run_gemm_case(cublasHandle_t h, const Case& cs) {
    const HostMatrix A(cs.ta ? kK : kM, cs.ta ? kM : kK, 3, 1);
    const HostMatrix B(cs.tb ? kN : kK, cs.tb ? kK : kN, 2, 2);
    const HostMatrix C(kM, kN, 5, 3);
    const float alpha = 1.5f;
    const std::vector<double> want = naive_gemm(cs.ta, cs.tb, A, B, C, alpha, cs.beta);
    const cublasOperation_t oa = cs.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t ob = cs.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    bool ok = true;
    if (cs.ab == CUDA_R_32F) {
        DeviceBuffer<float> dA(A.v), dB(B.v), dC(C.v.size());
        if (cs.beta != 0.0f) dC.upload(C.v);  // else C keeps the NaN of fresh device memory
        CHECK(cublasGemmEx(h, oa, ob, kM, kN, kK, &alpha, dA.get(), CUDA_R_32F, A.ld, dB.get(),
                           CUDA_R_32F, B.ld, &cs.beta, dC.get(), CUDA_R_32F, C.ld, cs.compute,
                           CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
        const std::vector<float> got = dC.download();
        for (int j = 0; j < kN; ++j) {
            for (int i = 0; i < kM; ++i)
                ok &= close_f32(got[static_cast<size_t>(j) * C.ld + i],
                                want[static_cast<size_t>(j) * kM + i]);
        }
    } else {
        DeviceBuffer<__nv_bfloat16> dA(to_bf16(A.v)), dB(to_bf16(B.v));
        if (cs.c == CUDA_R_32F) {
            DeviceBuffer<float> dC(C.v.size());
            if (cs.beta != 0.0f) dC.upload(C.v);
            CHECK(cublasGemmEx(h, oa, ob, kM, kN, kK, &alpha, dA.get(), CUDA_R_16BF, A.ld, dB.get(),
                               CUDA_R_16BF, B.ld, &cs.beta, dC.get(), CUDA_R_32F, C.ld, cs.compute,
                               CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
            const std::vector<float> got = dC.download();
            for (int j = 0; j < kN; ++j) {
                for (int i = 0; i < kM; ++i)
                    ok &= close_f32(got[static_cast<size_t>(j) * C.ld + i],
                                    want[static_cast<size_t>(j) * kM + i]);
            }
        } else {
            DeviceBuffer<__nv_bfloat16> dC(C.v.size());
            if (cs.beta != 0.0f) dC.upload(to_bf16(C.v));
            CHECK(cublasGemmEx(h, oa, ob, kM, kN, kK, &alpha, dA.get(), CUDA_R_16BF, A.ld, dB.get(),
                               CUDA_R_16BF, B.ld, &cs.beta, dC.get(), CUDA_R_16BF, C.ld, cs.compute,
                               CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
            const std::vector<__nv_bfloat16> got = dC.download();
            for (int j = 0; j < kN; ++j) {
                for (int i = 0; i < kM; ++i)
                    ok &= close_bf16(got[static_cast<size_t>(j) * C.ld + i],
                                     want[static_cast<size_t>(j) * kM + i]);
            }
        }
    }
    if (!ok) {
        fprintf(stderr, "  GemmEx mismatch: ta=%d tb=%d ab=%d c=%d beta=%g\n", cs.ta, cs.tb,
                static_cast<int>(cs.ab), static_cast<int>(cs.c), static_cast<double>(cs.beta));
    }
    CHECK(ok);
}

void test_gemm_ex_matches_naive_for_all_transposes() {
    cublasHandle_t h;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    CHECK(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS);
    for (bool ta : {false, true}) {
        for (bool tb : {false, true}) {
            for (float beta : {0.0f, 0.5f}) {
                run_gemm_case(h, {ta, tb, CUDA_R_32F, CUDA_R_32F, beta, CUBLAS_COMPUTE_32F});
                run_gemm_case(h,
                              {ta, tb, CUDA_R_32F, CUDA_R_32F, beta, CUBLAS_COMPUTE_32F_FAST_TF32});
                run_gemm_case(h, {ta, tb, CUDA_R_16BF, CUDA_R_32F, beta, CUBLAS_COMPUTE_32F});
                run_gemm_case(h, {ta, tb, CUDA_R_16BF, CUDA_R_16BF, beta, CUBLAS_COMPUTE_32F});
            }
        }
    }
    CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
}

void test_sgemm_and_strided_batches() {
    cublasHandle_t h;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    cudaStream_t s;
    CHECK_CUDA(cudaStreamCreate(&s));
    CHECK(cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS);
    constexpr int kBatch = 3;
    const HostMatrix A(kK, kM, 1, 4);  // used transposed
    const HostMatrix B(kK, kN, 0, 5);
    const HostMatrix C(kM, kN, 0, 6);
    const long long sa = static_cast<long long>(A.v.size()) + 7,
                    sb = static_cast<long long>(B.v.size()),
                    sc = static_cast<long long>(C.v.size()) + 1;
    std::vector<float> a(static_cast<size_t>(sa) * kBatch), b(static_cast<size_t>(sb) * kBatch),
        c(static_cast<size_t>(sc) * kBatch);
    for (int q = 0; q < kBatch; ++q) {
        for (size_t i = 0; i < A.v.size(); ++i) a[q * sa + i] = A.v[i] * static_cast<float>(q + 1);
        for (size_t i = 0; i < B.v.size(); ++i) b[q * sb + i] = B.v[i];
        for (size_t i = 0; i < C.v.size(); ++i) c[q * sc + i] = C.v[i];
    }
    const float alpha = 0.75f, beta = -1.0f;
    const std::vector<double> want = naive_gemm(true, false, A, B, C, alpha, beta);
    const std::vector<double> want0 = naive_gemm(true, false, A, B, C, alpha, 0.0);
    DeviceBuffer<float> dA(a), dB(b), dC(c);
    CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, kM, kN, kK, &alpha, dA.get(), A.ld,
                                    sa, dB.get(), B.ld, sb, &beta, dC.get(), C.ld, sc,
                                    kBatch) == CUBLAS_STATUS_SUCCESS);
    std::vector<float> got = dC.download();
    bool ok = true;
    for (int q = 0; q < kBatch; ++q) {
        for (int j = 0; j < kN; ++j) {
            for (int i = 0; i < kM; ++i) {
                const size_t o = static_cast<size_t>(j) * kM + i;
                // op(A_q) = (q + 1) op(A): the product scales, the beta C term does not.
                const double w = (q + 1) * (want[o] - beta * C.at(i, j)) + beta * C.at(i, j);
                ok &= close_f32(got[q * sc + static_cast<size_t>(j) * C.ld + i], w);
            }
        }
    }
    CHECK(ok);

    DeviceBuffer<__nv_bfloat16> hA(to_bf16(a)), hB(to_bf16(b)), hC(c.size());
    const float zero = 0.0f;
    CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, kM, kN, kK, &alpha, hA.get(),
                                     CUDA_R_16BF, A.ld, sa, hB.get(), CUDA_R_16BF, B.ld, sb, &zero,
                                     hC.get(), CUDA_R_16BF, C.ld, sc, kBatch, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
    const std::vector<__nv_bfloat16> got16 = hC.download();
    ok = true;
    for (int q = 0; q < kBatch; ++q) {
        for (int j = 0; j < kN; ++j) {
            for (int i = 0; i < kM; ++i) {
                ok &= close_bf16(got16[q * sc + static_cast<size_t>(j) * C.ld + i],
                                 (q + 1) * want0[static_cast<size_t>(j) * kM + i]);
            }
        }
    }
    CHECK(ok);

    DeviceBuffer<float> single(C.v.size());
    CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, kM, kN, kK, &alpha, dA.get(), A.ld, dB.get(),
                      B.ld, &zero, single.get(), C.ld) == CUBLAS_STATUS_SUCCESS);
    got = single.download();
    ok = true;
    for (int j = 0; j < kN; ++j) {
        for (int i = 0; i < kM; ++i)
            ok &= close_f32(got[static_cast<size_t>(j) * C.ld + i],
                            want0[static_cast<size_t>(j) * kM + i]);
    }
    CHECK(ok);
    CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
    CHECK_CUDA(cudaStreamDestroy(s));
}

void test_device_pointer_mode() {
    cublasHandle_t h;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_DEVICE) == CUBLAS_STATUS_SUCCESS);
    DeviceBuffer<float> scalars(std::vector<float>{2.0f, 0.0f});
    DeviceBuffer<float> a(std::vector<float>{1, 2, 3, 4}), b(std::vector<float>{1, 0, 0, 1}), c(4);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, scalars.get(), a.get(), 2, b.get(), 2,
                      scalars.get() + 1, c.get(), 2) == CUBLAS_STATUS_SUCCESS);
    CHECK(c.download() == (std::vector<float>{2, 4, 6, 8}));
    CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
}

void test_invalid_calls_are_rejected() {
    cublasHandle_t h;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    const float one = 1.0f;
    DeviceBuffer<float> a(16), b(16), c(16);
    std::vector<float> host(16);
    // lda smaller than the rows of A
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a.get(), 3, b.get(), 4, &one,
                      c.get(), 4) == CUBLAS_STATUS_INVALID_VALUE);
    // a matrix reaching past the end of its allocation
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 5, 4, &one, a.get(), 4, b.get(), 4, &one,
                      c.get(), 4) == CUBLAS_STATUS_INVALID_VALUE);
    // host memory where device memory belongs
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, host.data(), 4, b.get(), 4, &one,
                      c.get(), 4) == CUBLAS_STATUS_INVALID_VALUE);
    // mixed input types
    CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a.get(), CUDA_R_32F, 4, b.get(),
                       CUDA_R_16BF, 4, &one, c.get(), CUDA_R_32F, 4, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(strcmp(cublasGetStatusString(CUBLAS_STATUS_SUCCESS), "success") == 0);
    CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
}

}  // namespace

// y = alpha x + y as one fused multiply-add per element, x = alpha x; unit increments only.
void test_saxpy_and_sscal() {
    cublasHandle_t h;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    std::vector<float> x = {1e8f, 0.5f, -3.0f, 1.0f / 3.0f, 7.0f};
    std::vector<float> y = {1.0f, 0.25f, 3.0f, 1.0f, -7.0f};
    DeviceBuffer<float> dx(x), dy(y);
    const float one = 1.0f, third = 1.0f / 3.0f;
    CHECK(cublasSaxpy(h, 5, &one, dx.get(), 1, dy.get(), 1) == CUBLAS_STATUS_SUCCESS);
    std::vector<float> want(5);
    for (int i = 0; i < 5; ++i) want[i] = x[i] + y[i];  // alpha 1: the rounded sum
    CHECK(dy.download() == want);
    CHECK(cublasSscal(h, 5, &third, dy.get(), 1) == CUBLAS_STATUS_SUCCESS);
    for (int i = 0; i < 5; ++i) want[i] *= third;
    CHECK(dy.download() == want);
    CHECK(cublasSaxpy(h, 5, &one, x.data(), 1, dy.get(), 1) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSaxpy(h, 6, &one, dx.get(), 1, dy.get(), 1) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSscal(h, 2, &third, dy.get(), 2) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
}

int main() {
    run_test("gemm_ex_matches_naive_for_all_transposes",
             test_gemm_ex_matches_naive_for_all_transposes);
    run_test("sgemm_and_strided_batches", test_sgemm_and_strided_batches);
    run_test("device_pointer_mode", test_device_pointer_mode);
    run_test("invalid_calls_are_rejected", test_invalid_calls_are_rejected);
    run_test("saxpy_and_sscal", test_saxpy_and_sscal);
    return test_exit_code();
}
