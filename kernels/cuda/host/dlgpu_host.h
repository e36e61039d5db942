// Runs the CUDA C kernels of kernels/cuda/*.cu on the CPU, as they are written, for the tests of a
// machine without a GPU (kernels/cuda/_host.py compiles each module with g++ against this header).
//
// What is emulated, and how
//   * Every CUDA thread is a fiber with its own stack; the fibers of a block run one at a
//     time, in thread order (or reversed: the `order` argument), each until it reaches a barrier.
//     __syncthreads() releases when every live thread of the block waits at it, a warp shuffle when
//     every live lane of the warp does, grid.sync() when every live thread of the grid does. A
//     barrier that can never release (divergent __syncthreads, a shuffle some lanes skip, a grid
//     barrier outside a cooperative launch) is reported as an error, not a hang.
//   * Blocks of an ordinary launch run one after another; a cooperative launch runs all its blocks
//     together, so grid.sync() works as on a device.
//   * __shared__ arrays are per block: _host.py rewrites each declaration into a lookup of this
//     block's copy (DLGPU_SHARED / DLGPU_EXTERN_SHARED below). Shared memory starts filled with 0xFF
//     bytes (NaN as float), so a read of a slot nobody wrote shows up in the results.
//   * __half is IEEE binary16 (_Float16, rounding as the device's cvt.rn), __nv_bfloat16 is rounded
//     to nearest even in software, double -> half/bf16 rounds once. WMMA fragments hold a whole
//     16x16 tile in every lane and multiply in fp32.
// What is not: timing, __ldcg's caching, fast-math intrinsics' last bits (expf etc. are glibc's).
//
// Sanitizers (_host.py SANITIZERS; python -m dlgpu.kernels.cuda.hostcheck runs a command under one)
//   * memcheck, -fsanitize=address: every load and store of a kernel is checked, so a read or write
//     outside an array (global memory allocated by NumPy/torch, a __shared__ array, a thread's
//     local array) is reported where it happens. Shared memory then has no guard bytes: ASan's
//     redzones catch reads past the end too.
//   * racecheck, -fsanitize=thread: every CUDA thread is a ThreadSanitizer fiber, and switching
//     between fibers orders nothing. Only what orders memory on a device does: __syncthreads()
//     (within a block), grid.sync() (within the grid), the end of a launch; atomicAdd is atomic.
//     So two threads that touch the same shared or global address, one writing, with no barrier
//     between them, are reported: within a block, across blocks, across the lanes of a warp (a
//     shuffle exchanges values but orders no memory, as on sm_70+).
//   The runtime's own bookkeeping (fiber states, shuffle slots, per-block allocations) is excluded
//   from both: DLGPU_RUNTIME functions are not instrumented, and their allocations are hidden from
//   ThreadSanitizer (Ignore).
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// __restrict__ is GCC's own spelling; __shared__ declarations are rewritten by _host.py

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };
struct float2 { float x, y; };

// ------------------------------------------------------------------ sanitizer hooks
#if defined(__SANITIZE_THREAD__)
#define DLGPU_TSAN 1
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_set_fiber_name(void* fiber, const char* name);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
}
// noinline: an instrumented caller must not take the body in
#define DLGPU_RUNTIME __attribute__((no_sanitize_thread, noinline))
#else
#define DLGPU_TSAN 0
#define DLGPU_RUNTIME
#endif
#if defined(__SANITIZE_ADDRESS__)
#define DLGPU_ASAN 1
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
}
#else
#define DLGPU_ASAN 0
#endif

namespace dlgpu_host {
// While one lives, ThreadSanitizer neither records nor checks the calling fiber's memory accesses and
// allocations: the runtime's allocations made on a fiber and freed by the scheduler are not races.
struct Ignore {
#if DLGPU_TSAN
    Ignore() { __tsan_ignore_thread_begin(); }
    ~Ignore() { __tsan_ignore_thread_end(); }
#endif
};
}  // namespace dlgpu_host

// ------------------------------------------------------------------ fiber contexts
// x86-64: a switch saves the callee-saved registers and the FP control words on the old stack and
// pops them from the new one (no syscall, unlike swapcontext's signal-mask save); elsewhere ucontext.
namespace dlgpu_host {
#if defined(__x86_64__) && !defined(DLGPU_HOST_UCONTEXT)
extern "C" void dlgpu_host_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl dlgpu_host_switch
    .hidden dlgpu_host_switch
    .type dlgpu_host_switch, @function
dlgpu_host_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size dlgpu_host_switch, .-dlgpu_host_switch
)");

struct RawContext {
    void* sp = nullptr;
};
DLGPU_RUNTIME inline void raw_switch(RawContext& from, RawContext& to) { dlgpu_host_switch(&from.sp, to.sp); }
// A fresh context that enters fn() on the given stack (fn never returns).
DLGPU_RUNTIME inline void raw_make(RawContext& c, char* stack, size_t bytes, void (*fn)()) {
    // the return slot is 16-byte aligned, so fn starts with rsp = 8 (mod 16), as after a call
    uint64_t* ret = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t{15}) - 16);
    uint64_t* sp = ret - 7;  // FP control words, r15, r14, r13, r12, rbx, rbp
    unsigned mxcsr = __builtin_ia32_stmxcsr();
    unsigned short fpucw;
    asm volatile("fnstcw %0" : "=m"(fpucw));
    memset(sp, 0, 8 * sizeof(uint64_t));
    memcpy(sp, &mxcsr, 4);
    memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
    *ret = reinterpret_cast<uint64_t>(fn);
    c.sp = sp;
}
#else
struct RawContext {
    ucontext_t uc;
};
DLGPU_RUNTIME inline void raw_switch(RawContext& from, RawContext& to) { swapcontext(&from.uc, &to.uc); }
DLGPU_RUNTIME inline void raw_make(RawContext& c, char* stack, size_t bytes, void (*fn)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = bytes;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, fn, 0);
}
#endif

struct Context {
    RawContext raw;
    const void* stack = nullptr;  // ASan: the context's stack, announced before switching to it
    size_t stack_bytes = 0;
    void* fake_stack = nullptr;
    void* tsan = nullptr;  // its ThreadSanitizer fiber
    bool sync_on_entry = false;  // TSan: switching to it orders the switcher's past before it
};

DLGPU_RUNTIME inline void switch_context(Context& from, Context& to) {
#if DLGPU_ASAN
    __sanitizer_start_switch_fiber(&from.fake_stack, to.stack, to.stack_bytes);
#endif
#if DLGPU_TSAN
    __tsan_switch_to_fiber(to.tsan, to.sync_on_entry ? 0 : 1 /* __tsan_switch_to_fiber_no_sync */);
#endif
    raw_switch(from.raw, to.raw);
#if DLGPU_ASAN
    __sanitizer_finish_switch_fiber(from.fake_stack, nullptr, nullptr);
#endif
}
DLGPU_RUNTIME inline void make_context(Context& c, char* stack, size_t bytes, void (*fn)()) {
    raw_make(c.raw, stack, bytes, fn);
    c.stack = stack;
    c.stack_bytes = bytes;
}
}  // namespace dlgpu_host

// ------------------------------------------------------------------ the fiber scheduler
namespace dlgpu_host {

enum State : int { RUN, WARP_BAR, BLOCK_BAR, GRID_BAR, DONE };

struct Fiber {
    Context ctx;
    uint3 tid;
    int lin;  // linear thread index in the block
    State state;
    bool started;
    unsigned block_barriers, grid_barriers;  // passed so far (TSan: which sync object the next uses)
};

struct Block {
    uint3 idx;
    std::vector<Fiber> fibers;
    std::map<const void*, std::pair<void*, size_t>> shared;  // per __shared__ declaration (and instantiation)
    void* dynamic = nullptr;
    size_t dynamic_bytes = 0;
    unsigned long long xchg[1024];  // warp shuffle slots, one per thread
    std::vector<unsigned char> tile;  // per warp: one WMMA tile (warp_share)
    char* sync = nullptr;            // TSan: __syncthreads' two sync objects, fresh for every block
};

struct Launch {
    bool cooperative = false;
    size_t dynamic_bytes = 0;
    void (*body)(void*) = nullptr;  // the kernel call, run by every fiber
    void* body_arg = nullptr;
    char* sync = nullptr;  // TSan: grid.sync's two sync objects and the launch's end
};

inline Context g_sched;
inline Fiber* g_fiber = nullptr;
inline Block* g_block = nullptr;
inline Launch* g_launch = nullptr;
inline std::string g_error;
inline bool g_unwinding = false;  // after an error: parked fibers finish without running on
#if DLGPU_TSAN
#ifndef DLGPU_TSAN_FIBERS
#define DLGPU_TSAN_FIBERS 6144  // _host.py RACECHECK_FIBERS: ThreadSanitizer dies past 8128 threads
#endif
// ThreadSanitizer fibers, reused: creating one costs a fresh mapping of its state. Consecutive blocks
// of an ordinary launch take alternate halves, so two neighbours never share one (a race between
// blocks b and b+2 with the same thread index goes unseen; b and b+1 is the overlap bugs make).
inline std::vector<void*> g_tsan_fibers;
#endif

}  // namespace dlgpu_host

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

namespace dlgpu_host {

// The calling fiber is done for good: its past is ordered before the end of the launch.
[[noreturn]] DLGPU_RUNTIME inline void finish() {
#if DLGPU_TSAN
    __tsan_release(g_launch->sync + 16);
#endif
    g_fiber->state = DONE;
    switch_context(g_fiber->ctx, g_sched);
    __builtin_unreachable();  // never resumed
}

// Hands control to the scheduler until it resumes this fiber (its state says what it waits for).
DLGPU_RUNTIME inline void park() {
    switch_context(g_fiber->ctx, g_sched);
    if (g_unwinding) finish();
}

// Stops the calling thread for good and makes the launch fail with `msg` (the first error wins).
[[noreturn]] DLGPU_RUNTIME inline void fail(const std::string& msg) {
    {
        Ignore ignore;
        if (g_error.empty()) {
            g_error = msg + " (block " + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
                      std::to_string(blockIdx.z) + ", thread " + std::to_string(threadIdx.x) + "," +
                      std::to_string(threadIdx.y) + "," + std::to_string(threadIdx.z) + ")";
        }
    }
    finish();
}

// The sync object a barrier of kind `s` uses (TSan), alternating between two so that a thread
// arriving at the next barrier cannot hand its new writes to one still leaving this one.
DLGPU_RUNTIME inline void* barrier_sync(State s) {
    if (s == BLOCK_BAR) return g_block->sync + 8 * (g_fiber->block_barriers++ & 1);
    if (s == GRID_BAR) return g_launch->sync + 8 * (g_fiber->grid_barriers++ & 1);
    return nullptr;  // a warp barrier (shuffle, WMMA) exchanges values, not memory order
}

DLGPU_RUNTIME inline void wait(State s) {
#if DLGPU_TSAN
    void* sync = barrier_sync(s);
    if (sync) __tsan_release(sync);
#endif
    g_fiber->state = s;
    park();
#if DLGPU_TSAN
    if (sync) __tsan_acquire(sync);
#endif
}

#if DLGPU_ASAN
constexpr size_t GUARD_BYTES = 0;  // ASan's redzones check every access past an array's end
#else
constexpr size_t GUARD_BYTES = 256;  // after each shared array: a write past its end is reported
#endif
constexpr unsigned char GUARD = 0xA5;

DLGPU_RUNTIME inline void* aligned_block(size_t bytes) {
    void* p = nullptr;
    {
        Ignore ignore;
        if (posix_memalign(&p, 256, bytes + GUARD_BYTES) != 0) p = nullptr;
        else {
            memset(p, 0xFF, bytes);  // poison: NaN as float
            memset(static_cast<char*>(p) + bytes, GUARD, GUARD_BYTES);
        }
    }
    if (p == nullptr) fail("out of host memory for shared memory");
    return p;
}

DLGPU_RUNTIME inline bool guard_intact(const void* p, size_t bytes) {
    const unsigned char* g = static_cast<const unsigned char*>(p) + bytes;
    for (size_t i = 0; i < GUARD_BYTES; ++i)
        if (g[i] != GUARD) return false;
    return true;
}

// This block's copy of the __shared__ array declared at `key`.
DLGPU_RUNTIME inline void* shared(const void* key, size_t bytes) {
    auto it = g_block->shared.find(key);
    if (it != g_block->shared.end()) return it->second.first;
    void* p = aligned_block(bytes);
    Ignore ignore;
    g_block->shared.emplace(key, std::make_pair(p, bytes));
    return p;
}

DLGPU_RUNTIME inline void* dynamic_shared() {
    if (g_block->dynamic == nullptr) {
        g_block->dynamic_bytes = g_launch->dynamic_bytes;
        g_block->dynamic = aligned_block(g_block->dynamic_bytes);
    }
    return g_block->dynamic;
}

// Frees the block's shared memory and fibers; false (g_error set) when a guard shows a write past an
// array's end.
DLGPU_RUNTIME inline bool release_block_memory(Block& b) {
    Ignore ignore;  // what the fibers did to this memory is not the scheduler's race
    bool ok = true;
    for (auto& kv : b.shared) {
        ok = ok && guard_intact(kv.second.first, kv.second.second);
        free(kv.second.first);
    }
    b.shared.clear();
    if (b.dynamic != nullptr) {
        if (!guard_intact(b.dynamic, b.dynamic_bytes) && ok) {
            ok = false;
            if (g_error.empty())
                g_error = "dynamic shared memory written past the " + std::to_string(b.dynamic_bytes) +
                          " bytes the launch gave";
        }
        free(b.dynamic);
        b.dynamic = nullptr;
    }
    b.tile.clear();
    b.tile.shrink_to_fit();
    free(b.sync);  // with it, ThreadSanitizer forgets its sync objects
    b.sync = nullptr;
    if (!ok && g_error.empty()) g_error = "a __shared__ array written past its end";
    return ok;
}

[[noreturn]] DLGPU_RUNTIME inline void entry() {
#if DLGPU_ASAN
    // first landing on this stack: learn the scheduler's, to switch back to it
    __sanitizer_finish_switch_fiber(nullptr, &g_sched.stack, &g_sched.stack_bytes);
#endif
    g_launch->body(g_launch->body_arg);
    finish();
}

constexpr size_t STACK_BYTES = 64 * 1024;  // the kernels keep a few KB of locals; untouched pages cost nothing

// Stacks with a PROT_NONE guard page below each, so an overflow faults instead of corrupting.
struct Stacks {
    char* base = nullptr;
    size_t count = 0, page = 0;
    DLGPU_RUNTIME explicit Stacks(size_t n) : count(n), page((size_t)sysconf(_SC_PAGESIZE)) {
        Ignore ignore;  // TSan: a fresh mapping has no history
        void* p = mmap(nullptr, n * (STACK_BYTES + page), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        base = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
        for (size_t i = 0; base && i < n; ++i) mprotect(base + i * (STACK_BYTES + page), page, PROT_NONE);
    }
    DLGPU_RUNTIME ~Stacks() {
        if (!base) return;
#if DLGPU_ASAN
        // frames that never returned (a failed thread) leave their redzones poisoned
        for (size_t i = 0; i < count; ++i) __asan_unpoison_memory_region(stack(i), STACK_BYTES);
#endif
        Ignore ignore;
        munmap(base, count * (STACK_BYTES + page));
    }
    char* stack(size_t i) const { return base + i * (STACK_BYTES + page) + page; }
};

// Block `idx` with its threads on stacks (and TSan fibers) first, first + 1, ...
DLGPU_RUNTIME inline void start_block(Block& b, uint3 idx, uint3 block, const Stacks& stacks, size_t first) {
    b.idx = idx;
    const size_t n = (size_t)block.x * block.y * block.z;
    b.fibers.resize(n);
    {
        Ignore ignore;
        b.sync = static_cast<char*>(malloc(32));
    }
    for (size_t i = 0; i < n; ++i) {
        Fiber& f = b.fibers[i];
        f = Fiber{};
        f.lin = (int)i;
        f.tid = uint3{(unsigned)(i % block.x), (unsigned)(i / block.x % block.y), (unsigned)(i / block.x / block.y)};
        f.state = RUN;
        make_context(f.ctx, stacks.stack(first + i), STACK_BYTES, entry);
#if DLGPU_TSAN
        while (g_tsan_fibers.size() <= first + i) g_tsan_fibers.push_back(__tsan_create_fiber(0));
        f.ctx.tsan = g_tsan_fibers[first + i];
        f.ctx.sync_on_entry = true;  // what the host did before the launch (inputs, poison) is visible
        const std::string name = "block (" + std::to_string(idx.x) + "," + std::to_string(idx.y) + "," +
                                 std::to_string(idx.z) + ") thread (" + std::to_string(f.tid.x) + "," +
                                 std::to_string(f.tid.y) + "," + std::to_string(f.tid.z) + ")";
        __tsan_set_fiber_name(f.ctx.tsan, name.c_str());
#endif
    }
}

DLGPU_RUNTIME inline std::string describe(const std::vector<Block*>& blocks) {
    static const char* names[] = {"running", "at a warp shuffle", "at __syncthreads", "at grid.sync", "done"};
    std::string s;
    for (Block* b : blocks) {
        int count[5] = {0, 0, 0, 0, 0};
        for (Fiber& f : b->fibers) count[f.state]++;
        s += " block (" + std::to_string(b->idx.x) + "," + std::to_string(b->idx.y) + "," +
             std::to_string(b->idx.z) + "):";
        for (int k = 0; k < 5; ++k)
            if (count[k]) s += " " + std::to_string(count[k]) + " " + names[k] + ";";
    }
    return s;
}

DLGPU_RUNTIME inline void resume(Block* b, Fiber& f) {
    g_fiber = &f;
    g_block = b;
    threadIdx = f.tid;
    blockIdx = b->idx;
    f.started = true;
    switch_context(g_sched, f.ctx);
}

// Runs the blocks to completion; false (g_error set) on a kernel error or a barrier deadlock.
DLGPU_RUNTIME inline bool run(const std::vector<Block*>& blocks, bool reverse) {
    for (;;) {
        for (Block* b : blocks) {
            const size_t n = b->fibers.size();
            for (size_t k = 0; k < n; ++k) {
                Fiber& f = b->fibers[reverse ? n - 1 - k : k];
                if (f.state != RUN) continue;
                resume(b, f);
                if (!g_error.empty()) return false;
            }
        }
        // nobody runs: release the narrowest barrier every live thread of its scope has reached
        bool released = false;
        size_t live_grid = 0, at_grid = 0;
        for (Block* b : blocks) {
            const size_t n = b->fibers.size();
            for (size_t w = 0; w < n; w += 32) {
                size_t live = 0, at = 0;
                for (size_t i = w; i < std::min(n, w + 32); ++i) {
                    live += b->fibers[i].state != DONE;
                    at += b->fibers[i].state == WARP_BAR;
                }
                if (live && at == live) {
                    for (size_t i = w; i < std::min(n, w + 32); ++i) b->fibers[i].state = RUN;
                    released = true;
                }
            }
        }
        if (released) continue;
        for (Block* b : blocks) {
            size_t live = 0, at = 0;
            for (Fiber& f : b->fibers) {
                live += f.state != DONE;
                at += f.state == BLOCK_BAR;
                at_grid += f.state == GRID_BAR;
            }
            live_grid += live;
            if (live && at == live) {
                for (Fiber& f : b->fibers) f.state = RUN;
                released = true;
            }
        }
        if (released) continue;
        if (live_grid == 0) return true;
        if (at_grid == live_grid) {
            for (Block* b : blocks)
                for (Fiber& f : b->fibers)
                    if (f.state == GRID_BAR) f.state = RUN;
            continue;
        }
        g_error = "barrier deadlock: threads wait at barriers that cannot all be reached (divergent "
                  "__syncthreads / shuffle / grid.sync);" + describe(blocks);
        return false;
    }
}

// After an error: every thread that ran and is not done finishes where it is parked, so that
// (TSan) its accesses too are ordered before the end of the launch.
DLGPU_RUNTIME inline void unwind(const std::vector<Block*>& blocks) {
    g_unwinding = true;
    for (Block* b : blocks)
        for (Fiber& f : b->fibers)
            if (f.started && f.state != DONE) resume(b, f);
    g_unwinding = false;
}

// One launch: every block of the grid, each thread running body(arg).
DLGPU_RUNTIME inline bool launch(uint3 grid, uint3 block, size_t dynamic_bytes, bool cooperative, bool reverse,
                                 void (*body)(void*), void* arg) {
    Launch l;
    l.cooperative = cooperative;
    l.dynamic_bytes = dynamic_bytes;
    l.body = body;
    l.body_arg = arg;
    g_launch = &l;
    g_error.clear();
    gridDim = dim3{grid.x, grid.y, grid.z};
    blockDim = dim3{block.x, block.y, block.z};
    const size_t threads = (size_t)block.x * block.y * block.z;
    const size_t nblocks = (size_t)grid.x * grid.y * grid.z;
    if (threads == 0 || threads > 1024 || nblocks == 0) {
        g_error = "bad launch configuration";
        return false;
    }
#if DLGPU_TSAN
    g_sched.tsan = __tsan_get_current_fiber();
#endif
    {
        Ignore ignore;
        l.sync = static_cast<char*>(malloc(32));
    }
    std::vector<uint3> order;
    order.reserve(nblocks);
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) order.push_back(uint3{x, y, z});
    const size_t together = cooperative ? nblocks : 1;
    // TSan: ordinary blocks alternate between two sets of stacks and fibers (g_tsan_fibers), so a
    // stack's history is always its own fiber's
    const size_t sets = !cooperative && DLGPU_TSAN ? 2 : 1;
#if DLGPU_TSAN
    if (sets * together * threads > DLGPU_TSAN_FIBERS) {
        g_error = "racecheck: a cooperative launch of " + std::to_string(nblocks * threads) +
                  " threads; ThreadSanitizer can hold " + std::to_string(DLGPU_TSAN_FIBERS);
        return false;
    }
#endif
    Stacks stacks(sets * together * threads);
    if (stacks.base == nullptr) {
        g_error = "could not map fiber stacks";
        return false;
    }
    std::vector<Block> storage(together);
    std::vector<Block*> blocks;
    bool ok = true;
    for (size_t first = 0; ok && first < nblocks; first += together) {
        blocks.clear();
        const size_t set = first / together % sets;
        for (size_t k = 0; k < together; ++k) {
            start_block(storage[k], order[first + k], block, stacks, (set * together + k) * threads);
            blocks.push_back(&storage[k]);
        }
        ok = run(blocks, reverse);
        if (!ok) unwind(blocks);
        for (Block& b : storage) ok = release_block_memory(b) && ok;
    }
#if DLGPU_TSAN
    __tsan_acquire(l.sync + 16);  // a launch ends when all its threads have
#endif
    {
        Ignore ignore;
        free(l.sync);
    }
    g_launch = nullptr;
    return ok;
}
// ------------------------------------------------------------------ kernel entry points
// Kernel<&k>: calls k with its arguments unpacked from a void*[] (as cuLaunchKernel takes them), and
// describes its parameters ("f4,i8,p8,...") so the Python side can check what it passes.
template <class T> std::string code() {
    if constexpr (std::is_pointer_v<T>) return "p8";
    else if constexpr (std::is_same_v<T, bool>) return "b1";
    else if constexpr (std::is_floating_point_v<T>) return "f" + std::to_string(sizeof(T));
    else if constexpr (std::is_signed_v<T>) return "i" + std::to_string(sizeof(T));
    else return "u" + std::to_string(sizeof(T));
}

template <auto K> struct Kernel;
template <class... A, void (*K)(A...)> struct Kernel<K> {
    struct Call {
        void** args;
    };
    template <size_t... I> static void invoke(void** args, std::index_sequence<I...>) {
        K(*static_cast<std::remove_cv_t<A>*>(args[I])...);
    }
    static void body(void* p) { invoke(static_cast<Call*>(p)->args, std::index_sequence_for<A...>{}); }
    static std::string signature() {
        std::string s;
        ((s += (s.empty() ? "" : ",") + code<std::remove_cv_t<A>>()), ...);
        return s;
    }
    static bool launch(uint3 grid, uint3 block, size_t dyn, bool coop, bool reverse, void** args) {
        Call c{args};
        return dlgpu_host::launch(grid, block, dyn, coop, reverse, &body, &c);
    }
};

struct Entry {
    const char* name;
    bool (*launch)(uint3, uint3, size_t, bool, bool, void**);
    std::string (*signature)();
};

}  // namespace dlgpu_host

// A __shared__ array: this block's copy (declarations rewritten by _host.py).
#define DLGPU_SHARED(T, name, dims)                  \
    using name##_dlgpu_t = T dims;                   \
    static const char name##_dlgpu_key = 0;          \
    name##_dlgpu_t& name = *static_cast<name##_dlgpu_t*>(::dlgpu_host::shared(&name##_dlgpu_key, sizeof(name##_dlgpu_t)))
#define DLGPU_EXTERN_SHARED(T, name) T* const name = static_cast<T*>(::dlgpu_host::dynamic_shared())

inline void __syncthreads() { dlgpu_host::wait(dlgpu_host::BLOCK_BAR); }

// ------------------------------------------------------------------ warp shuffles
namespace dlgpu_host {
DLGPU_RUNTIME inline int lane_id() { return g_fiber->lin & 31; }

// After a warp barrier: every lane of the caller's warp must have arrived (none exited, warp complete).
DLGPU_RUNTIME inline void check_whole_warp(const char* what) {
    const Block& b = *g_block;
    const int base = g_fiber->lin & ~31;
    if (base + 32 > (int)b.fibers.size()) fail(std::string(what) + " in a partial warp");
    for (int i = base; i < base + 32; ++i)
        if (b.fibers[i].state == DONE) fail(std::string(what) + " while lanes of the warp have exited");
}

template <class T> DLGPU_RUNTIME T shuffle(unsigned mask, T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    if (mask != 0xffffffffu) fail("only full-warp shuffles are emulated");
    Block& b = *g_block;
    const int lin = g_fiber->lin, base = lin & ~31;
    unsigned long long slot = 0;
    memcpy(&slot, &v, sizeof(T));
    b.xchg[lin] = slot;
    wait(WARP_BAR);
    check_whole_warp("a full-mask warp shuffle");
    const unsigned long long got = b.xchg[base + (src & 31)];
    wait(WARP_BAR);  // nobody overwrites its slot before every lane has read
    T r;
    memcpy(&r, &got, sizeof(T));
    return r;
}

// Warp-collective (WMMA): x[e] of the lane that owns e (e = lane mod 32) goes to every lane's x[e].
template <class T> DLGPU_RUNTIME void warp_share(T* x, int n, const char* what) {
    constexpr size_t TILE = 1024;  // bytes: a 16x16 fragment of 4-byte elements
    if (n * sizeof(T) > TILE) fail(std::string(what) + ": a fragment larger than the emulated tile");
    Block& b = *g_block;
    if (b.tile.empty()) {
        Ignore ignore;
        b.tile.resize((b.fibers.size() + 31) / 32 * TILE);
    }
    T* s = reinterpret_cast<T*>(b.tile.data() + (size_t)(g_fiber->lin >> 5) * TILE);
    for (int e = lane_id(); e < n; e += 32) s[e] = x[e];
    wait(WARP_BAR);
    check_whole_warp(what);
    for (int e = 0; e < n; ++e) x[e] = s[e];
    wait(WARP_BAR);  // nobody overwrites the tile before every lane has copied it
}
}  // namespace dlgpu_host

template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    if (width != 32) dlgpu_host::fail("__shfl_xor_sync with width != 32 is not emulated");
    return dlgpu_host::shuffle(mask, v, dlgpu_host::lane_id() ^ lane_mask);
}
template <class T> T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    if (width != 32) dlgpu_host::fail("__shfl_sync with width != 32 is not emulated");
    return dlgpu_host::shuffle(mask, v, src_lane);
}

// ------------------------------------------------------------------ atomics and intrinsics
// One host thread runs every fiber, and a fiber is never preempted: plain read-modify-write is atomic.
// Under TSan it is done with atomic builtins, which ThreadSanitizer knows do not race.
template <class T, class U> T atomicAdd(T* p, U v) {
#if DLGPU_TSAN
    if constexpr (std::is_integral_v<T>) {
        return __atomic_fetch_add(p, (T)v, __ATOMIC_RELAXED);
    } else {
        using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
        static_assert(sizeof(T) == sizeof(Bits), "atomicAdd of a type that is not 4 or 8 bytes");
        Bits* q = reinterpret_cast<Bits*>(p);
        Bits seen = __atomic_load_n(q, __ATOMIC_RELAXED);
        for (;;) {
            T old, sum;
            memcpy(&old, &seen, sizeof(T));
            sum = (T)(old + v);
            Bits want;
            memcpy(&want, &sum, sizeof(T));
            if (__atomic_compare_exchange_n(q, &seen, want, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
        }
    }
#else
    const T old = *p;
    *p = (T)(old + v);
    return old;
#endif
}
template <class T> T __ldcg(const T* p) { return *p; }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
namespace dlgpu_host {
template <class To, class From> To bit_cast(From v) {  // C++20's std::bit_cast
    static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
    To t;
    memcpy(&t, &v, sizeof(To));
    return t;
}
}  // namespace dlgpu_host
inline float __int_as_float(int v) { return dlgpu_host::bit_cast<float>(v); }
inline int __float_as_int(float f) { return dlgpu_host::bit_cast<int>(f); }

// ------------------------------------------------------------------ half and bfloat16
struct __half { unsigned short __x; };
struct __half2 { __half x, y; };
struct __nv_bfloat16 { unsigned short __x; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };

inline float __half2float(__half h) { return (float)dlgpu_host::bit_cast<_Float16>(h.__x); }
inline __half __float2half_rn(float f) { return __half{dlgpu_host::bit_cast<unsigned short>((_Float16)f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
// rounded once, from double
inline __half __double2half(double d) { return __half{dlgpu_host::bit_cast<unsigned short>((_Float16)d)}; }
inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }

inline float __bfloat162float(__nv_bfloat16 b) { return dlgpu_host::bit_cast<float>((unsigned)b.__x << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    unsigned u = dlgpu_host::bit_cast<unsigned>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(unsigned short)((u >> 16) | 0x40)};  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return __nv_bfloat16{(unsigned short)(u >> 16)};
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
// double -> bf16 rounded once: round to float by truncation with the inexactness kept in the last
// bit (round-to-odd; 16 spare bits), then to nearest even.
inline __nv_bfloat16 __double2bfloat16(double d) {
    if (d != d) return __float2bfloat16_rn((float)d);
    float f = (float)d;
    if ((double)f != d && !isinf(d)) {
        if (fabs((double)f) > fabs(d)) f = nextafterf(f, 0.f);
        f = dlgpu_host::bit_cast<float>(dlgpu_host::bit_cast<unsigned>(f) | 1u);
    }
    return __float2bfloat16_rn(f);
}
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline float2 __bfloat1622float2(__nv_bfloat162 b) { return float2{__bfloat162float(b.x), __bfloat162float(b.y)}; }

// ------------------------------------------------------------------ cooperative groups
namespace cooperative_groups {
struct grid_group {
    void sync() const {
        if (!dlgpu_host::g_launch->cooperative) dlgpu_host::fail("grid.sync() in a launch that is not cooperative");
        dlgpu_host::wait(dlgpu_host::GRID_BAR);
    }
    bool is_valid() const { return dlgpu_host::g_launch->cooperative; }
};
inline grid_group this_grid() { return grid_group{}; }
}  // namespace cooperative_groups

// ------------------------------------------------------------------ WMMA (mma.h)
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

inline float widen(float v) { return v; }
inline float widen(__half v) { return __half2float(v); }
inline float widen(__nv_bfloat16 v) { return __bfloat162float(v); }

// Every lane holds the whole tile, row-major: x[r * cols + c]. Memory is read and written by the lane
// that owns an element, every 32nd (e = lane mod 32), and the lanes then share what they loaded: a
// device's lanes each touch their own part of a tile, so no lane touches another's part (racecheck).
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
    static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
    static constexpr int num_elements = rows * cols;
    T x[rows * cols];
};

template <class Use, int M, int N, int K, class T, class L>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, T v) {
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}
template <class Use, int M, int N, int K, class T, class L>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const T* p, unsigned ldm) {
    using F = fragment<Use, M, N, K, T, L>;
    for (int e = dlgpu_host::lane_id(); e < F::num_elements; e += 32) {
        const int r = e / F::cols, c = e % F::cols;
        f.x[e] = std::is_same_v<L, col_major> ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
    }
    dlgpu_host::warp_share(f.x, F::num_elements, "wmma::load_matrix_sync");
}
template <int M, int N, int K, class T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t layout) {
    for (int e = dlgpu_host::lane_id(); e < M * N; e += 32) {
        const int r = e / N, c = e % N;
        f.x[e] = layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
    }
    dlgpu_host::warp_share(f.x, M * N, "wmma::load_matrix_sync");
}
template <int M, int N, int K, class T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
    for (int e = dlgpu_host::lane_id(); e < M * N; e += 32) {
        const int r = e / N, c = e % N;
        (layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c]) = f.x[e];
    }
}
template <int M, int N, int K, class TA, class LA, class TB, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
    // warp-collective: each lane computes every 32nd element of the tile, then all lanes share it
    for (int e = dlgpu_host::lane_id(); e < M * N; e += 32) {
        const int i = e / N, j = e % N;
        float acc = c.x[e];
        for (int k = 0; k < K; ++k) acc += widen(a.x[i * K + k]) * widen(b.x[k * N + j]);
        d.x[e] = acc;
    }
    dlgpu_host::warp_share(d.x, M * N, "wmma::mma_sync");
}
}  // namespace wmma
}  // namespace nvcuda
