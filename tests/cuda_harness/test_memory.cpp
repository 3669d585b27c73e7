// Tests of the harness's runtime API and device memory: copies and their checks, allocation
// layout, streams and events, and the faults (death tests) that make misuse of device memory loud.
#include "harness.h"
#include "test_kernels.h"
#include "test_util.h"

#include <math.h>
#include <stdint.h>

#include <vector>

namespace {

void test_copies_round_trip() {
    std::vector<float> host(1000);
    for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) * 0.5f;
    float *a = nullptr, *b = nullptr;
    CHECK_CUDA(cudaMalloc(&a, 1000 * sizeof(float)));
    CHECK_CUDA(cudaMalloc(&b, 1000 * sizeof(float)));
    CHECK_CUDA(cudaMemcpy(a, host.data(), 1000 * sizeof(float), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(b, a, 1000 * sizeof(float), cudaMemcpyDeviceToDevice));
    std::vector<float> back(1000, -1.0f);
    CHECK_CUDA(cudaMemcpy(back.data(), b, 1000 * sizeof(float), cudaMemcpyDefault));
    CHECK(back == host);

    cudaStream_t s;
    CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CHECK_CUDA(cudaMemsetAsync(b, 0, 1000 * sizeof(float), s));
    CHECK_CUDA(cudaMemcpyAsync(back.data(), b, 1000 * sizeof(float), cudaMemcpyDeviceToHost, s));
    CHECK_CUDA(cudaStreamSynchronize(s));
    CHECK(back == std::vector<float>(1000, 0.0f));
    CHECK_CUDA(cudaStreamDestroy(s));
    CHECK(cudaMemsetAsync(b, 0, 4, s) == cudaErrorInvalidResourceHandle);  // destroyed
    CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);
    CHECK_CUDA(cudaFree(a));
    CHECK_CUDA(cudaFree(b));
}

void test_new_device_memory_reads_as_nan() {
    float* p = nullptr;
    CHECK_CUDA(cudaMalloc(&p, 64 * sizeof(float)));
    std::vector<float> back(64, 0.0f);
    CHECK_CUDA(cudaMemcpy(back.data(), p, 64 * sizeof(float), cudaMemcpyDeviceToHost));
    for (float v : back) CHECK(isnan(v));
    CHECK_CUDA(cudaFree(p));
}

void test_misdirected_and_oversized_copies_are_rejected() {
    std::vector<char> host(4096);
    char* d = nullptr;
    CHECK_CUDA(cudaMalloc(&d, 100));
    CHECK(cudaMemcpy(host.data(), host.data() + 100, 10, cudaMemcpyHostToDevice) ==
          cudaErrorInvalidValue);  // destination is host memory
    CHECK(cudaMemcpy(d, host.data(), 10, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
    CHECK(cudaMemcpy(d, host.data(), 101, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    CHECK(cudaMemcpy(d + 50, host.data(), 51, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    CHECK_CUDA(cudaMemcpy(d + 50, host.data(), 50, cudaMemcpyHostToDevice));
    CHECK(cudaMemset(host.data(), 0, 10) == cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaSuccess);
    CHECK_CUDA(cudaFree(d));
}

void test_allocations_end_at_a_page_and_keep_alignment() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    for (size_t bytes : {size_t{40}, size_t{1024}, size_t{4096}, size_t{100000}, size_t{6}}) {
        char* p = nullptr;
        CHECK_CUDA(cudaMalloc(&p, bytes));
        const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
        CHECK(end % page == 0);
        const uintptr_t largest_pow2 = bytes & (~bytes + 1);
        const uintptr_t alignment = largest_pow2 < 256 ? largest_pow2 : 256;
        CHECK(reinterpret_cast<uintptr_t>(p) % alignment == 0);
        CHECK_CUDA(cudaFree(p));
    }
    void* zero = reinterpret_cast<void*>(1);
    CHECK_CUDA(cudaMalloc(&zero, 0));
    CHECK(zero == nullptr);
}

void test_mem_get_info_tracks_allocations() {
    size_t free0 = 0, total = 0, free1 = 0;
    CHECK_CUDA(cudaMemGetInfo(&free0, &total));
    CHECK(total == size_t{80} << 30);
    void* p = nullptr;
    CHECK_CUDA(cudaMalloc(&p, 1 << 20));
    CHECK_CUDA(cudaMemGetInfo(&free1, &total));
    CHECK(free0 - free1 == 1 << 20);
    CHECK_CUDA(cudaFree(p));
    CHECK(cudaMalloc(&p, size_t{81} << 30) == cudaErrorMemoryAllocation);
    CHECK(cudaGetLastError() == cudaErrorMemoryAllocation);
}

void test_bad_frees_are_rejected() {
    char* d = nullptr;
    CHECK_CUDA(cudaMalloc(&d, 256));
    CHECK(cudaFree(d + 1) == cudaErrorInvalidValue);
    CHECK_CUDA(cudaFree(d));
    CHECK(cudaFree(d) == cudaErrorInvalidValue);  // double free
    int local = 0;
    CHECK(cudaFree(&local) == cudaErrorInvalidValue);
    CHECK(cudaFreeHost(&local) == cudaErrorInvalidValue);
    CHECK_CUDA(cudaFree(nullptr));
    cudaGetLastError();
}

void test_pinned_host_memory() {
    float* h = nullptr;
    CHECK_CUDA(cudaMallocHost(&h, 100 * sizeof(float)));
    h[99] = 4.0f;  // ordinary host memory
    float* d = nullptr;
    CHECK_CUDA(cudaMalloc(&d, 100 * sizeof(float)));
    CHECK_CUDA(cudaMemcpy(d, h, 100 * sizeof(float), cudaMemcpyHostToDevice));
    void* h2 = nullptr;
    CHECK_CUDA(cudaHostAlloc(&h2, 64, cudaHostAllocMapped));
    CHECK_CUDA(cudaMemcpy(h2, d + 96, 16, cudaMemcpyDeviceToHost));
    CHECK(static_cast<float*>(h2)[3] == 4.0f);
    CHECK_CUDA(cudaFreeHost(h2));
    CHECK_CUDA(cudaFreeHost(h));
    CHECK_CUDA(cudaFree(d));
}

void test_events_and_streams() {
    cudaEvent_t start, stop, untimed;
    CHECK_CUDA(cudaEventCreate(&start));
    CHECK_CUDA(cudaEventCreate(&stop));
    CHECK_CUDA(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming));
    cudaStream_t s;
    CHECK_CUDA(cudaStreamCreate(&s));
    float ms = -1.0f;
    CHECK(cudaEventElapsedTime(&ms, start, stop) == cudaErrorInvalidResourceHandle);  // unrecorded
    CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);
    CHECK_CUDA(cudaEventRecord(start, s));
    DeviceBuffer<float> in(std::vector<float>(512 * 256, 1.0f)), out(512 * 256);
    CHECK_CUDA(launch_four_barriers(in.get(), out.get(), 16));
    CHECK_CUDA(cudaEventRecord(stop, s));
    CHECK_CUDA(cudaEventSynchronize(stop));
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    CHECK(ms >= 0.0f);
    CHECK_CUDA(cudaEventRecord(untimed, 0));
    CHECK(cudaEventElapsedTime(&ms, start, untimed) == cudaErrorInvalidResourceHandle);
    CHECK_CUDA(cudaStreamWaitEvent(s, stop, 0));
    CHECK_CUDA(cudaStreamQuery(s));
    CHECK_CUDA(cudaEventQuery(stop));
    CHECK_CUDA(cudaDeviceSynchronize());
    CHECK_CUDA(cudaEventDestroy(start));
    CHECK_CUDA(cudaEventDestroy(stop));
    CHECK_CUDA(cudaEventDestroy(untimed));
    CHECK_CUDA(cudaStreamDestroy(s));
    cudaGetLastError();
}

void test_one_h100_like_device() {
    int count = 0, device = -1;
    CHECK_CUDA(cudaGetDeviceCount(&count));
    CHECK(count == 1);
    CHECK_CUDA(cudaSetDevice(0));
    CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice);
    CHECK_CUDA(cudaGetDevice(&device));
    CHECK(device == 0);
    cudaDeviceProp prop;
    CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    CHECK(strcmp(prop.name, "lethe CPU harness") == 0);
    CHECK(prop.warpSize == 32 && prop.major == 9 && prop.multiProcessorCount == 132);
    CHECK(prop.sharedMemPerBlockOptin == 227 * 1024);
    int optin = 0;
    CHECK_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
    CHECK(optin == 227 * 1024);
    CHECK(strcmp(cudaGetErrorString(cudaErrorInvalidValue), "invalid argument") == 0);
    CHECK(strcmp(cudaGetErrorName(cudaErrorLaunchFailure), "cudaErrorLaunchFailure") == 0);
    CHECK(strcmp(cudaGetErrorString(static_cast<cudaError_t>(12345)), "unrecognized error code") ==
          0);
    CHECK(cudaPeekAtLastError() == cudaErrorInvalidDevice);
    CHECK(cudaGetLastError() == cudaErrorInvalidDevice);
    CHECK(cudaPeekAtLastError() == cudaSuccess);
}

// ---- death tests: each body runs in a child that must die of SIGSEGV with the diagnostic ----

void kernel_reads_one_past_the_end() {
    float *in = nullptr, *out = nullptr;
    cudaMalloc(&in, 10 * sizeof(float));  // 40 bytes: ends exactly at the guard page
    cudaMalloc(&out, sizeof(float));
    launch_read_past_end(in, out, 10);
}

void host_reads_device_memory() {
    float* d = nullptr;
    cudaMalloc(&d, 16 * sizeof(float));
    std::vector<float> host(16, 1.0f);
    cudaMemcpy(d, host.data(), 16 * sizeof(float), cudaMemcpyHostToDevice);
    volatile float sink = d[3];  // the bug: a device pointer dereferenced on the host
    (void)sink;
}

void host_writes_device_memory() {
    int* d = nullptr;
    cudaMalloc(&d, 1024);
    d[0] = 1;
}

void kernel_uses_memory_after_cuda_free() {
    float *in = nullptr, *out = nullptr;
    cudaMalloc(&in, 64 * sizeof(float));
    cudaMalloc(&out, sizeof(float));
    cudaFree(in);
    launch_read_past_end(in, out, 3);
}

void kernel_overflows_its_stack() {
    float* out = nullptr;
    cudaMalloc(&out, sizeof(float));
    launch_stack_overflow(out);
}

void kernel_reads_past_dynamic_shared_memory() {
    float* out = nullptr;
    cudaMalloc(&out, sizeof(float));
    launch_smem_overrun(out, 64);
}

void test_kernel_read_one_past_the_end_faults() {
    CHECK(expect_death(kernel_reads_one_past_the_end, SIGSEGV,
                       "0 bytes past the end of the device allocation of 40 bytes"));
}

void test_host_dereference_of_device_pointer_faults() {
    CHECK(expect_death(host_reads_device_memory, SIGSEGV,
                       "in host code: byte 12 of the device "
                       "allocation of 64 bytes"));
    CHECK(expect_death(host_writes_device_memory, SIGSEGV, "host code may touch device memory"));
}

void test_use_after_free_faults() {
    CHECK(expect_death(kernel_uses_memory_after_cuda_free, SIGSEGV, "use after free"));
}

void test_fiber_stack_overflow_faults() {
    CHECK(expect_death(kernel_overflows_its_stack, SIGSEGV, "fiber stack overflow"));
}

void test_dynamic_shared_memory_overrun_faults() {
    CHECK(expect_death(kernel_reads_past_dynamic_shared_memory, SIGSEGV,
                       "past the end of the dynamic shared memory"));
}

}  // namespace

int main() {
    run_test("copies_round_trip", test_copies_round_trip);
    run_test("new_device_memory_reads_as_nan", test_new_device_memory_reads_as_nan);
    run_test("misdirected_and_oversized_copies_are_rejected",
             test_misdirected_and_oversized_copies_are_rejected);
    run_test("allocations_end_at_a_page_and_keep_alignment",
             test_allocations_end_at_a_page_and_keep_alignment);
    run_test("mem_get_info_tracks_allocations", test_mem_get_info_tracks_allocations);
    run_test("bad_frees_are_rejected", test_bad_frees_are_rejected);
    run_test("pinned_host_memory", test_pinned_host_memory);
    run_test("events_and_streams", test_events_and_streams);
    run_test("one_h100_like_device", test_one_h100_like_device);
    run_test("kernel_read_one_past_the_end_faults", test_kernel_read_one_past_the_end_faults);
    run_test("host_dereference_of_device_pointer_faults",
             test_host_dereference_of_device_pointer_faults);
    run_test("use_after_free_faults", test_use_after_free_faults);
    run_test("fiber_stack_overflow_faults", test_fiber_stack_overflow_faults);
    run_test("dynamic_shared_memory_overrun_faults", test_dynamic_shared_memory_overrun_faults);
    return test_exit_code();
}
