// cuda_cpu_runtime.h: the launcher behind cuda_cpu.h (included once, by the generated
// translation unit that also includes the kernels). See cuda_cpu.h for the two models.
#pragma once
#include <cassert>
#include <numeric>
#include <random>
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

struct SharedRegion {
    void* data;
    size_t bytes;
    const char* name;
    bool guarded;  // kGuardBytes of canary right before and right after `data`
};
static std::vector<SharedRegion> shared_regions;
// Dynamic shared memory: [guard][shared_bytes][guard]; the kernel sees the middle.
static std::vector<unsigned char> dynamic_storage;
static size_t dynamic_bytes;
static char error_message[512];

[[noreturn]] void fail(const char* what) {
    std::snprintf(error_message, sizeof(error_message), "%s", what);
    throw std::runtime_error(what);
}

void* dynamic_shared() { return dynamic_storage.data() + kGuardBytes; }

// NaN in every float position: a read of shared memory the block has not written propagates.
static void poison(void* p, size_t bytes) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    float* f = static_cast<float*>(p);
    for (size_t i = 0; i < bytes / sizeof(float); ++i) f[i] = nan;
}

// Guard words: a NaN whose payload no arithmetic produces (a computed NaN is 0x7fc00000), so a
// read past an array's end poisons what it feeds and a write there (even of a NaN) is seen.
static constexpr std::uint32_t kCanary = 0x7fc0deadu;

static void fill_guard(unsigned char* g) {
    for (size_t i = 0; i < kGuardBytes; i += 4) std::memcpy(g + i, &kCanary, 4);
}

// Offset of the first byte of guard `g` that is not canary, or kGuardBytes.
static size_t broken_guard(const unsigned char* g) {
    for (size_t i = 0; i < kGuardBytes; ++i) {
        std::uint32_t c = kCanary;
        if (g[i] != reinterpret_cast<const unsigned char*>(&c)[i % 4]) return i;
    }
    return kGuardBytes;
}

static void guard_region(const SharedRegion& r) {
    if (!r.guarded) return;
    fill_guard(static_cast<unsigned char*>(r.data) - kGuardBytes);
    fill_guard(static_cast<unsigned char*>(r.data) + r.bytes);
}

// After a block: fail if it wrote into a guard (a shared-memory overrun by as little as one
// byte), naming the array, the block and how far out of bounds the write landed.
static void check_guards(uint3 block) {
    for (const auto& r : shared_regions) {
        if (!r.guarded) continue;
        const auto* start = static_cast<const unsigned char*>(r.data);
        const size_t after = broken_guard(start + r.bytes), before = broken_guard(start - kGuardBytes);
        if (after == kGuardBytes && before == kGuardBytes) continue;
        char what[400];
        if (after != kGuardBytes)
            std::snprintf(what, sizeof(what),
                          "shared-memory overrun: block (%u, %u, %u) wrote byte %zu past the end "
                          "of shared array '%s' (%zu bytes)",
                          block.x, block.y, block.z, after, r.name, r.bytes);
        else
            std::snprintf(what, sizeof(what),
                          "shared-memory underrun: block (%u, %u, %u) wrote byte %zu before the "
                          "start of shared array '%s' (%zu bytes)",
                          block.x, block.y, block.z, kGuardBytes - before, r.name, r.bytes);
        guard_region(r);
        fail(what);
    }
}

static void poison_shared() {
    for (auto& region : shared_regions) {
        poison(region.data, region.bytes);
        guard_region(region);
    }
}

// Called where a kernel declares a __shared__ array, before any thread can use it: the first
// time, poison it at once (the launcher poisons known arrays before every later block).
void register_shared(void* p, size_t bytes, const char* name, bool guarded) {
#ifdef CUDACPU_THREADS
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
#endif
    for (auto& region : shared_regions)
        if (region.data == p) return;
    shared_regions.push_back(SharedRegion{p, bytes, name, guarded});
    poison(p, bytes);
    guard_region(shared_regions.back());
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
//
// Blocks run one after another here, in a fixed order, while a GPU runs them in any order and
// at once. A block that writes outside its own output tile is then invisible: the block that
// owns that element runs later and overwrites it. So every launch runs three times:
//  1. forward (block x fastest, then y, then z) on the real output buffers: the result kept;
//  2. reversed, and 3. in a seeded shuffle, each block ALONE: before each block every byte of
//     every watched output buffer holds a sentinel (0xA5 in pass 2, 0x5A in pass 3); after it,
//     the bytes that differ from the sentinel are the bytes that block wrote, and are put back.
// A byte stored with the sentinel's value is unseen in one pass, but the two sentinels differ
// in every bit, so each stored byte is seen in at least one of the two passes (unless what a
// block stores depends on what the buffer held, which is reported too). From the two passes:
//  * a byte written by two blocks fails the launch (a race on a GPU);
//  * a byte written by a block whose tile does not hold it, or not written by the block whose
//    tile holds it, fails the launch (Watch::owner says which block holds each byte; -2: not
//    described, only the other checks apply);
//  * the bytes written, assembled over the original contents, must equal pass 1's result
//    byte for byte: else a block read what another block wrote (an order dependence).
// Watched buffers must not be read by the kernel as inputs (Python checks that no input
// argument overlaps them).
struct Watch {
    unsigned char* data;
    size_t bytes;
    const std::int32_t* owner;  // per byte: the linear block index, -1 none, -2 any
};

enum ViolationKind : int { kTwoBlocks = 1, kNotOwner, kMissing, kUnstable, kOrder };
struct Violation {
    int kind;
    unsigned watch;
    size_t byte;
    long long block, other;  // the writer, and the other writer / the owner (-1: none)
    size_t count;            // bytes in violation, of any kind
};

static uint3 block_at(unsigned long long b, dim3 grid) {
    return uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                 static_cast<unsigned>(b / (static_cast<unsigned long long>(grid.x) * grid.y))};
}

static void run_one(const std::function<void()>& body, unsigned long long b, dim3 grid) {
    block_index = block_at(b, grid);
    poison_shared();
    poison(dynamic_shared(), dynamic_bytes);
    fill_guard(dynamic_storage.data());
    fill_guard(dynamic_storage.data() + kGuardBytes + dynamic_bytes);
    run_block(body);
    check_guards(block_index);
    const unsigned char* dyn = dynamic_storage.data();
    const size_t after = broken_guard(dyn + kGuardBytes + dynamic_bytes), before = broken_guard(dyn);
    if (after != kGuardBytes || before != kGuardBytes) {
        char what[300];
        std::snprintf(what, sizeof(what),
                      "shared-memory overrun: block (%u, %u, %u) wrote %s dynamic shared memory "
                      "(%zu bytes)",
                      block_index.x, block_index.y, block_index.z,
                      after != kGuardBytes ? "past the end of" : "before the start of",
                      dynamic_bytes);
        fail(what);
    }
}

// Keeps the most telling violation: a write outside the block's tile names the culprit, where
// "two blocks" or an order dependence may be its consequence.
static void note(Violation* v, int kind, unsigned watch, size_t byte, long long block,
                 long long other) {
    static constexpr int rank[] = {0, 2, 0, 1, 3, 4};  // by kind: lower is reported first
    const size_t count = v->count + 1;
    if (v->count == 0 || rank[kind] < rank[v->kind]) *v = Violation{kind, watch, byte, block, other, 0};
    v->count = count;
}

// Pass 2 or 3: each block alone against `sentinel`; writer[w][i] / value[w][i] per byte.
static void isolated_pass(const std::function<void()>& body, dim3 grid,
                          const std::vector<unsigned long long>& order, const Watch* watches,
                          unsigned n_watches, unsigned char sentinel,
                          std::vector<std::vector<std::int64_t>>& writer,
                          std::vector<std::vector<unsigned char>>& value, Violation* v) {
    for (unsigned w = 0; w < n_watches; ++w) {
        std::memset(watches[w].data, sentinel, watches[w].bytes);
        writer[w].assign(watches[w].bytes, -1);
        value[w].assign(watches[w].bytes, sentinel);
    }
    std::uint64_t pattern;
    std::memset(&pattern, sentinel, sizeof(pattern));
    for (unsigned long long b : order) {
        run_one(body, b, grid);
        for (unsigned w = 0; w < n_watches; ++w) {
            unsigned char* data = watches[w].data;
            const size_t n = watches[w].bytes;
            for (size_t i = 0; i < n;) {
                std::uint64_t word;
                if (i + 8 <= n && (std::memcpy(&word, data + i, 8), word == pattern)) {
                    i += 8;
                    continue;
                }
                const size_t end = std::min(n, i + 8);
                for (; i < end; ++i) {
                    if (data[i] == sentinel) continue;
                    if (writer[w][i] >= 0) note(v, kTwoBlocks, w, i, writer[w][i], b);
                    writer[w][i] = static_cast<std::int64_t>(b);
                    value[w][i] = data[i];
                    data[i] = sentinel;
                }
            }
        }
    }
}

template <typename... Args, size_t... I>
static void call_with(void (*kernel)(Args...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<Args>*>(args[I])...);
}

// Returns 0, 1 (the kernel failed: cudacpu_error() says why) or 2 (`violation` says which
// check of the block ownership failed, first one found).
template <typename... Args>
static int launch(void (*kernel)(Args...), dim3 grid, dim3 block, size_t shared_bytes,
                  void** args, const Watch* watches, unsigned n_watches, unsigned long long seed,
                  Violation* violation) {
    grid_dim = grid;
    block_dim = block;
    dynamic_bytes = shared_bytes;
    dynamic_storage.assign(shared_bytes + 2 * kGuardBytes, 0);
    *violation = Violation{0, 0, 0, 0, 0, 0};
    const std::function<void()> body = [&] {
        call_with(kernel, args, std::index_sequence_for<Args...>{});
    };
    const unsigned long long blocks = static_cast<unsigned long long>(grid.x) * grid.y * grid.z;
    std::vector<unsigned long long> order(blocks);
    std::iota(order.begin(), order.end(), 0ull);
    std::vector<std::vector<unsigned char>> original(n_watches), forward(n_watches);
    try {
        for (unsigned w = 0; w < n_watches; ++w)
            original[w].assign(watches[w].data, watches[w].data + watches[w].bytes);
        for (unsigned long long b : order) run_one(body, b, grid);
        if (n_watches == 0) return 0;
        for (unsigned w = 0; w < n_watches; ++w)
            forward[w].assign(watches[w].data, watches[w].data + watches[w].bytes);

        std::vector<std::vector<std::int64_t>> writer[2] = {
            std::vector<std::vector<std::int64_t>>(n_watches),
            std::vector<std::vector<std::int64_t>>(n_watches)};
        std::vector<std::vector<unsigned char>> value[2] = {
            std::vector<std::vector<unsigned char>>(n_watches),
            std::vector<std::vector<unsigned char>>(n_watches)};
        std::reverse(order.begin(), order.end());
        isolated_pass(body, grid, order, watches, n_watches, 0xA5, writer[0], value[0], violation);
        std::mt19937_64 random(seed);
        std::shuffle(order.begin(), order.end(), random);
        isolated_pass(body, grid, order, watches, n_watches, 0x5A, writer[1], value[1], violation);

        for (unsigned w = 0; w < n_watches; ++w) {
            const Watch& watch = watches[w];
            for (size_t i = 0; i < watch.bytes; ++i) {
                const std::int64_t w0 = writer[0][w][i], w1 = writer[1][w][i];
                if (w0 >= 0 && w1 >= 0 && w0 != w1) note(violation, kTwoBlocks, w, i, w0, w1);
                else if (w0 >= 0 && w1 >= 0 && value[0][w][i] != value[1][w][i])
                    note(violation, kUnstable, w, i, w0, w1);
                const std::int64_t by = w0 >= 0 ? w0 : w1, owner = watch.owner[i];
                if (by >= 0 && owner != -2 && owner != by)
                    note(violation, kNotOwner, w, i, by, owner);
                if (by < 0 && owner >= 0) note(violation, kMissing, w, i, -1, owner);
                const unsigned char assembled =
                    w0 >= 0 ? value[0][w][i] : (w1 >= 0 ? value[1][w][i] : original[w][i]);
                if (assembled != forward[w][i]) note(violation, kOrder, w, i, by, -1);
            }
            std::memcpy(watch.data, forward[w].data(), watch.bytes);
        }
    } catch (const std::exception&) {
        for (unsigned w = 0; w < n_watches; ++w)
            if (!original[w].empty()) std::memcpy(watches[w].data, original[w].data(), watches[w].bytes);
        return 1;
    }
    return violation->count ? 2 : 0;
}
}  // namespace cudacpu

extern "C" const char* cudacpu_error() { return cudacpu::error_message; }
