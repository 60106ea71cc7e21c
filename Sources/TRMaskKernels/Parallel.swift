#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Processors online: the most threads a call uses (more would only take turns on the same cores).
let availableProcessors: Int = Swift.max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))

/// Below this many grid positions (or logits, for the exact KL, each dearer than a position) a
/// call runs on one thread, whatever `threads` asks: waking a helper and sharing the output's
/// cache lines cost more than the second core saves. From here on two threads are no slower
/// than one (the "thread crossover" rows of `bench/bench.py`, BENCHMARKS.md).
let parallelMinimumPositions = 1 << 14

/// The number of workers for `threads` (0 = automatic: every core) over `rows` rows of
/// `positions` tokens: at most the processors available, one per row, one below
/// `parallelMinimumPositions`. Results do not depend on it.
func workerCount(threads: Int, rows: Int, positions: Int) -> Int {
    if positions < parallelMinimumPositions { return 1 }
    let wanted = threads > 0 ? threads : availableProcessors
    return Swift.max(1, Swift.min(wanted, rows, availableProcessors, maximumWorkers))
}

/// Work shared by the threads of one call.
final class RowBlocks: @unchecked Sendable {
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

/// Calls `body(worker, rowRange)` over all of `0 ..< rows` in blocks, on up to `workers` threads
/// (worker 0 is the calling thread, the others come from the `WorkerPool`). Returns when every
/// block is done.
func forEachRowBlock(rows: Int, workers: Int, _ body: (Int, Range<Int>) -> Void) {
    if workers <= 1 || rows <= 1 {
        body(0, 0..<rows)
        return
    }
    withoutActuallyEscaping(body) { body in
        let blocks = RowBlocks(rows: rows, blockLength: Swift.max(1, rows / (workers * 8)), body: body)
        WorkerPool.current().run(blocks, workers: workers)
    }
}
