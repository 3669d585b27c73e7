// nvcuda::wmma for the CPU harness (included by harness.h): warp-collective bf16/fp16 tiles with
// fp32 or fp16 accumulators, in the Programming Guide's shapes 16x16x16, 32x8x16 and 8x32x16.
#ifndef LETHE_CUDA_HARNESS_WMMA_H
#define LETHE_CUDA_HARNESS_WMMA_H

namespace nvcuda {
namespace wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

namespace lethe_detail {

template <typename Use, int M, int N, int K>
struct Shape;
template <int M, int N, int K>
struct Shape<matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct Shape<matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct Shape<accumulator, M, N, K> {
    static constexpr int rows = M, cols = N;
};

inline float to_float(float v) { return v; }
inline float to_float(__half v) { return __half2float(v); }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
inline T from_float(float v);
template <>
inline float from_float<float>(float v) {
    return v;
}
template <>
inline __half from_float<__half>(float v) {
    return __float2half_rn(v);
}
template <>
inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

template <int M, int N, int K>
constexpr bool supported_shape = (M == 16 && N == 16 && K == 16) ||
                                 (M == 32 && N == 8 && K == 16) || (M == 8 && N == 32 && K == 16);

}  // namespace lethe_detail

// Every lane holds the whole tile, row-major in x[]. On the GPU the tile is spread over the warp in
// an unspecified layout (num_elements is 8 or 16 there), so code that only applies elementwise
// operations to x[] behaves the same; code that depends on which element a lane holds does not.
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
    static_assert(lethe_detail::supported_shape<M, N, K>, "WMMA shape not emulated");

public:
    static constexpr int rows = lethe_detail::Shape<Use, M, N, K>::rows;
    static constexpr int cols = lethe_detail::Shape<Use, M, N, K>::cols;
    static constexpr int num_elements = rows * cols;
    T x[num_elements];
};

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& value) {
    const T v = static_cast<T>(value);
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    static_assert(std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value,
                  "matrix_a/matrix_b fragments carry their layout; accumulators take a layout_t");
    __syncwarp(0xffffffffu, file, line);
    constexpr bool by_rows = std::is_same<Layout, row_major>::value;
    for (int r = 0; r < f.rows; ++r) {
        for (int c = 0; c < f.cols; ++c) {
            f.x[r * f.cols + c] =
                by_rows ? p[static_cast<size_t>(r) * ldm + c] : p[static_cast<size_t>(c) * ldm + r];
        }
    }
}

template <int M, int N, int K, typename T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm,
                             layout_t layout, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
    __syncwarp(0xffffffffu, file, line);
    for (int r = 0; r < M; ++r) {
        for (int c = 0; c < N; ++c) {
            f.x[r * N + c] = layout == mem_row_major ? p[static_cast<size_t>(r) * ldm + c]
                                                     : p[static_cast<size_t>(c) * ldm + r];
        }
    }
}

template <int M, int N, int K, typename T>
inline void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                              layout_t layout, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    __syncwarp(0xffffffffu, file, line);
    for (int r = 0; r < M; ++r) {
        for (int c = 0; c < N; ++c) {
            T& dst = layout == mem_row_major ? p[static_cast<size_t>(r) * ldm + c]
                                             : p[static_cast<size_t>(c) * ldm + r];
            dst = f.x[r * N + c];
        }
    }
}

// D = A B + C with exact products and fp32 sums in k order; the GPU's tensor cores sum in an
// unspecified order (and may truncate), so compare with a tolerance, not bitwise.
template <int M, int N, int K, typename TAB, typename LA, typename LB, typename TC, typename TD>
inline void mma_sync(fragment<accumulator, M, N, K, TD>& d,
                     const fragment<matrix_a, M, N, K, TAB, LA>& a,
                     const fragment<matrix_b, M, N, K, TAB, LB>& b,
                     const fragment<accumulator, M, N, K, TC>& c,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    __syncwarp(0xffffffffu, file, line);
    float out[M * N];
    for (int i = 0; i < M; ++i) {
        for (int j = 0; j < N; ++j) {
            float acc = lethe_detail::to_float(c.x[i * N + j]);
            for (int k = 0; k < K; ++k) {
                acc = fmaf(lethe_detail::to_float(a.x[i * K + k]),
                           lethe_detail::to_float(b.x[k * N + j]), acc);
            }
            out[i * N + j] = acc;
        }
    }
    for (int i = 0; i < M * N; ++i) d.x[i] = lethe_detail::from_float<TD>(out[i]);  // d may be c
}

}  // namespace wmma
}  // namespace nvcuda

#endif
