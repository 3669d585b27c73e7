// The CUDA runtime API subset the backend calls (memory and copies are in device_memory.cpp): one
// H100-like device, streams that run work at once (a valid CUDA schedule), host-clock events.
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>

// The runtime headers leave these opaque; the harness defines what a handle points at.
struct CUstream_st {
    unsigned flags;
};
struct CUevent_st {
    unsigned flags;
    bool recorded;
    double recorded_ms;  // CLOCK_MONOTONIC at the last cudaEventRecord
};

namespace lethe_harness::detail {

namespace {

thread_local cudaError_t tls_last_error = cudaSuccess;
std::atomic<int> g_async_failure{cudaSuccess};

std::mutex g_handles_mutex;
std::set<const CUstream_st*> g_streams;
std::set<const CUevent_st*> g_events;
std::map<const void*, size_t> g_max_dynamic_smem;

bool event_is_valid(const CUevent_st* e) {
    std::lock_guard<std::mutex> lock(g_handles_mutex);
    return g_events.count(e) != 0;
}

double monotonic_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

cudaError_t synchronise() {
    const cudaError_t pending = take_async_failure();
    return pending == cudaSuccess ? cudaSuccess : record_error(pending);
}

}  // namespace

cudaError_t record_error(cudaError_t e) {
    if (e != cudaSuccess) tls_last_error = e;
    return e;
}

void record_async_failure(cudaError_t e) { g_async_failure.store(e); }

cudaError_t take_async_failure() {
    return static_cast<cudaError_t>(g_async_failure.exchange(cudaSuccess));
}

void report(const char* fmt, ...) {
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fprintf(stderr, "lethe harness: %s\n", text);
}

void fatal(const char* fmt, ...) {
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fprintf(stderr, "lethe harness: fatal: %s\n", text);
    abort();
}

bool stream_is_valid(cudaStream_t stream) {
    if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) {
        return true;
    }
    std::lock_guard<std::mutex> lock(g_handles_mutex);
    return g_streams.count(stream) != 0;
}

size_t max_dynamic_smem(const void* kernel) {
    std::lock_guard<std::mutex> lock(g_handles_mutex);
    auto it = g_max_dynamic_smem.find(kernel);
    return it == g_max_dynamic_smem.end() ? kDefaultDynamicSmem : it->second;
}

}  // namespace lethe_harness::detail

using namespace lethe_harness::detail;

extern "C" {

// ---- errors ----

cudaError_t CUDARTAPI cudaGetLastError(void) {
    const cudaError_t e = tls_last_error;
    tls_last_error = cudaSuccess;
    return e;
}

cudaError_t CUDARTAPI cudaPeekAtLastError(void) { return tls_last_error; }

#define LETHE_HARNESS_ERRORS(X)                                                            \
    X(cudaSuccess, "no error")                                                             \
    X(cudaErrorInvalidValue, "invalid argument")                                           \
    X(cudaErrorMemoryAllocation, "out of memory")                                          \
    X(cudaErrorInitializationError, "initialization error")                                \
    X(cudaErrorInvalidConfiguration, "invalid configuration argument")                     \
    X(cudaErrorInvalidSymbol, "invalid device symbol")                                     \
    X(cudaErrorInvalidHostPointer, "invalid host pointer")                                 \
    X(cudaErrorInvalidDevicePointer, "invalid device pointer")                             \
    X(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy")                \
    X(cudaErrorNotYetImplemented, "function not yet implemented")                          \
    X(cudaErrorInsufficientDriver,                                                         \
      "CUDA driver version is insufficient for CUDA runtime version")                      \
    X(cudaErrorInvalidDeviceFunction, "invalid device function")                           \
    X(cudaErrorNoDevice, "no CUDA-capable device is detected")                             \
    X(cudaErrorInvalidDevice, "invalid device ordinal")                                    \
    X(cudaErrorNoKernelImageForDevice,                                                     \
      "no kernel image is available for execution on the device")                          \
    X(cudaErrorInvalidResourceHandle, "invalid resource handle")                           \
    X(cudaErrorNotReady, "device not ready")                                               \
    X(cudaErrorIllegalAddress, "an illegal memory access was encountered")                 \
    X(cudaErrorLaunchOutOfResources, "too many resources requested for launch")            \
    X(cudaErrorLaunchTimeout, "the launch timed out and was terminated")                   \
    X(cudaErrorAssert, "device-side assert triggered")                                     \
    X(cudaErrorIllegalInstruction, "an illegal instruction was encountered")               \
    X(cudaErrorMisalignedAddress, "misaligned address")                                    \
    X(cudaErrorLaunchFailure, "unspecified launch failure")                                \
    X(cudaErrorNotPermitted, "operation not permitted")                                    \
    X(cudaErrorNotSupported, "operation not supported")                                    \
    X(cudaErrorUnknown, "unknown error")

const char* CUDARTAPI cudaGetErrorName(cudaError_t error) {
    switch (error) {
#define LETHE_HARNESS_NAME(code, text) \
    case code: return #code;
        LETHE_HARNESS_ERRORS(LETHE_HARNESS_NAME)
#undef LETHE_HARNESS_NAME
        default: return "unrecognized error code";
    }
}

const char* CUDARTAPI cudaGetErrorString(cudaError_t error) {
    switch (error) {
#define LETHE_HARNESS_STRING(code, text) \
    case code: return text;
        LETHE_HARNESS_ERRORS(LETHE_HARNESS_STRING)
#undef LETHE_HARNESS_STRING
        default: return "unrecognized error code";
    }
}

// ---- device ----

cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
    if (count == nullptr) return record_error(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaSetDevice(int device) {
    return device == 0 ? cudaSuccess : record_error(cudaErrorInvalidDevice);
}

cudaError_t CUDARTAPI cudaGetDevice(int* device) {
    if (device == nullptr) return record_error(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaDeviceSynchronize(void) { return synchronise(); }

cudaError_t CUDARTAPI cudaDriverGetVersion(int* version) {
    if (version == nullptr) return record_error(cudaErrorInvalidValue);
    *version = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaRuntimeGetVersion(int* version) {
    if (version == nullptr) return record_error(cudaErrorInvalidValue);
    *version = CUDART_VERSION;
    return cudaSuccess;
}

// An H100 SXM's limits, so that code sizing launches from the properties sizes them as on the GPU.
cudaError_t CUDARTAPI cudaGetDeviceProperties(struct cudaDeviceProp* prop, int device) {
    if (prop == nullptr) return record_error(cudaErrorInvalidValue);
    if (device != 0) return record_error(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "lethe CPU harness");
    prop->totalGlobalMem = size_t{80} << 30;
    prop->sharedMemPerBlock = kDefaultDynamicSmem;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->memPitch = 2147483647;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024;
    prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 2147483647;
    prop->maxGridSize[1] = 65535;
    prop->maxGridSize[2] = 65535;
    prop->totalConstMem = 65536;
    prop->major = 9;
    prop->minor = 0;
    prop->textureAlignment = 512;
    prop->texturePitchAlignment = 32;
    prop->multiProcessorCount = 132;
    prop->canMapHostMemory = 1;
    prop->concurrentKernels = 1;
    prop->asyncEngineCount = 2;
    prop->unifiedAddressing = 1;
    prop->memoryBusWidth = 5120;
    prop->l2CacheSize = 50 * 1024 * 1024;
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->streamPrioritiesSupported = 1;
    prop->globalL1CacheSupported = 1;
    prop->localL1CacheSupported = 1;
    prop->sharedMemPerMultiprocessor = 228 * 1024;
    prop->regsPerMultiprocessor = 65536;
    prop->managedMemory = 1;
    prop->computePreemptionSupported = 1;
    prop->cooperativeLaunch = 1;
    prop->sharedMemPerBlockOptin = kMaxDynamicSmemOptin;
    prop->maxBlocksPerMultiProcessor = 32;
    prop->reservedSharedMemPerBlock = 1024;
    prop->memoryPoolsSupported = 1;
    prop->clusterLaunch = 1;
    prop->hostNumaId = -1;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
    if (value == nullptr) return record_error(cudaErrorInvalidValue);
    if (device != 0) return record_error(cudaErrorInvalidDevice);
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    switch (attr) {
        case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
        case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
        case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
        case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
        case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
        case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
        case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
        case cudaDevAttrMaxSharedMemoryPerBlock:
            *value = static_cast<int>(p.sharedMemPerBlock);
            break;
        case cudaDevAttrMaxSharedMemoryPerBlockOptin:
            *value = static_cast<int>(p.sharedMemPerBlockOptin);
            break;
        case cudaDevAttrWarpSize: *value = p.warpSize; break;
        case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
        case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
        case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
        case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
        case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
        default:
            report("cudaDeviceGetAttribute: attribute %d is not emulated", static_cast<int>(attr));
            return record_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaFuncSetAttribute(const void* func, enum cudaFuncAttribute attr,
                                           int value) {
    if (func == nullptr) return record_error(cudaErrorInvalidDeviceFunction);
    switch (attr) {
        case cudaFuncAttributeMaxDynamicSharedMemorySize:
            if (value < 0 || static_cast<size_t>(value) > kMaxDynamicSmemOptin) {
                report("cudaFuncSetAttribute: %d bytes of dynamic shared memory exceed the %zu the "
                       "device allows", value, kMaxDynamicSmemOptin);
                return record_error(cudaErrorInvalidValue);
            }
            {
                std::lock_guard<std::mutex> lock(g_handles_mutex);
                g_max_dynamic_smem[func] = static_cast<size_t>(value);
            }
            return cudaSuccess;
        case cudaFuncAttributePreferredSharedMemoryCarveout:
            return value >= -1 && value <= 100 ? cudaSuccess : record_error(cudaErrorInvalidValue);
        default:
            report("cudaFuncSetAttribute: attribute %d is not emulated", static_cast<int>(attr));
            return record_error(cudaErrorInvalidValue);
    }
}

// ---- streams: work runs when enqueued, so they are always idle ----

cudaError_t CUDARTAPI cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
    if (pStream == nullptr) return record_error(cudaErrorInvalidValue);
    CUstream_st* s = new CUstream_st{flags};
    std::lock_guard<std::mutex> lock(g_handles_mutex);
    g_streams.insert(s);
    *pStream = s;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamCreate(cudaStream_t* pStream) {
    return cudaStreamCreateWithFlags(pStream, cudaStreamDefault);
}

cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t stream) {
    {
        std::lock_guard<std::mutex> lock(g_handles_mutex);
        if (stream == nullptr || g_streams.erase(stream) == 0) {
            return record_error(cudaErrorInvalidResourceHandle);
        }
    }
    delete stream;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t stream) {
    if (!stream_is_valid(stream)) return record_error(cudaErrorInvalidResourceHandle);
    return synchronise();
}

cudaError_t CUDARTAPI cudaStreamQuery(cudaStream_t stream) {
    return stream_is_valid(stream) ? cudaSuccess : record_error(cudaErrorInvalidResourceHandle);
}

cudaError_t CUDARTAPI cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event,
                                          unsigned int flags) {
    (void)flags;
    if (!stream_is_valid(stream) || !event_is_valid(event)) {
        return record_error(cudaErrorInvalidResourceHandle);
    }
    return cudaSuccess;
}

// ---- events: host clock at record time ----

cudaError_t CUDARTAPI cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
    if (event == nullptr) return record_error(cudaErrorInvalidValue);
    CUevent_st* e = new CUevent_st{flags, false, 0.0};
    std::lock_guard<std::mutex> lock(g_handles_mutex);
    g_events.insert(e);
    *event = e;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaEventCreate(cudaEvent_t* event) {
    return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t CUDARTAPI cudaEventDestroy(cudaEvent_t event) {
    {
        std::lock_guard<std::mutex> lock(g_handles_mutex);
        if (event == nullptr || g_events.erase(event) == 0) {
            return record_error(cudaErrorInvalidResourceHandle);
        }
    }
    delete event;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    if (!event_is_valid(event) || !stream_is_valid(stream)) {
        return record_error(cudaErrorInvalidResourceHandle);
    }
    event->recorded = true;
    event->recorded_ms = monotonic_ms();
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaEventQuery(cudaEvent_t event) {
    return event_is_valid(event) ? cudaSuccess : record_error(cudaErrorInvalidResourceHandle);
}

cudaError_t CUDARTAPI cudaEventSynchronize(cudaEvent_t event) {
    if (!event_is_valid(event)) return record_error(cudaErrorInvalidResourceHandle);
    return synchronise();
}

cudaError_t CUDARTAPI cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    if (ms == nullptr) return record_error(cudaErrorInvalidValue);
    if (!event_is_valid(start) || !event_is_valid(end) || !start->recorded || !end->recorded ||
        (start->flags & cudaEventDisableTiming) || (end->flags & cudaEventDisableTiming)) {
        return record_error(cudaErrorInvalidResourceHandle);
    }
    *ms = static_cast<float>(end->recorded_ms - start->recorded_ms);
    return cudaSuccess;
}

}  // extern "C"
