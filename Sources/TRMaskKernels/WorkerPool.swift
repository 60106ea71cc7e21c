#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The helper threads that multi-threaded calls share: started on the first call that wants them
/// and kept, so a call costs a wake-up (nothing when the helpers are still spinning from the last
/// call) instead of a thread start and join (~45 us per call on a VM).
///
/// - One call at a time uses the pool. A call that finds it taken (another thread of the caller's
///   process is inside a call) runs on its own thread: callers never wait for each other, and jobs
///   never mix.
/// - A helper joins a job only while it is open; the caller closes it when it has drained every
///   block itself, so it waits only for helpers that are inside a block, never for one that is
///   still waking up.
/// - Idle helpers spin (yielding the core) for `spinNanoseconds`, then sleep on a condition
///   variable: no core is burnt while the library is idle.
/// - After `fork()` the child has none of the parent's helpers: it forgets the pool (leaked, its
///   lock may be held by a thread that does not exist there) and starts a new one when needed.
final class WorkerPool: @unchecked Sendable {
    /// How long idle threads poll before sleeping: a trainer's next call usually comes within
    /// this (~20 us of Python between calls), and then finds its helpers awake.
    static let spinNanoseconds = 100_000

    /// The pool of this process, created on first use (nil again in a forked child).
    private nonisolated(unsafe) static var shared: WorkerPool?
    /// Guards `shared` (a plain pthread mutex: `pthread_atfork` handlers lock and unlock it).
    private nonisolated(unsafe) static let creation: UnsafeMutablePointer<pthread_mutex_t> = {
        let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        pthread_atfork({ pthread_mutex_lock(WorkerPool.creation) },
                       { pthread_mutex_unlock(WorkerPool.creation) },
                       {
                           WorkerPool.forgetInChild()
                           pthread_mutex_unlock(WorkerPool.creation)
                       })
        return lock
    }()

    /// The job of the current call and who may join it (guarded by `lock`).
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let done = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Not retained: the caller keeps its job alive until every helper has left it. A helper
    /// holding a reference after it signals would make `forEachRowBlock`'s
    /// `withoutActuallyEscaping` see the closure escape (a trap), so helpers never own one.
    private var job: Unmanaged<RowBlocks>?
    private var openSlots = 0
    private var nextWorker = 1
    private var helpers = 0
    private var sleeping = 0
    /// The number of the last job posted: spinning helpers watch it without the lock.
    private let posted = Atomic<Int>(0)
    /// Helpers inside the current job: changed under `lock`, read by the spinning caller.
    private let active = Atomic<Int>(0)
    /// Whether a call owns the pool.
    private let busy = Atomic<Bool>(false)

    private init() {
        pthread_mutex_init(lock, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(done, nil)
    }

    /// The process's pool, creating it on first use.
    static func current() -> WorkerPool {
        pthread_mutex_lock(creation)
        defer { pthread_mutex_unlock(creation) }
        if let shared { return shared }
        let pool = WorkerPool()
        shared = pool
        return pool
    }

    /// Runs in the child after `fork()`, with `creation` held by the forking thread.
    private static func forgetInChild() {
        if let shared { _ = Unmanaged.passRetained(shared) }  // never deinitialised: its lock may be held
        shared = nil
    }

    /// Drains `blocks` with up to `workers - 1` helpers besides the calling thread (worker 0);
    /// returns when every block is done. Runs on the calling thread alone when another call owns
    /// the pool or no helper thread can be started.
    func run(_ blocks: RowBlocks, workers: Int) {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            blocks.drain(worker: 0)
            return
        }
        defer { busy.store(false, ordering: .releasing) }
        pthread_mutex_lock(lock)
        // One helper per other processor at most: more would only take turns on the same cores.
        while helpers < Swift.min(workers, availableProcessors) - 1 && startHelper() { helpers += 1 }
        job = Unmanaged.passUnretained(blocks)
        openSlots = Swift.min(workers - 1, helpers)
        nextWorker = 1
        posted.wrappingAdd(1, ordering: .releasing)
        if sleeping > 0 { pthread_cond_broadcast(wake) }
        pthread_mutex_unlock(lock)

        blocks.drain(worker: 0)

        pthread_mutex_lock(lock)
        job = nil
        openSlots = 0
        pthread_mutex_unlock(lock)
        // Helpers still inside finish their last block: poll for a while, then sleep.
        if !spin(until: { active.load(ordering: .acquiring) == 0 }) {
            pthread_mutex_lock(lock)
            while active.load(ordering: .acquiring) > 0 { pthread_cond_wait(done, lock) }
            pthread_mutex_unlock(lock)
        }
    }

    private func startHelper() -> Bool {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        guard pthread_create(&thread, &attributes, { raw in
            Unmanaged<WorkerPool>.fromOpaque(raw.unsafelyUnwrapped).takeRetainedValue().helperLoop()
            return nil
        }, context) == 0 else {
            Unmanaged<WorkerPool>.fromOpaque(context).release()
            return false
        }
        return true
    }

    /// A helper: joins each job it sees while the job is open, forever (the thread never ends).
    private func helperLoop() {
        var seen = 0  // number of the last job this helper joined or found closed
        pthread_mutex_lock(lock)
        while true {
            let number = posted.load(ordering: .relaxed)
            if number != seen, let job, openSlots > 0 {
                openSlots -= 1
                let worker = nextWorker
                nextWorker += 1
                active.wrappingAdd(1, ordering: .relaxed)
                seen = number
                pthread_mutex_unlock(lock)
                job._withUnsafeGuaranteedRef { $0.drain(worker: worker) }
                pthread_mutex_lock(lock)
                if active.wrappingSubtract(1, ordering: .releasing).newValue == 0 { pthread_cond_signal(done) }
                continue
            }
            seen = number  // over, or every slot taken
            pthread_mutex_unlock(lock)
            let polled = spin(until: { posted.load(ordering: .acquiring) != seen })
            pthread_mutex_lock(lock)
            if !polled && posted.load(ordering: .relaxed) == seen {
                sleeping += 1
                pthread_cond_wait(wake, lock)
                sleeping -= 1
            }
        }
    }
}

/// Polls `condition` for up to `WorkerPool.spinNanoseconds`, yielding the core between polls (the
/// machine may have other work for it); true as soon as it holds.
private func spin(until condition: () -> Bool) -> Bool {
    let deadline = monotonicNanoseconds() &+ WorkerPool.spinNanoseconds
    while true {
        if condition() { return true }
        if monotonicNanoseconds() > deadline { return false }
        sched_yield()
    }
}

private func monotonicNanoseconds() -> Int {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec &* 1_000_000_000 &+ now.tv_nsec
}
