#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Processors online (the `threads = 0` upper bound).
let availableProcessors: Int = Swift.max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))

/// Below this many grid positions (or logits, for the exact KL, each dearer than a position) a call
/// runs on one thread: a second thread costs more (~45 us of start-up, cache traffic between cores)
/// than it saves. Two threads win from 2^18 TRM positions on (1.1-1.2x; 1.5-1.6x at 2^20; the
/// "thread crossover" rows of `bench/bench.py`, BENCHMARKS.md).
let automaticThreadsMinimumPositions = 1 << 18

/// The number of workers for `threads` (0 = automatic) over `rows` rows of `positions` tokens.
func workerCount(threads: Int, rows: Int, positions: Int) -> Int {
    let wanted = threads > 0 ? threads : (positions < automaticThreadsMinimumPositions ? 1 : availableProcessors)
    return Swift.max(1, Swift.min(wanted, rows, maximumWorkers))
}

/// Work shared by the threads of one call.
private final class RowBlocks: @unchecked Sendable {
    let next = Atomic<Int>(0)
    let rows: Int
    let blockLength: Int
    let body: (Int, Range<Int>) -> Void

    init(rows: Int, blockLength: Int, body: @escaping (Int, Range<Int>) -> Void) {
        self.rows = rows
        self.blockLength = blockLength
        self.body = body
    }

    /// Takes blocks until none are left. Which worker gets which block varies from run to run;
    /// callers keep results per row or per worker, so the outcome does not.
    func drain(worker: Int) {
        while true {
            let start = next.wrappingAdd(blockLength, ordering: .relaxed).oldValue
            // Past the end (or wrapped, for rows near Int.max): this worker is done.
            if start >= rows || start < 0 { return }
            body(worker, start..<(rows - start <= blockLength ? rows : start + blockLength))
        }
    }
}

/// Calls `body(worker, rowRange)` over all of `0 ..< rows` in blocks, on `workers` threads
/// (worker 0 is the calling thread). Returns when every block is done. If a thread cannot be
/// started, the others take its share.
func forEachRowBlock(rows: Int, workers: Int, _ body: (Int, Range<Int>) -> Void) {
    if workers <= 1 || rows <= 1 {
        body(0, 0..<rows)
        return
    }
    withoutActuallyEscaping(body) { body in
        let blocks = RowBlocks(rows: rows, blockLength: Swift.max(1, rows / (workers * 8)), body: body)
        var threads: [pthread_t] = []
        for worker in 1..<workers {
            let context = Unmanaged.passRetained(WorkerContext(blocks: blocks, worker: worker)).toOpaque()
            var thread = pthread_t()
            if pthread_create(&thread, nil, { raw in
                let context = Unmanaged<WorkerContext>.fromOpaque(raw.unsafelyUnwrapped).takeRetainedValue()
                context.blocks.drain(worker: context.worker)
                return nil
            }, context) == 0 {
                threads.append(thread)
            } else {
                Unmanaged<WorkerContext>.fromOpaque(context).release()
            }
        }
        blocks.drain(worker: 0)
        for thread in threads { pthread_join(thread, nil) }
    }
}

private final class WorkerContext: @unchecked Sendable {
    let blocks: RowBlocks
    let worker: Int
    init(blocks: RowBlocks, worker: Int) {
        self.blocks = blocks
        self.worker = worker
    }
}
