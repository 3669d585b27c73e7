// Per-row mean squared error to a target (RMU's hidden-state loss, Li et al. 2024, "The WMDP
// Benchmark"): the loss of a row of hidden states against a control vector or a reference row.
#include "ops.h"

#define ROWS_MSE_PAR_MIN (1u << 15) // below this many elements one thread does the rows

// Row j's target: its own row of target_rows, else the one shared vector.
static const float *target_of(const float *target_rows, const float *target_vec, size_t j,
                              int D) {
    return target_rows ? target_rows + j * (size_t)D : target_vec;
}

void rows_mse_forward(float *mse, const float *h, const float *target_rows,
                      const float *target_vec, size_t M, int D) {
    // mse (M), h (M, D), target_rows (M, D) or target_vec (D)
    #pragma omp parallel for schedule(static) if (M * (size_t)D >= ROWS_MSE_PAR_MIN)
    for (size_t j = 0; j < M; j++) {
        const float *hj = h + j * (size_t)D, *y = target_of(target_rows, target_vec, j, D);
        // In double: a row's D squares are summed in one order here and in a tree on the
        // device; double makes the float results agree whatever the order.
        double s = 0.0;
        for (int d = 0; d < D; d++) {
            const double diff = (double)hj[d] - (double)y[d];
            s += diff * diff;
        }
        mse[j] = (float)(s / D);
    }
}

void rows_mse_backward(float *dh, const float *h, const float *target_rows,
                       const float *target_vec, const float *weight, size_t M, int D) {
    #pragma omp parallel for schedule(static) if (M * (size_t)D >= ROWS_MSE_PAR_MIN)
    for (size_t j = 0; j < M; j++) {
        const float *hj = h + j * (size_t)D, *y = target_of(target_rows, target_vec, j, D);
        float *dj = dh + j * (size_t)D;
        // The same float expression in kernels/cuda/rows_mse.cu: the same bits in float32.
        const float scale = 2.0f * weight[j] / (float)D;
        for (int d = 0; d < D; d++) dj[d] = scale * (hj[d] - y[d]);
    }
}
