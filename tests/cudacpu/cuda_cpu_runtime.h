// cuda_cpu_runtime.h: the launcher behind cuda_cpu.h (included once, by the generated
// translation unit that also includes the kernels). See cuda_cpu.h for the two models.
#pragma once
#include <cassert>
#include <stdexcept>
#include <set>
#include <tuple>
#include <utility>

#ifdef CUDACPU_THREADS
#include <barrier>
#include <memory>
#include <mutex>
#include <thread>
#else
#include <ucontext.h>
#endif

namespace cudacpu {
CUDACPU_TLS uint3 thread_index;
uint3 block_index;
dim3 block_dim, grid_dim;

static std::vector<std::pair<void*, size_t>> shared_regions;
static std::vector<unsigned char> dynamic_buffer;
static char error_message[512];

[[noreturn]] void fail(const char* what) {
    std::snprintf(error_message, sizeof(error_message), "%s", what);
    throw std::runtime_error(what);
}

void* dynamic_shared() { return dynamic_buffer.data(); }

// NaN in every float position: a read of shared memory the block has not written propagates.
static void poison(void* p, size_t bytes) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    float* f = static_cast<float*>(p);
    for (size_t i = 0; i < bytes / sizeof(float); ++i) f[i] = nan;
}

static void poison_shared() {
    for (auto& region : shared_regions) poison(region.first, region.second);
    poison(dynamic_buffer.data(), dynamic_buffer.size());
}

// Called where a kernel declares a __shared__ array, before any thread can use it: the first
// time, poison it at once (the launcher poisons known arrays before every later block).
void register_shared(void* p, size_t bytes) {
#ifdef CUDACPU_THREADS
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
#endif
    for (auto& region : shared_regions)
        if (region.first == p) return;
    shared_regions.emplace_back(p, bytes);
    poison(p, bytes);
}

static unsigned threads_per_block() { return block_dim.x * block_dim.y * block_dim.z; }

static uint3 unflatten(unsigned t) {
    return uint3{t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)};
}

#ifdef CUDACPU_THREADS
// ---- threads: one std::thread per CUDA thread, std::barrier for the barriers ----------------
static std::unique_ptr<std::barrier<>> block_barrier;
static std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
static thread_local unsigned my_thread;

void sync_block() { block_barrier->arrive_and_wait(); }
void sync_warp() { warp_barriers[my_thread / 32]->arrive_and_wait(); }

static void run_block(const std::function<void()>& body) {
    const unsigned n = threads_per_block();
    block_barrier = std::make_unique<std::barrier<>>(n);
    warp_barriers.clear();
    for (unsigned w = 0; w < (n + 31) / 32; ++w)
        warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(32u, n - 32 * w)));
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < n; ++t)
        threads.emplace_back([t, &body] {
            my_thread = t;
            thread_index = unflatten(t);
            body();
        });
    for (auto& th : threads) th.join();
}
#else
// ---- fibers: one ucontext per CUDA thread, a scheduler that releases barriers ---------------
enum class State { runnable, at_block_barrier, at_warp_barrier, done };
struct Fiber {
    ucontext_t context;
    std::vector<char> stack;
    State state;
};
static std::vector<Fiber> fibers;
static ucontext_t scheduler;
static unsigned current;
static const std::function<void()>* fiber_body;
static constexpr size_t kStackBytes = 256 * 1024;

void sync_block() {
    fibers[current].state = State::at_block_barrier;
    swapcontext(&fibers[current].context, &scheduler);
}

void sync_warp() {
    fibers[current].state = State::at_warp_barrier;
    swapcontext(&fibers[current].context, &scheduler);
}

static bool fiber_failed;  // fail() inside a thread (e.g. a misused warp-level instruction)

static void fiber_entry() {
    try {
        (*fiber_body)();
    } catch (const std::exception&) {
        fiber_failed = true;
    }
    fibers[current].state = State::done;  // uc_link returns to the scheduler
}

static void run_block(const std::function<void()>& body) {
    const unsigned n = threads_per_block();
    fibers.resize(n);
    fiber_body = &body;
    fiber_failed = false;
    for (unsigned t = 0; t < n; ++t) {
        Fiber& f = fibers[t];
        f.stack.resize(kStackBytes);
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.data();
        f.context.uc_stack.ss_size = f.stack.size();
        f.context.uc_link = &scheduler;
        makecontext(&f.context, fiber_entry, 0);
        f.state = State::runnable;
    }
    for (;;) {
        bool ran = false;
        for (unsigned t = 0; t < n; ++t) {
            if (fibers[t].state != State::runnable) continue;
            current = t;
            thread_index = unflatten(t);
            swapcontext(&scheduler, &fibers[t].context);
            if (fiber_failed) throw std::runtime_error(error_message);
            ran = true;
        }
        // Release warps whose live lanes all wait at a warp barrier.
        bool released = false;
        for (unsigned w = 0; w * 32 < n; ++w) {
            bool all = true, any = false;
            for (unsigned t = w * 32; t < std::min(n, w * 32 + 32); ++t) {
                if (fibers[t].state == State::done) continue;
                any = true;
                if (fibers[t].state != State::at_warp_barrier) all = false;
            }
            if (any && all) {
                for (unsigned t = w * 32; t < std::min(n, w * 32 + 32); ++t)
                    if (fibers[t].state == State::at_warp_barrier) fibers[t].state = State::runnable;
                released = true;
            }
        }
        if (released || ran) continue;
        unsigned done = 0, at_barrier = 0;
        for (auto& f : fibers) {
            done += f.state == State::done;
            at_barrier += f.state == State::at_block_barrier;
        }
        if (done == n) return;
        if (at_barrier + done == n && done == 0) {
            for (auto& f : fibers) f.state = State::runnable;
            continue;
        }
        fail(done ? "__syncthreads() not reached by every thread of the block (divergence)"
                  : "deadlock: threads wait at barriers that can never complete");
    }
}
#endif

// ---- launch: like cudaLaunchKernel(kernel, grid, block, args, shared bytes) ----------------
template <typename... Args, size_t... I>
static void call_with(void (*kernel)(Args...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<Args>*>(args[I])...);
}

template <typename... Args>
static int launch(void (*kernel)(Args...), dim3 grid, dim3 block, size_t shared_bytes,
                  void** args) {
    grid_dim = grid;
    block_dim = block;
    dynamic_buffer.assign(shared_bytes, 0);
    const std::function<void()> body = [&] {
        call_with(kernel, args, std::index_sequence_for<Args...>{});
    };
    try {
        for (unsigned z = 0; z < grid.z; ++z)
            for (unsigned y = 0; y < grid.y; ++y)
                for (unsigned x = 0; x < grid.x; ++x) {
                    block_index = uint3{x, y, z};
                    poison_shared();
                    run_block(body);
                }
    } catch (const std::exception&) {
        return 1;
    }
    return 0;
}
}  // namespace cudacpu

extern "C" const char* cudacpu_error() { return cudacpu::error_message; }
