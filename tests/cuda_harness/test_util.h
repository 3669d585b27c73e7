// Small test support for the harness's own tests and the CUDA kernel tests: CHECK macros that count
// failures, a named-test runner, and death tests (fork, run, expect a signal and a diagnostic on
// stderr). Only the CUDA runtime API, never the harness: the kernel tests also build for a GPU.
#ifndef LETHE_CUDA_HARNESS_TEST_UTIL_H
#define LETHE_CUDA_HARNESS_TEST_UTIL_H

#include <cuda_runtime.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

inline int g_test_failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++g_test_failures;                                                       \
        }                                                                            \
    } while (0)

#define CHECK_CUDA(call)                                                               \
    do {                                                                               \
        const cudaError_t check_cuda_e = (call);                                       \
        if (check_cuda_e != cudaSuccess) {                                             \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call,  \
                    cudaGetErrorName(check_cuda_e), cudaGetErrorString(check_cuda_e)); \
            ++g_test_failures;                                                         \
        }                                                                              \
    } while (0)

// Runs one named test and reports it in the CTest log.
inline void run_test(const char* name, void (*body)()) {
    const int before = g_test_failures;
    body();
    printf("%s %s\n", g_test_failures == before ? "ok  " : "FAIL", name);
    fflush(stdout);
}

inline int test_exit_code() {
    printf("%d failure(s)\n", g_test_failures);
    return g_test_failures == 0 ? 0 : 1;
}

// A device buffer of n elements, freed on scope exit.
template <typename T>
class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t n) : n_(n) { CHECK_CUDA(cudaMalloc(&p_, n * sizeof(T))); }
    explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
    ~DeviceBuffer() { CHECK_CUDA(cudaFree(p_)); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    T* get() const { return p_; }
    void upload(const std::vector<T>& host) {
        CHECK_CUDA(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
    }
    std::vector<T> download() const {
        std::vector<T> host(n_);
        CHECK_CUDA(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
        return host;
    }

private:
    T* p_ = nullptr;
    size_t n_;
};

// Runs body in a child process and checks that it dies of `signal_number` within `timeout_s`
// seconds with `expected` somewhere in its stderr. The child's stderr is echoed for the log.
inline bool expect_death(void (*body)(), int signal_number, const char* expected,
                         unsigned timeout_s = 60) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) return false;
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
        close(pipe_fds[0]);
        dup2(pipe_fds[1], STDERR_FILENO);
        alarm(timeout_s);
        body();
        _exit(0);  // survived: the death test fails
    }
    close(pipe_fds[1]);
    std::string err;
    char buf[4096];
    ssize_t got;
    while ((got = read(pipe_fds[0], buf, sizeof buf)) > 0)
        err.append(buf, static_cast<size_t>(got));
    close(pipe_fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    fprintf(stderr, "  [child stderr] %s", err.c_str());
    const bool died = WIFSIGNALED(status) && WTERMSIG(status) == signal_number;
    if (!died) {
        fprintf(stderr, "  child %s %d, expected signal %d\n",
                WIFSIGNALED(status) ? "died of signal" : "exited with status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), signal_number);
    }
    const bool said = err.find(expected) != std::string::npos;
    if (!said) fprintf(stderr, "  child stderr lacks \"%s\"\n", expected);
    return died && said;
}

#endif
